#!/usr/bin/env python3
"""Model throughput, scion vs the fastest PyTorch/timm variant on this machine, in one run.

Per case and precision (f32; bf16 = torch.autocast on the CPU / scion's AutocastGuard), images/s of
  - fwd+bwd: forward, cross-entropy, backward;
  - step:    the same plus an AdamW update (torch: fused=True where this torch has it, else foreach;
             scion: train::Optimizer with timm's weight-decay groups);
for scion and for torch eager, torch channels-last (ConvNeXt) and torch.compile (inductor). The
ratio is scion over the *fastest* torch variant of that row. Every row also shows the fraction of
this machine's peak that scion reaches: model GFLOP/s (timm's forward FLOPs counted by
torch.utils.flop_counter, x3 for forward+backward) over the oneDNN GEMM peak of that precision
measured by bench_peak in the same run; the header names the CPU, its ISA and the peaks.

--cap avx2 runs both sides as on an AVX2-only CPU (Zen 3, most laptops): scion through
SCION_MAX_ISA=avx2 (its kernels and its oneDNN), torch through ATEN_CPU_CAPABILITY=avx2 (ATen's
kernels and inductor's generated code), ONEDNN_MAX_CPU_ISA=AVX2 (torch's own oneDNN) and
MKL_ENABLE_INSTRUCTIONS=AVX2; bf16 then has no native dot products on either side.

    python3 experiments/bench/run_models.py [--threads 2] [--steps 10] [--cap avx2] [--precisions f32]
        [--out FILE.md]
"""
import argparse
import json
import os
import subprocess
import sys
import time

# Inductor compiles in this process: no pool of compile workers left to steal time from the
# measurements that follow.
os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")

CAPS = {"avx2": {"SCION_MAX_ISA": "avx2", "ATEN_CPU_CAPABILITY": "avx2",
                 "ONEDNN_MAX_CPU_ISA": "AVX2", "DNNL_MAX_CPU_ISA": "AVX2",
                 "MKL_ENABLE_INSTRUCTIONS": "AVX2"}}
# The caps must be in the environment before torch loads (ATen and oneDNN read them once).
if "--cap" in sys.argv[:-1]:
    os.environ.update(CAPS[sys.argv[sys.argv.index("--cap") + 1]])

import timm
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

CASES = [  # (label, scion model, timm model, timm kwargs, img_size, batch, scion --set options)
    ("ViT-T 32px/p4", "vit_tiny", "vit_tiny_patch16_224",
     dict(img_size=32, patch_size=4, num_classes=10), 32, 64,
     ["img_size=32", "patch_size=4", "num_classes=10"]),
    ("ViT-T 224px/p16", "vit_tiny", "vit_tiny_patch16_224", dict(num_classes=100), 224, 64,
     ["num_classes=100"]),
    ("ConvNeXt-F 32px", "convnext_femto", "convnext_femto", dict(conv_mlp=False, num_classes=10), 32,
     128, ["img_size=32", "num_classes=10"]),
    ("ConvNeXt-F 224px", "convnext_femto", "convnext_femto", dict(conv_mlp=False, num_classes=100),
     224, 64, ["num_classes=100"]),
]


def adamw(params):
    try:
        return torch.optim.AdamW(params, lr=1e-3, weight_decay=0.05, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(params, lr=1e-3, weight_decay=0.05, foreach=True)


def forward_flops(name, kwargs, img):
    model = timm.create_model(name, **kwargs).eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.randn(1, 3, img, img))
    return counter.get_total_flops()


