#!/usr/bin/env python3
"""The framework's own time per training step, scion vs PyTorch eager on this machine, in one run.

A full step (zero grads, forward, cross-entropy, backward, AdamW) of ViT-T and ConvNeXt-F with
every layer kept (12 blocks each) but their widths cut to almost nothing (ViT-T: 32 channels,
2 heads, one 16 px patch; ConvNeXt-F: 8 channels in every stage, 32 px), batch 1, one thread.
What is left of a step is what the framework spends around its kernels (dispatch, autograd,
autocast, allocation, the optimizer's bookkeeping): on a GPU, the host's share of queueing a step
(scion's CUDA backend adds its launches, plans and allocator on top, measured on a GPU by
SCION_CUDA_OP_TIMES). torch: timm's models, fused AdamW (the fastest torch optimizer here),
autocast on the CPU for bf16. Median of --steps steps after --warmup.

    python3 experiments/bench/run_overhead.py [--steps 300]
"""
import argparse
import json
import subprocess
import time

import timm
import torch
import torch.nn.functional as F

from machine import cpu_model

CASES = [  # (label, scion model, scion --set options, timm model, timm kwargs, img_size)
    ("ViT-T, width 32", "vit_tiny", ["img_size=16", "patch_size=16", "embed_dim=32", "num_heads=2"],
     "vit_tiny_patch16_224", dict(img_size=16, patch_size=16, embed_dim=32, num_heads=2), 16),
    ("ConvNeXt-F, width 8", "convnext_femto", ["img_size=32", "dims=[8,8,8,8]"],
     "convnext_femto", dict(dims=(8, 8, 8, 8), conv_mlp=False), 32),
]


def torch_ms(name, kwargs, img, precision, steps, warmup):
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=1000, **kwargs).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05, fused=True)
    x, y = torch.randn(1, 3, img, img), torch.tensor([3])
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2] * 1e3


def scion_ms(args, model, sets, precision):
    cmd = [args.scion, "--model", model, "--batch", "1", "--precision", precision, "--threads", "1",
           "--steps", str(args.steps), "--warmup", str(args.warmup), "--step"]
    for s in sets:
        cmd += ["--set", s]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["step_ms"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scion", default="build/bin/bench_models")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"CPU: {cpu_model()}; torch {torch.__version__}, timm {timm.__version__}; one thread, "
          f"batch 1, median of {args.steps} steps\n")
    print("| case | precision | scion ms/step | torch eager ms/step | scion / torch |")
    print("|---|---|---|---|---|")
    for label, model, sets, tname, tkw, img in CASES:
        for precision in ("f32", "bf16"):
            s = scion_ms(args, model, sets, precision)
            t = torch_ms(tname, tkw, img, precision, args.steps, args.warmup)
            print(f"| {label} | {precision} | {s:.2f} | {t:.2f} | {s / t:.2f} |", flush=True)


if __name__ == "__main__":
    main()
