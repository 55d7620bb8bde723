#!/usr/bin/env python3
"""Model throughput, scion vs PyTorch/timm on this machine, in one run.

Forward+backward (cross-entropy loss) images/s for each case, f32 and bf16 (torch.autocast on the
CPU, scion's AutocastGuard), same thread count, same batch; prints a Markdown table with the ratio
scion / torch (> 1: scion is faster).

    python3 experiments/bench/run_models.py [--threads 2] [--steps 10] [--out FILE.md]
"""
import argparse
import json
import subprocess
import sys
import time

import timm
import torch
import torch.nn.functional as F

CASES = [  # (scion model, timm model, timm kwargs, img_size, batch, scion --set options)
    ("vit_tiny", "vit_tiny_patch16_224", dict(img_size=32, patch_size=4, num_classes=10), 32, 64,
     ["img_size=32", "patch_size=4", "num_classes=10"]),
    ("vit_tiny", "vit_tiny_patch16_224", dict(img_size=32, patch_size=4, num_classes=10), 32, 128,
     ["img_size=32", "patch_size=4", "num_classes=10"]),
    ("vit_tiny", "vit_tiny_patch16_224", dict(num_classes=100), 224, 64, ["num_classes=100"]),
    ("convnext_femto", "convnext_femto", dict(conv_mlp=False, num_classes=10), 32, 128,
     ["img_size=32", "num_classes=10"]),
    ("convnext_femto", "convnext_femto", dict(conv_mlp=False, num_classes=100), 224, 64,
     ["num_classes=100"]),
]


def torch_images_per_second(name, kwargs, img, batch, precision, steps, warmup):
    model = timm.create_model(name, **kwargs)
    model.train()
    x = torch.randn(batch, 3, img, img)
    y = torch.randint(0, kwargs["num_classes"], (batch,))
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    times.sort()
    return batch / times[len(times) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scion", default="build/bin/bench_models")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    assert "MKL" in torch.__config__.show(), "torch without MKL/oneDNN: ratios meaningless"

    rows = []
    for ours, theirs, kwargs, img, batch, sets in CASES:
        for precision in ["f32", "bf16"]:
            cmd = [args.scion, "--model", ours, "--batch", str(batch), "--precision", precision,
                   "--threads", str(args.threads), "--steps", str(args.steps), "--warmup", str(args.warmup)]
            for s in sets:
                cmd += ["--set", s]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                sys.exit(f"bench_models failed: {proc.stderr}")
            s = json.loads(proc.stdout.strip().splitlines()[-1])["images_per_second"]
            t = torch_images_per_second(theirs, kwargs, img, batch, precision, args.steps, args.warmup)
            label = f"{ours} {img}px" + (f"/p{kwargs.get('patch_size', 16)}" if "vit" in ours else "")
            rows.append(f"| {label} | {batch} | {precision} | {s:.1f} | {t:.1f} | **{s / t:.2f}** |")
            print(rows[-1], flush=True)
    table = (f"torch {torch.__version__} + timm {timm.__version__}, {args.threads} threads, "
             f"forward+backward images/s (median of {args.steps} steps), ratio = scion / torch\n\n"
             "| model | batch | precision | scion img/s | torch img/s | ratio |\n|---|---|---|---|---|---|\n"
             + "\n".join(rows))
    print()
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    main()
