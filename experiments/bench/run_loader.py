#!/usr/bin/env python3
"""Loader throughput, scion vs a torchvision DataLoader with timm's transforms, same files, same
number of workers (2), in one run; prints a Markdown table (ratio = scion / torch images/s).

    python3 experiments/bench/run_loader.py [--data ../shared/data] [--out FILE.md]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import PIL.ImageOps
import torch
from timm.data import Mixup, create_transform

# timm's PosterizeIncreasing reaches 0 bits at magnitude 10; Pillow >= 10 rejects bits=0 where older
# Pillow (and scion) return a black image. Restore that behaviour so the timm pipeline runs.
_posterize = PIL.ImageOps.posterize
PIL.ImageOps.posterize = lambda img, bits: _posterize(img, bits) if bits >= 1 else PIL.ImageOps.invert(
    img).point(lambda _: 0)
from torchvision.datasets import ImageFolder
from machine import cpu_model


class Repeat(torch.utils.data.Dataset):
    def __init__(self, base, times):
        self.base, self.times = base, times

    def __len__(self):
        return len(self.base) * self.times

    def __getitem__(self, i):
        return self.base[i % len(self.base)]


def torch_rate(case, data, workers, batch, batches):
    if case == "cifar":
        tf = create_transform(32, is_training=True, auto_augment="rand-m9-mstd0.5-inc1", re_prob=0.25,
                              interpolation="bicubic")
        ds = ImageFolder(os.path.join(data, "cifar10-jpg", "train"), transform=tf)
        mix = Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1, num_classes=10)
    else:
        tf = create_transform(224, is_training=True, interpolation="bicubic", color_jitter=0.0)
        ds = Repeat(ImageFolder(os.path.join(data, "imagenet-sample-split", "train"), transform=tf), 50)
        mix = None
    dl = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers, drop_last=True,
                                     prefetch_factor=2, persistent_workers=False)
    it = iter(dl)
    for _ in range(2):
        x, y = next(it)
    t0, n = time.perf_counter(), 0
    while n < batches:
        x, y = next(it)
        if mix is not None:
            x, y = mix(x, y)
        n += 1
    return n * batch / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scion", default="build/bin/bench_loader")
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    # ImageFolder needs <root>/<class>/...: the ImageNet samples are <wnid>/<file>, so a temporary
    # "train" link makes the same folder readable by both loaders.
    tmp = tempfile.mkdtemp()
    split_root = os.path.join(args.data, "imagenet-sample-split")
    link_root = split_root if os.path.exists(split_root) else os.path.join(tmp, "imagenet-sample-split")
    if not os.path.exists(split_root):
        os.makedirs(link_root)
        os.symlink(os.path.abspath(os.path.join(args.data, "imagenet-sample")), os.path.join(link_root, "train"))
    data_dir = args.data if os.path.exists(split_root) else tmp
    if data_dir == tmp:
        for name in ["cifar10-jpg"]:
            os.symlink(os.path.abspath(os.path.join(args.data, name)), os.path.join(tmp, name))
    rows = []
    for case, batch, batches in [("cifar", 64, 40), ("imagenet", 32, 15)]:
        proc = subprocess.run([args.scion, "--case", case, "--data", data_dir, "--workers", str(args.workers),
                               "--batch", str(batch), "--batches", str(batches)], capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"bench_loader failed: {proc.stderr}")
        ours = json.loads(proc.stdout.strip().splitlines()[-1])["images_per_second"]
        theirs = torch_rate(case, data_dir, args.workers, batch, batches)
        label = {"cifar": "CIFAR-10 JPEG 32 px, RRC + flip + RandAugment + RandomErasing + Mixup/CutMix",
                 "imagenet": "ImageNet JPEG, RandomResizedCrop 224 + flip"}[case]
        rows.append(f"| {label} | {batch} | {ours:.0f} | {theirs:.0f} | **{ours / theirs:.2f}** |")
        print(rows[-1], flush=True)
    table = (f"{cpu_model()}; torch {torch.__version__}, {args.workers} workers each, images/s, ratio = scion / torch\n\n"
             "| pipeline | batch | scion img/s | torch img/s | ratio |\n|---|---|---|---|---|\n" + "\n".join(rows))
    print()
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    main()
