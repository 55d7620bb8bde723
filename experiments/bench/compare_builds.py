#!/usr/bin/env python3
"""Two builds of scion against each other on this machine, in one run: the op benchmark
(bench_ops on ops.json), model forward+backward throughput (bench_models) and a short real
training run (`train`: data loading, loss, optimizer step, evaluation), each binary run in turn
(A B A B ...) so that both see the same machine state; the table gives the median over rounds of
each build and the ratio before / after time (> 1: the after build is faster).

Used for "no speed lost" checks of refactors (issue 13: the backend dispatch):

    git worktree add ../before <commit> && cmake -S ../before -B ../before/build && \\
        cmake --build ../before/build -j2 --target bench_ops bench_models train
    python3 experiments/bench/compare_builds.py --before ../before/build/bin --after build/bin \\
        [--rounds 3] [--threads 2] [--out FILE.md]

Standard library only. Run it on an otherwise idle machine.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

from machine import cpu_model

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

MODELS = [  # (label, model, --set options, batch): run_models.py's four cases
    ("ViT-T 32 px", "vit_tiny", ["img_size=32", "patch_size=4", "num_classes=10"], 64),
    ("ConvNeXt-F 32 px", "convnext_femto", ["img_size=32", "num_classes=10"], 128),
    ("ViT-T 224 px", "vit_tiny", ["num_classes=100"], 64),
    ("ConvNeXt-F 224 px", "convnext_femto", ["num_classes=100"], 64),
]


def json_lines(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stderr}")
    return [json.loads(l) for l in r.stdout.splitlines() if l.startswith("{")]


def bench_ops(bin_dir, threads, min_seconds):
    rows = json_lines([os.path.join(bin_dir, "bench_ops"), "--threads", str(threads),
                       "--min-seconds", str(min_seconds),
                       "--cases", os.path.join(HERE, "ops.json")])
    return {(r["op"], tuple(r["shape"]), r["dtype"]): (r["fwd_ms"], r["fwd_bwd_ms"]) for r in rows}


def bench_models(bin_dir, threads, steps, cases):
    """ms per step of each case, precision and timed part (fwd+bwd, or the step with AdamW)."""
    out = {}
    for label, model, sets, batch in MODELS[:cases]:
        for precision in ("f32", "bf16"):
            for step in (False, True):
                cmd = [os.path.join(bin_dir, "bench_models"), "--model", model, "--batch",
                       str(batch), "--precision", precision, "--threads", str(threads), "--steps",
                       str(steps)] + (["--step"] if step else [])
                for s in sets:
                    cmd += ["--set", s]
                out[(label, batch, precision, "step" if step else "fwd+bwd")] = \
                    json_lines(cmd)[0]["step_ms"]
    return out


def bench_train(bin_dir, threads, data_root):
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [os.path.join(bin_dir, "train"), "--config",
               os.path.join(ROOT, "configs/mini/vit_tiny_cifar10.yaml"),
               "--set", f"data.root={data_root}", "--set", "train.epochs=1",
               "--set", "data.train_subset=2560", "--set", "data.val_subset=500",
               "--set", f"threads={threads}", "--output-dir", os.path.join(tmp, "run")]
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        if r.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stderr[-2000:]}")
        with open(os.path.join(tmp, "run", "summary.json")) as f:
            return 1000.0 / json.load(f)["images_per_second"]  # ms per image


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--before", required=True, help="bin folder of the baseline build")
    ap.add_argument("--after", required=True, help="bin folder of the build under test")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--min-seconds", type=float, default=0.3, help="bench_ops time per case")
    ap.add_argument("--steps", type=int, default=8, help="bench_models timed steps")
    ap.add_argument("--cases", type=int, default=2,
                    help="model cases: 2 = the 32 px ones, 4 = also the 224 px ones")
    ap.add_argument("--data", default=os.path.join(ROOT, "../shared/data/cifar10-jpg"))
    ap.add_argument("--parts", default="ops,models,train",
                    help="comma-separated subset of ops, models, train")
    ap.add_argument("--out", help="also write the Markdown table here")
    a = ap.parse_args()

    runs = {"before": [], "after": []}
    for i in range(a.rounds):
        for side in ("before", "after") if i % 2 == 0 else ("after", "before"):
            d = getattr(a, side)
            print(f"round {i + 1}/{a.rounds}: {side}", file=sys.stderr, flush=True)
            parts = a.parts.split(",")
            runs[side].append({
                "ops": bench_ops(d, a.threads, a.min_seconds) if "ops" in parts else {},
                "models": bench_models(d, a.threads, a.steps, a.cases) if "models" in parts else {},
                "train": bench_train(d, a.threads, a.data) if "train" in parts else None})

    def med(side, part, key, idx=None):
        return statistics.median(r[part][key] if idx is None else r[part][key][idx]
                                 for r in runs[side])

    lines = [f"CPU: {cpu_model()}, {a.threads} threads, {a.rounds} rounds (builds alternated); "
             "ratio = before time / after time (> 1: after is faster)"]
    if runs["after"][0]["ops"]:
        lines += ["", "| case | dtype | before fwd ms | after fwd ms | fwd ratio | before fwd+bwd ms "
                  "| after fwd+bwd ms | fwd+bwd ratio |", "|---|---|---|---|---|---|---|---|"]
    for key in runs["after"][0]["ops"]:
        op, shape, dt = key
        bf, af = med("before", "ops", key, 0), med("after", "ops", key, 0)
        bb, ab = med("before", "ops", key, 1), med("after", "ops", key, 1)
        lines.append(f"| {op} {'x'.join(map(str, shape))} | {dt} | {bf:.3f} | {af:.3f} | "
                     f"**{bf / af:.2f}** | {bb:.3f} | {ab:.3f} | **{bb / ab:.2f}** |")
    lines += ["", "| model | batch | precision | timed | before ms | after ms | ratio |",
              "|---|---|---|---|---|---|---|"]
    for key in runs["after"][0]["models"]:
        b, af = med("before", "models", key), med("after", "models", key)
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | {key[3]} | {b:.1f} | {af:.1f} | "
                     f"**{b / af:.2f}** |")
    if runs["after"][0]["train"] is not None:
        b = statistics.median(r["train"] for r in runs["before"])
        af = statistics.median(r["train"] for r in runs["after"])
        lines += ["", "| train, 1 epoch of 2,560 CIFAR-10 images (vit_tiny mini recipe, bf16) | "
                  "before ms/image | after ms/image | ratio |", "|---|---|---|---|",
                  f"| data, forward, backward, AdamW step | {b:.3f} | {af:.3f} | **{b / af:.2f}** |"]
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
