#!/usr/bin/env python3
"""Op benchmark, scion vs PyTorch on this machine, in one run.

Runs build/bin/bench_ops (scion) and the same ops in PyTorch with the same thread count, then prints
a Markdown table of median times and the speed ratio torch_ms / scion_ms (> 1: scion is faster) for
forward and forward+backward, f32 and bf16.

    python3 experiments/bench/run_ops.py [--scion build/bin/bench_ops] [--threads 2] [--out FILE.md]
"""
import argparse
import json
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from machine import cpu_model


def median_ms(fn, min_seconds):
    for _ in range(3):
        fn()
    times, start = [], time.perf_counter()
    while len(times) < 5 or (time.perf_counter() - start < min_seconds and len(times) < 200):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return times[len(times) // 2]


def torch_case(op, s, dt):
    def inp(*shape):
        return torch.randn(*shape).to(dt).requires_grad_(True)

    if op == "linear":
        x, w, b = inp(s[0], s[1]), inp(s[2], s[1]), inp(s[2])
        return [x, w, b], lambda: F.linear(x, w, b)
    if op == "bmm":
        a, b = inp(s[0], s[1], s[2]), inp(s[0], s[2], s[3])
        return [a, b], lambda: torch.matmul(a, b)
    if op in ("dwconv7", "dwconv7_cl"):
        x, w, b = inp(*s), inp(s[1], 1, 7, 7), inp(s[1])
        if op == "dwconv7_cl":
            x = x.detach().to(memory_format=torch.channels_last).requires_grad_(True)
        return [x, w, b], lambda: F.conv2d(x, w, b, padding=3, groups=s[1])
    if op == "layer_norm":
        x, w, b = inp(s[0], s[1]), inp(s[1]), inp(s[1])
        return [x, w, b], lambda: F.layer_norm(x, (s[1],), w, b, 1e-6)
    if op == "softmax":
        x = inp(*s)
        return [x], lambda: F.softmax(x, dim=-1)
    if op == "gelu":
        x = inp(*s)
        return [x], lambda: F.gelu(x)
    if op == "add":
        a, b = inp(*s), inp(*s)
        return [a, b], lambda: a + b
    if op == "cast":  # f32 -> bf16, or bf16 -> f32, as bench_ops
        x = inp(*s)
        return [x], lambda: x.to(torch.bfloat16 if dt == torch.float32 else torch.float32)
    raise ValueError(op)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scion", default="build/bin/bench_ops")
    ap.add_argument("--cases", default="experiments/bench/ops.json")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--min-seconds", type=float, default=0.5)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    config = torch.__config__.show()
    assert "MKL" in config or "OpenBLAS" in config, "torch without an optimized BLAS: ratios meaningless"
    proc = subprocess.run([args.scion, "--cases", args.cases, "--threads", str(args.threads),
                           "--min-seconds", str(args.min_seconds)], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"bench_ops failed: {proc.stderr}")
    ours = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    cases = {c["op"] + str(c["shape"]): c for c in json.load(open(args.cases))}

    rows = []
    for r in ours:
        dt = torch.bfloat16 if r["dtype"] == "bf16" else torch.float32
        inputs, fwd = torch_case(r["op"], r["shape"], dt)
        probe = fwd()
        gout = torch.randn(probe.shape).to(dt)

        def fwd_only():
            with torch.no_grad():
                fwd()

        def fwd_bwd():
            for t in inputs:
                t.grad = None
            fwd().backward(gout)

        t_f, t_fb = median_ms(fwd_only, args.min_seconds), median_ms(fwd_bwd, args.min_seconds)
        note = cases.get(r["op"] + str(r["shape"]), {}).get("note", "")
        gf = f'{r["fwd_gflops"]:.0f}' if "fwd_gflops" in r else ""
        rows.append(f'| {r["op"]} {"x".join(map(str, r["shape"]))} | {note} | {r["dtype"]} | '
                    f'{r["fwd_ms"]:.3f} | {t_f:.3f} | **{t_f / r["fwd_ms"]:.2f}** | {gf} | '
                    f'{r["fwd_bwd_ms"]:.3f} | {t_fb:.3f} | **{t_fb / r["fwd_bwd_ms"]:.2f}** |')

    head = (f"{cpu_model()}; torch {torch.__version__}, {args.threads} threads, ratio = torch time / scion time "
            f"(> 1: scion faster)\n\n"
            "| op | where | dtype | scion fwd ms | torch fwd ms | fwd ratio | scion fwd GFLOP/s | "
            "scion fwd+bwd ms | torch fwd+bwd ms | fwd+bwd ratio |\n"
            "|---|---|---|---|---|---|---|---|---|---|")
    table = head + "\n" + "\n".join(rows)
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    main()
