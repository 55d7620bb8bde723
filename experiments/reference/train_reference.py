#!/usr/bin/env python3
"""PyTorch/timm reference trainer for the fidelity check of scion's `train`.

Trains the same model (timm, with timm's default initialization, which scion's trunc_normal
initializer reproduces) on the same image files with the same recipe as a scion mini config:
AdamW with timm's weight-decay groups, scion's per-step cosine schedule with linear warmup, label
smoothing, random crop with 4 px padding + horizontal flip, bf16 autocast, batch 128, drop_last.
Writes one JSON line per epoch (epoch, train_loss, val_loss, val_acc1, val_acc5) to --out.
Also reads the Tiny ImageNet layout (images resized to the model's size, as scion's random_crop and
crop_pct 1.0 do), the architecture overrides scion configs use (dims, depths, embed_dim, depth,
num_heads), and --init-weights W.safetensors: start from exactly these weights (e.g. the student
`scion select` makes from the same teacher) instead of timm's initialization.

    python3 experiments/reference/train_reference.py --config configs/mini/convnext_femto_cifar10.yaml \
        --out runs/reference/convnext_femto_cifar10.jsonl
"""
import argparse
import json
import math
import os
import sys
import time

import timm
import torch
import torch.nn.functional as F
import torchvision.transforms as T
import yaml
from timm.optim import create_optimizer_v2
from PIL import Image
from safetensors.torch import load_file
from torchvision.datasets import ImageFolder


class TinyImageNet(torch.utils.data.Dataset):
    """wnids.txt; train/<wnid>/images/*.JPEG; val/images + val/val_annotations.txt (scion's order:
    classes = sorted wnids, training files sorted per class)."""

    def __init__(self, root, split, transform):
        wnids = sorted(open(os.path.join(root, "wnids.txt")).read().split())
        self.classes, self.transform, index = wnids, transform, {w: i for i, w in enumerate(wnids)}
        if split == "train":
            self.items = [(os.path.join(root, "train", w, "images", f), index[w]) for w in wnids
                          for f in sorted(os.listdir(os.path.join(root, "train", w, "images")))]
        else:
            lines = open(os.path.join(root, "val", "val_annotations.txt")).read().splitlines()
            self.items = [(os.path.join(root, "val", "images", l.split("\t")[0]), index[l.split("\t")[1]])
                          for l in lines if l.strip()]
        self.targets = [c for _, c in self.items]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        path, c = self.items[i]
        return self.transform(Image.open(path).convert("RGB")), c


def lr_at(step, total, warmup, base, min_lr, warmup_lr=0.0):
    """scion's train::learning_rate for the cosine schedule."""
    if step < warmup:
        return warmup_lr + (base - warmup_lr) * step / warmup
    n, i = total - warmup, step - warmup
    return min_lr + 0.5 * (base - min_lr) * (1 + math.cos(math.pi * i / n))


