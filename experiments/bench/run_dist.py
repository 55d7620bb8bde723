#!/usr/bin/env python3
"""Data-parallel throughput on one machine: `train` on configs/mini/convnext_femto_cifar10.yaml (bf16,
one epoch of a CIFAR-10 JPEG subset, data loading included) as 1 process x 2 threads and as
2 processes x 1 thread (mpirun -np 2), alternated over rounds; images/s and the time per optimizer
step that rank 0 waited for gradient allreduces after its backward ended (the part not overlapped),
from metrics.jsonl; and the allreduce time of one whole gradient (bench_allreduce, no overlap).

    python3 experiments/bench/run_dist.py [--subset 5120] [--rounds 3] [--out FILE.md]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

from machine import cpu_model

CONFIG = "configs/mini/convnext_femto_cifar10.yaml"
MPIRUN = ["mpirun", "--oversubscribe", "--allow-run-as-root"]  # as root here; Open MPI's defaults


def train(procs, threads, subset, extra, out):
    cmd = ["build/bin/train", "--config", CONFIG, "--output-dir", out, "--restart",
           "--set", "train.epochs=1", "--set", f"data.train_subset={subset}",
           "--set", "data.val_subset=500", "--set", f"threads={threads}"] + extra
    if procs > 1:
        cmd = MPIRUN + ["-np", str(procs)] + cmd
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{r.stderr}")
    m = json.loads(open(f"{out}/metrics.jsonl").readline())
    wait = m.get("allreduce_wait_seconds", 0.0) / m["step"]
    return m["images_per_second"], wait * 1000, m["epoch_seconds"] / m["step"] * 1000


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--subset", type=int, default=5120)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    cases = [("1 process x 2 threads", 1, 2, []),
             ("2 processes x 1 thread", 2, 1, []),
             ("2 processes x 1 thread, one 25 MB bucket (no overlap)", 2, 1,
              ["--set", "dist.bucket_mb=25"]),
             ("2 processes x 1 thread, bf16 gradients", 2, 1, ["--set", "dist.compress=bf16"])]
    results = {c[0]: [] for c in cases}
    tmp = tempfile.mkdtemp()
    for r in range(args.rounds):
        for label, procs, threads, extra in cases:
            results[label].append(train(procs, threads, args.subset, extra, f"{tmp}/run"))
            print(r, label, results[label][-1], flush=True)
    base = statistics.median(x[0] for x in results[cases[0][0]])
    rows = []
    for label, *_ in cases:
        ips = statistics.median(x[0] for x in results[label])
        wait = statistics.median(x[1] for x in results[label])
        step = statistics.median(x[2] for x in results[label])
        rows.append(f"| {label} | {ips:.0f} | **{ips / base:.2f}** | {step:.1f} | {wait:.1f} |")
    ar = subprocess.run(MPIRUN + ["-np", "2", "build/bin/bench_allreduce", "1048576", "5242880"],
                        capture_output=True, text=True, check=True).stdout.strip()
    table = (f"Data-parallel training on {cpu_model()} ({os.cpu_count()} cores): ConvNeXt-F 32 px bf16, "
             f"global batch 128, one epoch of {args.subset} CIFAR-10 JPEGs (data loading included), "
             f"median of {args.rounds} alternated rounds. allreduce wait = time per step rank 0 "
             f"waited for gradients after its backward (the part of communication not overlapped).\n\n"
             "| layout | images/s | vs 1x2 | ms per step | allreduce wait ms per step |\n"
             "|---|---|---|---|---|\n" + "\n".join(rows) +
             "\n\nOne allreduce through the MPI communicator, 2 ranks (no overlap; ConvNeXt-F's "
             "gradient is 5.2M floats):\n\n" + ar)
    print()
    print(table)
    if args.out:
        open(args.out, "w").write(table + "\n")


if __name__ == "__main__":
    main()
