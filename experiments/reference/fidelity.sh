#!/usr/bin/env bash
# Fidelity check: trains configs/mini/convnext_femto_cifar10.yaml with scion's `train` and with the
# PyTorch/timm reference trainer (same files, model, init scheme, optimizer, schedule, augmentation),
# one after the other on the same machine, then prints both curves side by side.
#   experiments/reference/fidelity.sh [CONFIG] [EPOCHS]
set -euo pipefail
cd "$(dirname "$0")/../.."
config=${1:-configs/mini/convnext_femto_cifar10.yaml}
epochs=${2:-10}
name=$(basename "$config" .yaml)
out=runs/fidelity/$name
rm -rf "$out" && mkdir -p "$out"
build/bin/train --config "$config" --set train.epochs="$epochs" --set threads=2 --output-dir "$out/scion" | tail -n 3
python3 experiments/reference/train_reference.py --config "$config" --epochs "$epochs" --out "$out/torch.jsonl" | tail -n 1
python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
s = [json.loads(l) for l in open(f"{out}/scion/metrics.jsonl")]
t = [json.loads(l) for l in open(f"{out}/torch.jsonl")]
print("| epoch | scion train loss | scion top-1 | PyTorch train loss | PyTorch top-1 |")
print("|---|---|---|---|---|")
for a, b in zip(s, t):
    print(f"| {a['epoch']} | {a['train_loss']:.3f} | {a['val_acc1']:.2f} | {b['train_loss']:.3f} | {b['val_acc1']:.2f} |")
print(f"\nfinal top-1: scion {s[-1]['val_acc1']:.2f}, PyTorch {t[-1]['val_acc1']:.2f}, "
      f"difference {s[-1]['val_acc1'] - t[-1]['val_acc1']:+.2f} points")
PY