def numbers(node):
    """YAML 1.1 (PyYAML) reads 1e-08 as a string; configs written by older scion builds have such
    values: convert strings that are numbers."""
    if isinstance(node, dict):
        return {k: numbers(v) for k, v in node.items()}
    if isinstance(node, list):
        return [numbers(v) for v in node]
    if isinstance(node, str):
        try:
            return float(node)
        except ValueError:
            return node
    return node


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--init-weights", help="start from these weights (safetensors, timm keys)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = numbers(yaml.safe_load(open(args.config)))
    m, d, t = cfg["model"], cfg["data"], cfg["train"]
    aug = d.get("augment", {})
    assert d["dataset"] in ("image_folder", "tiny_imagenet") and aug.get("crop") == "random_crop", \
        "reference supports the mini recipe"
    torch.manual_seed(cfg.get("seed", 0))
    timm_name = {"convnext_femto": "convnext_femto", "vit_tiny": "vit_tiny_patch16_224"}[m["name"]]
    kwargs = dict(num_classes=m["num_classes"], drop_path_rate=m.get("drop_path", 0.0))
    if "convnext" in timm_name:
        kwargs["conv_mlp"] = False
        kwargs.update({k: tuple(m[k]) for k in ("dims", "depths") if m.get(k)})
        if m.get("layer_scale") is not None:
            kwargs["ls_init_value"] = m["layer_scale"]
    else:
        kwargs.update(img_size=m["img_size"], patch_size=m["patch_size"])
        kwargs.update({k: m[k] for k in ("embed_dim", "depth", "num_heads") if m.get(k)})
    model = timm.create_model(timm_name, **kwargs)
    if args.init_weights:
        model.load_state_dict(load_file(args.init_weights), strict=True)
    mean, std = d.get("mean", [0.485, 0.456, 0.406]), d.get("std", [0.229, 0.224, 0.225])
    size = m["img_size"]
    bicubic = T.InterpolationMode.BICUBIC
    resize = [T.Resize((size, size), interpolation=bicubic)] if d["dataset"] == "tiny_imagenet" else []
    train_tf = T.Compose(resize + [T.RandomCrop(size, padding=aug.get("padding", 4)),
                                   T.RandomHorizontalFlip(aug.get("hflip", 0.5)), T.ToTensor(),
                                   T.Normalize(mean, std)])
    eval_tf = T.Compose(resize + [T.ToTensor(), T.Normalize(mean, std)])  # crop_pct 1.0
    root = d["root"]
    if d["dataset"] == "tiny_imagenet":
        train_ds = TinyImageNet(root, d.get("train_split", "train"), train_tf)
        val_ds = TinyImageNet(root, d.get("val_split", "val"), eval_tf)
    else:
        train_ds = ImageFolder(os.path.join(root, d.get("train_split", "train")), transform=train_tf)
        val_ds = ImageFolder(os.path.join(root, d.get("val_split", "val")), transform=eval_tf)
    if d.get("train_subset", 0):
        g = torch.Generator().manual_seed(cfg.get("seed", 0))
        per = d["train_subset"] // len(train_ds.classes)
        idx = []
        targets = torch.tensor(train_ds.targets)
        for c in range(len(train_ds.classes)):
            cls = (targets == c).nonzero().flatten()
            idx += cls[torch.randperm(len(cls), generator=g)[:per]].tolist()
        train_ds = torch.utils.data.Subset(train_ds, sorted(idx))
    bs = t["batch_size"]
    train_dl = torch.utils.data.DataLoader(train_ds, batch_size=bs, shuffle=True, drop_last=True,
                                           num_workers=d.get("workers", 2), persistent_workers=d.get("workers", 2) > 0)
    val_dl = torch.utils.data.DataLoader(val_ds, batch_size=bs, shuffle=False, num_workers=d.get("workers", 2))
    o, s = t["optimizer"], t["schedule"]
    opt = create_optimizer_v2(model, "adamw", lr=o["lr"], weight_decay=o["weight_decay"],
                              betas=tuple(o.get("betas", [0.9, 0.999])), eps=o.get("eps", 1e-8))
    epochs = args.epochs or t["epochs"]
    steps_per_epoch = len(train_dl)
    total, warmup = t["epochs"] * steps_per_epoch, round(s.get("warmup_epochs", 0) * steps_per_epoch)
    bf16 = t.get("precision", "f32") == "bf16"
    smoothing = aug.get("label_smoothing", 0.0)
    step, first_epoch = 0, 0
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    # Resumable: a checkpoint beside --out after every epoch (weights, optimizer, step, RNG state);
    # a rerun continues from it and keeps the metrics lines of the finished epochs.
    ckpt, lines = args.out + ".ckpt.pt", []
    if os.path.exists(ckpt) and os.path.exists(args.out):
        state = torch.load(ckpt, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step, first_epoch = state["step"], state["epoch"]
        torch.set_rng_state(state["rng"])
        lines = open(args.out).read().splitlines()[:first_epoch]
        if len(lines) != first_epoch:
            sys.exit(f"{args.out}: {len(lines)} metrics lines but {ckpt} is after epoch {first_epoch}; "
                     "delete the checkpoint to start over")
        print(f"resuming {args.out} after epoch {first_epoch}", flush=True)
    with open(args.out, "w") as out:
        for line in lines:
            out.write(line + "\n")
        out.flush()  # the finished epochs' lines must survive a kill during the next epoch
        for epoch in range(first_epoch, epochs):
            model.train()
            t0, loss_sum, n = time.time(), 0.0, 0
            for x, y in train_dl:
                lr = lr_at(step, total, warmup, o["lr"], s.get("min_lr", 1e-6), s.get("warmup_lr", 0.0))
                for gr in opt.param_groups:
                    gr["lr"] = lr
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    loss = F.cross_entropy(model(x), y, label_smoothing=smoothing)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                clip = t.get("clip_grad", 0)
                if clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
                opt.step()
                step += 1
                loss_sum, n = loss_sum + loss.item(), n + 1
            secs = time.time() - t0
            model.eval()
            vl, c1, c5, cnt = 0.0, 0, 0, 0
            with torch.no_grad():
                for x, y in val_dl:
                    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                        logits = model(x).float()
                    vl += F.cross_entropy(logits, y, reduction="sum").item()
                    top = logits.topk(5, dim=1).indices
                    c1 += (top[:, 0] == y).sum().item()
                    c5 += (top == y[:, None]).any(dim=1).sum().item()
                    cnt += len(y)
            line = {"epoch": epoch + 1, "train_loss": loss_sum / n, "val_loss": vl / cnt,
                    "val_acc1": 100 * c1 / cnt, "val_acc5": 100 * c5 / cnt, "epoch_seconds": secs,
                    "images_per_second": n * bs / secs}
            out.write(json.dumps(line) + "\n")
            out.flush()
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                        "epoch": epoch + 1, "rng": torch.get_rng_state()}, ckpt + ".tmp")
            os.replace(ckpt + ".tmp", ckpt)
            print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