def torch_ips(name, kwargs, img, batch, precision, variant, step, steps, warmup, budget):
    """Images/s of one torch variant (eager | channels_last | compile), median of `steps`."""
    torch.manual_seed(0)
    model = timm.create_model(name, **kwargs).train()
    x = torch.randn(batch, 3, img, img)
    y = torch.randint(0, kwargs["num_classes"], (batch,))
    if variant == "channels_last":
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = adamw(model.parameters()) if step else None
    run = torch.compile(model) if variant == "compile" else model
    times, i = [], 0
    while i < warmup + steps:
        t0 = time.perf_counter()
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = F.cross_entropy(run(x), y)
        loss.backward()
        if opt:
            opt.step()
        dt = time.perf_counter() - t0
        if i >= warmup:
            times.append(dt)
        elif i == warmup - 1 and dt * steps > budget:
            # A very slow variant (torch's bf16 without native bf16 runs ATen's scalar GEMM): as
            # many timed steps as the budget holds after the warm-up, at least two.
            steps = max(2, int(budget / dt))
        i += 1
    times.sort()
    return batch / times[len(times) // 2]


def scion_ips(args, model, batch, precision, sets, step):
    cmd = [args.scion, "--model", model, "--batch", str(batch), "--precision", precision,
           "--threads", str(args.threads), "--steps", str(args.steps), "--warmup", str(args.warmup)]
    for s in sets:
        cmd += ["--set", s]
    if step:
        cmd.append("--step")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"bench_models failed: {proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])["images_per_second"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scion", default="build/bin/bench_models")
    ap.add_argument("--peak", default="build/bin/bench_peak")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--cases", nargs="*", default=None, help="labels to run (default: all)")
    ap.add_argument("--precisions", nargs="*", default=["f32", "bf16"], choices=["f32", "bf16"],
                    help="precisions to run (default: both)")
    ap.add_argument("--no-compile", action="store_true", help="skip torch.compile (slow to build)")
    ap.add_argument("--timed", choices=["both", "fwd+bwd"], default="both",
                    help="time the AdamW step rows too (both) or forward+backward only")
    ap.add_argument("--budget", type=float, default=300,
                    help="seconds a torch variant may take; slower ones time fewer steps (>= 2)")
    ap.add_argument("--cap", choices=sorted(CAPS), default=None,
                    help="run both sides as on a CPU with at most this ISA")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    assert "MKL" in torch.__config__.show(), "torch without MKL/oneDNN: ratios meaningless"

    peak = json.loads(subprocess.run([args.peak, "--threads", str(args.threads)], check=True,
                                     capture_output=True, text=True).stdout.strip().splitlines()[-1])
    print(json.dumps(peak), flush=True)
    rows = []
    for label, ours, theirs, kwargs, img, batch, sets in CASES:
        if args.cases and label not in args.cases:
            continue
        gflop_per_image = 3 * forward_flops(theirs, kwargs, img) * 1e-9
        variants = ["eager"] + (["channels_last"] if "convnext" in theirs else []) + \
            ([] if args.no_compile else ["compile"])
        for precision in args.precisions:
            for step in [False, True] if args.timed == "both" else [False]:
                s = scion_ips(args, ours, batch, precision, sets, step)
                t = {v: torch_ips(theirs, kwargs, img, batch, precision, v, step, args.steps,
                                  args.warmup, args.budget) for v in variants}
                best = max(t, key=t.get)
                frac = s * gflop_per_image / peak[f"gemm_{precision}_gflops"]
                rows.append(
                    f"| {label} | {batch} | {precision} | {'step' if step else 'fwd+bwd'} | {s:.1f} | "
                    + " | ".join(f"{t[v]:.1f}" if v in t else "-" for v in
                                 ["eager", "channels_last", "compile"])
                    + f" | {best} | **{s / t[best]:.2f}** | {100 * frac:.0f}% |")
                print(rows[-1], flush=True)
    cap = (f"capped to {args.cap} (" + ", ".join(f"{k}={v}" for k, v in CAPS[args.cap].items())
           + "); " if args.cap else "no caps; ")
    header = (f"{peak['cpu']} (CPU level {peak['cpu_isa']}; {cap}scion kernels "
              f"{peak['scion_isa']}, scion's oneDNN {peak['onednn_isa']}, bf16 "
              f"{'native' if peak['bf16_native'] else 'through f32 kernels'}; torch CPU capability "
              f"{torch.backends.cpu.get_cpu_capability()}), {args.threads} threads; "
              f"torch {torch.__version__} + timm {timm.__version__}; median of {args.steps} steps.\n"
              f"Peak ({args.threads} threads): oneDNN GEMM {peak['gemm_size']}^3 "
              f"f32 {peak['gemm_f32_gflops']:.0f} GFLOP/s, bf16 {peak['gemm_bf16_gflops']:.0f} GFLOP/s; "
              f"triad {peak['triad_gbs']:.1f} GB/s. ratio = scion / fastest torch variant; "
              "peak = scion's model GFLOP/s / oneDNN GEMM peak of the precision under the same caps "
              "(under the AVX2 cap: the practical AVX2 FMA peak).\n\n")
    table = (header + "| model | batch | precision | timed | scion img/s | torch eager | channels-last "
             "| torch.compile | fastest | ratio | scion % of peak |\n"
             "|---|---|---|---|---|---|---|---|---|---|---|\n" + "\n".join(rows))
    print()
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    main()
