#!/usr/bin/env python3
"""Generates tests/golden/init.safetensors: element-selection indices computed exactly as the
official weight-selection code does (torch: arange(s) * (t // s) when s divides t, else
round(linspace(0, t - 1, s)) in float32 with round-half-to-even), for tests/init/test_selection.cpp.

    python3 tests/golden/make_golden_init.py
"""
import os

import torch
from safetensors.torch import save_file

PAIRS = [(384, 192), (1536, 768), (1152, 576), (768, 192), (100, 37), (7, 3), (384, 160), (197, 65),
         (12, 5), (96, 40), (3072, 1000), (65, 17)]
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
