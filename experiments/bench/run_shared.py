#!/usr/bin/env python3
"""Training speed alone and beside a second training job on the same cores.

The measured job is the CPU suite's student (configs/mini/convnext_half_tinyimagenet.yaml: half-width
ConvNeXt-F, 32 px, 10,000 Tiny ImageNet training and 10,000 validation images), `threads: 0`. It
runs a few epochs alone, then again while a second `train` job (the same config, its own output
folder) keeps the cores busy. Per epoch it reads `epoch_seconds` (training) and `val_seconds`
(the validation pass) from metrics.jsonl and reports the median over the epochs after the first.

Two modes: `fixed` (SCION_ADAPTIVE_THREADS=0 for both jobs: every job keeps all cores' worth of
threads) and `adaptive` (the default for threads: 0). With two jobs on two cores,
proportional sharing is a 2x slowdown.

    python3 experiments/bench/run_shared.py [--epochs 4] [--out FILE.md]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from machine import cpu_model

CONFIG = "configs/mini/convnext_half_tinyimagenet.yaml"


def train_cmd(args, out, epochs):
    return [args.train, "--config", CONFIG, "--set", f"output_dir={out}", "--set",
            f"train.epochs={epochs}", "--set", f"data.root={args.data}"]


def measure(args, mode, shared, work):
    env = dict(os.environ)
    env["SCION_ADAPTIVE_THREADS"] = "1" if mode == "adaptive" else "0"
    other = None
    if shared:
        other = subprocess.Popen(train_cmd(args, f"{work}/{mode}-other", 1000), env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(args.settle)  # past its start-up, into training
    out = f"{work}/{mode}-{'shared' if shared else 'alone'}"
    try:
        subprocess.run(train_cmd(args, out, args.epochs), env=env, check=True,
                       stdout=subprocess.DEVNULL)
    finally:
        if other:
            other.terminate()
            other.wait()
    with open(f"{out}/metrics.jsonl") as f:
        lines = [json.loads(l) for l in f if l.strip()][1:]  # the first epoch builds primitives
    return (statistics.median(l["epoch_seconds"] for l in lines),
            statistics.median(l["val_seconds"] for l in lines))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", default="build/bin/train")
    ap.add_argument("--data", default="../shared/data/tiny-imagenet-200-subset")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--settle", type=float, default=15.0)
    ap.add_argument("--modes", nargs="+", default=["fixed", "adaptive"])
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for mode in args.modes:
            alone = measure(args, mode, False, work)
            shared = measure(args, mode, True, work)
            rows.append(f"| {mode} | {alone[0]:.2f} | {shared[0]:.2f} | **{shared[0] / alone[0]:.2f}x** "
                        f"| {alone[1]:.2f} | {shared[1]:.2f} | **{shared[1] / alone[1]:.2f}x** |")
            print(rows[-1], flush=True)
    table = (f"{cpu_model()}, {os.cpu_count()} cores; `{CONFIG}` (threads: 0), median over epochs "
             f"2-{args.epochs}; shared = beside a second `train` job of the same config\n\n"
             "| threads | train epoch alone (s) | shared (s) | slowdown | validation alone (s) "
             "| shared (s) | slowdown |\n|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n")
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table)


if __name__ == "__main__":
    sys.exit(main())
