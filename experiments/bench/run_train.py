#!/usr/bin/env python3
"""Training-step throughput, data loading included, as `train` runs it, beside the PyTorch reference
trainer with the same threads, in one run: ViT-T 32 px patch 4 and ConvNeXt-F 32 px on the CIFAR-10
JPEGs, f32 and bf16, one epoch on a fixed subset each. Reports images/s (from metrics) and the peak
RSS of the training process (PyTorch's loader worker processes not counted, which favours it).

    python3 experiments/bench/run_train.py [--subset 5120] [--precisions f32 bf16] [--bin build/bin]
        [--out FILE.md]

On a CPU without native bf16 (AVX2), PyTorch's bf16 autocast runs ATen's own bf16 kernels at a few
images/s, so `--precisions f32` is the useful comparison there.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

from machine import cpu_model

CASES = [("ViT-T 32px/p4", "configs/mini/vit_tiny_cifar10.yaml"),
         ("ConvNeXt-F 32px", "configs/mini/convnext_femto_cifar10.yaml")]


def run(cmd):
    # stderr to a file, not a pipe: a pipe nobody reads until the end would stall a chatty run.
    with tempfile.TemporaryFile(mode="w+") as err:
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, text=True)
        _, status, usage = os.wait4(p.pid, 0)
        if status != 0:
            err.seek(0)
            sys.exit(f"failed: {' '.join(cmd)}\n{err.read()}")
    return usage.ru_maxrss / 1024.0  # MiB


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--subset", type=int, default=5120)
    ap.add_argument("--precisions", nargs="+", choices=["f32", "bf16"], default=["f32", "bf16"])
    ap.add_argument("--bin", default="build/bin", help="scion binaries")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    rows = []
    for label, config in CASES:
        for precision in args.precisions:
            tmp = tempfile.mkdtemp()
            sets = ["--set", "train.epochs=1", "--set", f"data.train_subset={args.subset}", "--set",
                    f"train.precision={precision}", "--set", "threads=2", "--set", "data.val_subset=1000"]
            rss_s = run([os.path.join(args.bin, "train"), "--config", config, "--output-dir", f"{tmp}/scion"] + sets)
            ours = json.loads(open(f"{tmp}/scion/metrics.jsonl").readline())["images_per_second"]
            # The reference reads its settings from a YAML copy with the same overrides.
            import yaml
            cfg = yaml.safe_load(open(config))
            cfg["train"]["precision"] = precision
            cfg["data"]["train_subset"] = args.subset
            ref_cfg = f"{tmp}/ref.yaml"
            yaml.safe_dump(cfg, open(ref_cfg, "w"))
            rss_t = run([sys.executable, "experiments/reference/train_reference.py", "--config", ref_cfg,
                         "--epochs", "1", "--out", f"{tmp}/torch.jsonl", "--threads", "2"])
            theirs = json.loads(open(f"{tmp}/torch.jsonl").readline())["images_per_second"]
            rows.append(f"| {label} | {precision} | {ours:.0f} | {theirs:.0f} | **{ours / theirs:.2f}** | "
                        f"{rss_s:.0f} | {rss_t:.0f} |")
            print(rows[-1], flush=True)
    table = (f"{cpu_model()}; training images/s over one epoch of a CIFAR-10 subset, data loading "
             "included, 2 threads; "
             "ratio = scion / PyTorch\n\n| model | precision | scion img/s | PyTorch img/s | ratio | "
             "scion peak RSS MiB | PyTorch peak RSS MiB |\n|---|---|---|---|---|---|---|\n" + "\n".join(rows))
    print()
    print(table)
    if args.out:
        open(args.out, "w").write(table + "\n")


if __name__ == "__main__":
    main()
