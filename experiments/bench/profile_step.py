#!/usr/bin/env python3
"""Where one training step's time goes: `perf record` (cpu-clock sampling, so it works without
hardware counters) over bench_models, with oneDNN's JIT kernels named through its perf map
(DNNL_JIT_PROFILE=2), grouped into parts: GEMM/convolution kernels, scion's own kernels by name,
OpenMP barriers and spinning, memory copies, allocation and the kernel (page faults). The GEMM
part is also set against this machine's peak: the model's FLOPs per step (as run_models.py counts
them) over the time in GEMM/convolution kernels.

    python3 experiments/bench/profile_step.py --model vit_tiny --set img_size=32 --set patch_size=4 \
        --set num_classes=10 --batch 64 --precision bf16 [--gflop-per-image 2.19] [--peak 418]
"""
import argparse
import collections
import os
import re
import subprocess
import sys
import tempfile


def part_of(dso, sym):
    """The part of the step a sample belongs to, from its DSO and symbol."""
    if dso.startswith("[JIT]"):
        if re.search(r"brgemm|gemm|gemv|conv|matmul", sym):
            return f"oneDNN GEMM / convolution: {sym.split()[0]}"
        return f"oneDNN other JIT: {sym.split()[0]}"
    if "libdnnl" in dso:
        return "oneDNN library code (reorders, drivers; stripped)"
    if "libgomp" in dso:
        return "OpenMP runtime (barriers, spinning)"
    if "kernel" in dso:
        return "Linux kernel (page faults, scheduling)"
    if re.search(r"memcpy|memset|memmove", sym):
        return "memcpy / memset"
    if re.search(r"malloc|free|_int_|operator new|operator delete", sym):
        return "allocation"
    # Kernels live in a per-ISA namespace (isa_avx2::...; see core/cpu/isa_begin.h).
    ns = r"scion::cpu::(?:isa_\w+::)?(?:\(anonymous namespace\)::)?"
    m = re.search(ns + r"(\w+)", sym)
    if m and m.group(1) not in ("parallel_for", "for_each_strided"):
        return f"scion: {m.group(1)}"
    m = re.search(r"scion::cpu::parallel_for<" + ns + r"(\w+)", sym)
    if m:
        return f"scion: {m.group(1)}"
    if "scion" in sym:
        return "scion: other"
    return f"other: {dso}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", default="build/bin/bench_models")
    ap.add_argument("--gflop-per-image", type=float, default=None, help="fwd+bwd GFLOP per image")
    ap.add_argument("--peak", type=float, default=None, help="GEMM peak GFLOP/s, same precision")
    ap.add_argument("--top", type=int, default=25)
    args, rest = ap.parse_known_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "perf.data")
        env = dict(os.environ, DNNL_JIT_PROFILE="2")
        cmd = ["perf", "record", "-e", "cpu-clock", "-F", "2000", "-o", data, "--", args.bench,
               "--steps", "20", "--warmup", "3", "--step"] + rest
        run = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if run.returncode != 0:
            sys.exit(f"perf record failed: {run.stderr}")
        step_ms = float(re.search(r'"step_ms":([0-9.]+)', run.stdout).group(1))
        batch = int(re.search(r'"batch":([0-9]+)', run.stdout).group(1))
        rep = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", "dso,symbol",
                              "--stdio", "--percent-limit", "0.05"], capture_output=True, text=True)
    rows = []
    for line in rep.stdout.splitlines():
        m = re.match(r"\s*([0-9.]+)%\s+(.+?)\s+\[([.k])\]\s+(.*)", line)
        if m:
            rows.append((float(m.group(1)), m.group(2), m.group(4).strip()))
    parts = collections.Counter()
    for pct, dso, sym in rows:
        parts[part_of(dso, sym)] += pct
    total = sum(parts.values())
    groups = collections.Counter()
    for part, pct in parts.items():
        groups[part.split(":")[0]] += pct
    print(f"`{' '.join(rest)}`: median step {step_ms:.0f} ms under perf (model set-up and 3 warm-up "
          "steps are in the samples too)\n")
    print("| part | share of samples | ms per step |\n|---|---|---|")
    for group, pct in groups.most_common():
        print(f"| **{group}** | {pct:.1f}% | {step_ms * pct / total:.1f} |")
    print("\n| kernel | share of samples |\n|---|---|")
    for part, pct in parts.most_common(args.top):
        print(f"| {part} | {pct:.1f}% |")
    if args.gflop_per_image and args.peak:
        gemm = sum(p for k, p in parts.items() if k.startswith("oneDNN GEMM"))
        gemm_s = step_ms / 1000 * gemm / total
        rate = args.gflop_per_image * batch / gemm_s
        print(f"\nGEMM/convolution kernels: {rate:.0f} GFLOP/s while they run = "
              f"{100 * rate / args.peak:.0f}% of the {args.peak:.0f} GFLOP/s GEMM peak")


if __name__ == "__main__":
    main()
