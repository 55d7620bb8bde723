#!/usr/bin/env python3
"""Generates, for tests/init/test_selection.cpp:
  * tests/golden/init.safetensors: element-selection indices computed exactly as the official
    weight-selection code does (torch: arange(s) * (t // s) when s divides t, else
    round(linspace(0, t - 1, s)) in float32 with round-half-to-even);
  * tests/golden/init_convnext.safetensors: the official selection of a ConvNeXt student (below).

    python3 tests/golden/make_golden_init.py
"""
import os

import torch
from safetensors.torch import save_file

PAIRS = [(384, 192), (1536, 768), (1152, 576), (768, 192), (100, 37), (7, 3), (384, 160), (197, 65),
         (12, 5), (96, 40), (3072, 1000), (65, 17), (3072, 576), (1024, 192)]
out = {}
for t, s in PAIRS:
    if t % s == 0:
        idx = torch.arange(s) * (t // s)
    else:
        idx = torch.round(torch.linspace(0, t - 1, s)).long()
    out[f"uniform.{t}.{s}"] = idx.to(torch.int64)
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "init.safetensors")
save_file(out, path)
print(f"wrote {path}")


# The official selection (weight_selection.py: every student key without "head", the teacher's
# same key, uniform_element_selection) on a ConvNeXt teacher: teacher convnext_atto with depths
# (2, 2, 3, 2), dims (20, 40, 80, 160), every tensor uniform(-1, 1) from scion's Philox with seed
# fnv1a64("teacher." + key); student depths (1, 1, 2, 1), dims (12, 24, 48, 96) (20 -> 12: the
# linspace branch), 10 classes. Stored: "official.<key>" for every key the official code selects,
# and "head_norm.<key>" (the same formula on head.norm.*, which scion selects with head_norm).
import sys

import timm

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import philox  # noqa: E402


def uniform_element_selection(wt, s_shape):  # weight_selection.py, as published
    ws = wt.clone()
    for dim in range(wt.dim()):
        if wt.shape[dim] % s_shape[dim] == 0:
            step = wt.shape[dim] // s_shape[dim]
            indices = torch.arange(s_shape[dim]) * step
        else:
            indices = torch.round(torch.linspace(0, wt.shape[dim] - 1, s_shape[dim])).long()
        ws = torch.index_select(ws, dim, indices)
    return ws


teacher = timm.create_model("convnext_atto", conv_mlp=False, num_classes=10, depths=(2, 2, 3, 2),
                            dims=(20, 40, 80, 160))
student = timm.create_model("convnext_atto", conv_mlp=False, num_classes=10, depths=(1, 1, 2, 1),
                            dims=(12, 24, 48, 96))
tw = {}
for k, v in teacher.state_dict().items():
    vals = philox.uniform(v.numel(), -1.0, 1.0, philox.fnv1a64("teacher." + k))
    tw[k] = torch.from_numpy(vals.astype("float32")).reshape(v.shape)
sel = {}
for key, v in student.state_dict().items():
    if "head" in key:
        if key.startswith("head.norm."):
            sel["head_norm." + key] = uniform_element_selection(tw[key], v.shape)
        continue
    sel["official." + key] = uniform_element_selection(tw[key], v.shape)
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "init_convnext.safetensors")
save_file({k: v.contiguous() for k, v in sel.items()}, path)
print(f"wrote {path}")


# Singular values of a fixed 48 x 48 matrix (init/mimetic.cpp's SVD against LAPACK through torch):
# a_ij = sin(0.37 i + 1.3 j) + 0.5 [i == j].
i = torch.arange(48, dtype=torch.float64).reshape(-1, 1)
j = torch.arange(48, dtype=torch.float64).reshape(1, -1)
a = torch.sin(0.37 * i + 1.3 * j) + 0.5 * (i == j).double()
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "svd.safetensors")
save_file({"a": a.contiguous(), "s": torch.linalg.svdvals(a).contiguous()}, path)
print(f"wrote {path}")
