#!/usr/bin/env python3
"""Fidelity of a reproduction-harness comparison: trains every finished scion run of the given arms
of a results folder (runs/repro/<spec>/runs/<arm>/seed<k>/) again with the PyTorch/timm reference
trainer (train_reference.py) on the same config, then prints the per-arm comparison as a table.
A weight-selection run starts in PyTorch from the student `scion select` makes from the same
teacher weights (identical selected tensors; the head keeps an own initialization); a random run
from timm's own initialization (the same distributions as scion's trunc_normal, other values).

    python3 experiments/reference/fidelity_repro.py runs/repro/convnext_init random wsel \\
        [--seeds 0 1] [--out experiments/results/cpu/convnext_init/fidelity.md]
"""
import argparse
import json
import os
import subprocess
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def mean(xs):
    return sum(xs) / len(xs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("arms", nargs="+")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--out", help="also write the table (markdown) here")
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "bin"))
    args = ap.parse_args()
    os.chdir(ROOT)
    rows = []
    for arm in args.arms:
        scion, torch_ = [], []
        for seed in args.seeds:
            run = os.path.join(args.results, "runs", arm, f"seed{seed}")
            cfg_path = os.path.join(run, "config.yaml")
            if not os.path.exists(os.path.join(run, "summary.json")):
                sys.exit(f"{run}: not a finished scion run")
            cfg = yaml.safe_load(open(cfg_path))
            ref = os.path.join(run, "reference")
            os.makedirs(ref, exist_ok=True)
            out = os.path.join(ref, "torch.jsonl")
            done = os.path.exists(out) and sum(1 for _ in open(out)) == cfg["train"]["epochs"]
            if not done:
                cmd = [sys.executable, "experiments/reference/train_reference.py", "--config", cfg_path,
                       "--out", out]
                i = cfg["init"]
                if i["type"] == "weight_selection":
                    w = os.path.join(ref, "init.safetensors")
                    sets = sum([["--set", f"model.{k}={json.dumps(v) if isinstance(v, list) else v}"]
                                for k, v in cfg["model"].items() if k != "name"], [])
                    subprocess.run([os.path.join(args.bin, "scion"), "select", "--teacher", i["teacher"],
                                    "--model", cfg["model"]["name"], "--layers", i["layers"],
                                    "--elements", i["elements"], "--seed", str(cfg["seed"]), "--out", w]
                                   + sets, check=True)
                    cmd += ["--init-weights", w]
                elif i["type"] != "trunc_normal":
                    sys.exit(f"{run}: the reference trainer covers trunc_normal and weight_selection")
                print(f"{arm} seed {seed}: PyTorch reference run", flush=True)
                subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            scion.append([json.loads(l) for l in open(os.path.join(run, "metrics.jsonl"))][-1]["val_acc1"])
            torch_.append([json.loads(l) for l in open(out)][-1]["val_acc1"])
        rows.append((arm, scion, torch_))
    lines = ["| arm | seeds | scion final top-1 (per seed) | PyTorch final top-1 (per seed) | difference |",
             "|---|---|---|---|---|"]
    for arm, s, t in rows:
        lines.append(f"| {arm} | {len(s)} | {mean(s):.2f} ({', '.join(f'{x:.2f}' for x in s)}) | "
                     f"{mean(t):.2f} ({', '.join(f'{x:.2f}' for x in t)}) | {mean(s) - mean(t):+.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        os.makedirs(os.path.dirname(args.out), exist_ok=True)
        open(args.out, "w").write(text)


if __name__ == "__main__":
    sys.exit(main())
