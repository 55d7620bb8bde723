"""Compares two runs' per-epoch training losses (metrics.jsonl of `train`): the CUDA run against
the CPU run of the same config and seed. Float summation orders differ between the devices, so
the curves are not bit-equal; they must track: every epoch's train loss within 2% of the CPU's,
and the final validation accuracy within 3 points. Exit 1 otherwise."""
import json
import sys


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


gpu, cpu = load(sys.argv[1]), load(sys.argv[2])
ok = len(gpu) == len(cpu) and len(cpu) > 0
print("| epoch | step | train loss cuda | train loss cpu | rel. diff |")
print("| --- | --- | --- | --- | --- |")
for g, c in zip(gpu, cpu):
    rel = abs(g["train_loss"] - c["train_loss"]) / abs(c["train_loss"])
    ok = ok and rel <= 0.02
    print(f"| {c['epoch']} | {c['step']} | {g['train_loss']:.4f} | {c['train_loss']:.4f} | {rel:.4f} |")
if gpu and cpu:
    print(f"final val top-1: cuda {gpu[-1]['val_acc1']:.2f}, cpu {cpu[-1]['val_acc1']:.2f}")
    ok = ok and abs(gpu[-1]["val_acc1"] - cpu[-1]["val_acc1"]) <= 3.0
print("PASS" if ok else "FAIL")
sys.exit(0 if ok else 1)
