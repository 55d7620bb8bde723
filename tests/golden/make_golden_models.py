#!/usr/bin/env python3
"""Generates the model fixtures in tests/golden/models/ with timm (tests/nn/test_models_golden.cpp).

Full weights and gradients of the test models (vit_tiny, vit_small and vit_large at 32 px / patch 4,
convnext_femto, convnext_tiny, convnext_small and convnext_base at 32 px, 10 classes) would be
several GB, so:
  * weights are not stored: every tensor is filled by scion's own Philox RNG (philox.py), from seed
    fnv1a64(name) with uniform(low, high) given per tensor in the metadata ("init"), so scion
    recreates exactly the same f32 weights;
  * for each parameter gradient the file keeps the full tensor when it has at most 1024 elements,
    otherwise 256 elements at seeded random positions, plus statistics over every element
    (sum, sum of squares and two projections onto seeded uniform(-1, 1) vectors).
It also keeps the input batch, labels, logits, loss and the bf16-autocast logits; and, for the
round-trip test, two small models saved by timm as they are (roundtrip_*.safetensors).

    python3 tests/golden/make_golden_models.py [STEM ...]   # needs torch, timm, safetensors, numpy
"""
import json
import os

import numpy as np
import timm
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

import philox

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "models")
SAMPLES, FULL_MAX = 256, 1024

MODELS = {  # file stem: (timm name, timm kwargs)
    "vit_tiny": ("vit_tiny_patch16_224", dict(img_size=32, patch_size=4, num_classes=10)),
    "vit_small": ("vit_small_patch16_224", dict(img_size=32, patch_size=4, num_classes=10)),
    "convnext_femto": ("convnext_femto", dict(conv_mlp=False, num_classes=10)),
    "convnext_tiny": ("convnext_tiny", dict(conv_mlp=False, num_classes=10)),
    "vit_large": ("vit_large_patch16_224", dict(img_size=32, patch_size=4, num_classes=10)),
    "convnext_small": ("convnext_small", dict(conv_mlp=False, num_classes=10)),
    "convnext_base": ("convnext_base", dict(conv_mlp=False, num_classes=10)),
}


def init_range(name, p):
    """(low, high) of the uniform fill: fan-in scaled weights, norm/scale weights near 1, small biases."""
    if name in ("cls_token", "pos_embed"):
        return -0.2, 0.2
    if p.dim() >= 2:
        a = 1.0 / np.sqrt(p.numel() // p.shape[0])
        return -a, a
    if name.endswith("gamma") or ("norm" in name and name.endswith("weight")):
        return 0.8, 1.2
    return -0.1, 0.1


def fill(model):
    spec = {}
    with torch.no_grad():
        for name, p in model.named_parameters():
            lo, hi = init_range(name, p)
            vals = philox.uniform(p.numel(), lo, hi, philox.fnv1a64(name)).astype(np.float32)
            p.copy_(torch.from_numpy(vals).reshape(p.shape))
            spec[name] = [lo, hi]
    return spec


def gradient_entries(name, g, out):
    g = g.detach().double().flatten().numpy()
    if g.size <= FULL_MAX:
        out[f"grad_full.{name}"] = torch.from_numpy(g.astype(np.float32))
    else:
        rng = np.random.default_rng(philox.fnv1a64(name) & 0xFFFFFFFF)
        idx = np.sort(rng.choice(g.size, SAMPLES, replace=False)).astype(np.int64)
        out[f"grad_idx.{name}"] = torch.from_numpy(idx)
        out[f"grad_val.{name}"] = torch.from_numpy(g[idx].astype(np.float32))
    seed = philox.fnv1a64(name)
    r1 = philox.uniform(g.size, -1.0, 1.0, seed + 1)
    r2 = philox.uniform(g.size, -1.0, 1.0, seed + 2)
    out[f"grad_stats.{name}"] = torch.tensor([g.sum(), (g * g).sum(), (g * r1).sum(), (g * r2).sum()],
                                             dtype=torch.float64)


def make(stem, timm_name, kwargs):
    torch.manual_seed(0)
    model = timm.create_model(timm_name, **kwargs)
    spec = fill(model)
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    y = torch.tensor([3, 7])
    out = {"input": x, "labels": y}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out["logits_bf16"] = model(x).float().detach()
    logits = model(x)
    loss = F.cross_entropy(logits, y)
    loss.backward()
    out["logits"] = logits.detach()
    out["loss"] = loss.detach().reshape(1)
    for name, p in model.named_parameters():
        gradient_entries(name, p.grad, out)
    meta = {"timm_model": timm_name, "timm_kwargs": json.dumps(kwargs), "init": json.dumps(spec),
            "timm_version": timm.__version__, "torch_version": torch.__version__}
    path = os.path.join(HERE, f"{stem}.safetensors")
    save_file({k: v.contiguous() for k, v in out.items()}, path, metadata=meta)
    print(f"{path}: {os.path.getsize(path)} bytes")


def make_roundtrip():
    """Small models with timm's own initialization, saved the way timm checkpoints are saved.
    roundtrip_convnext_convmlp keeps timm's default conv_mlp=True for convnext_atto: its fc weights
    are stored as 1x1 convolutions (4C, C, 1, 1), as in timm's published atto..nano checkpoints."""
    cases = {
        "roundtrip_convnext_convmlp": ("convnext_atto",
                                       dict(num_classes=10, depths=(1, 1, 2, 1), dims=(16, 32, 64, 128))),
        "roundtrip_vit": ("vit_tiny_patch16_224",
                          dict(img_size=32, patch_size=4, num_classes=10, depth=2, embed_dim=64, num_heads=2)),
        "roundtrip_convnext": ("convnext_atto",
                               dict(conv_mlp=False, num_classes=10, depths=(1, 1, 2, 1), dims=(16, 32, 64, 128))),
    }
    for stem, (name, kwargs) in cases.items():
        torch.manual_seed(1)
        model = timm.create_model(name, **kwargs).eval()
        save_file(model.state_dict(), os.path.join(HERE, f"{stem}.safetensors"), metadata={"format": "pt"})
        x = torch.randn(2, 3, 32, 32)
        with torch.no_grad():
            logits = model(x)
        save_file({"input": x, "logits": logits}, os.path.join(HERE, f"{stem}_io.safetensors"),
                  metadata={"timm_model": name, "timm_kwargs": json.dumps(kwargs)})


if __name__ == "__main__":
    import sys
    torch.set_num_threads(2)
    os.makedirs(HERE, exist_ok=True)
    only = set(sys.argv[1:])  # optional: the stems to (re)make, e.g. vit_large roundtrip
    for stem, (timm_name, kwargs) in MODELS.items():
        if not only or stem in only:
            make(stem, timm_name, kwargs)
    if not only or "roundtrip" in only:
        make_roundtrip()
