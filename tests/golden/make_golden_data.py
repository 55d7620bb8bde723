#!/usr/bin/env python3
"""Generates tests/golden/data.safetensors: PIL's bicubic and bilinear resizes of a few real images
from ../shared/data, for the resize test in tests/data/test_transforms.cpp (scion must be within
1/255 mean absolute difference of PIL/torchvision). Run from the repository root:

    python3 tests/golden/make_golden_data.py     # needs pillow, numpy, torch, safetensors
"""
import json
import os

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED = os.path.join(ROOT, "..", "shared", "data")
CASES = [  # (path relative to shared/data, output (h, w))
    ("imagenet-sample/n01440764/n01440764_tench.JPEG", (160, 200)),
    ("imagenet-sample/n01440764/n01440764_tench.JPEG", (37, 53)),
    ("tiny-imagenet-200-subset/val/images/val_0.JPEG", (224, 224)),
    ("cifar10-jpg/test/cat/0000.jpg", (224, 224)),
]

tensors, meta = {}, []
for i, (rel, (h, w)) in enumerate(CASES):
    img = Image.open(os.path.join(SHARED, rel)).convert("RGB")
    for mode, flag in [("bicubic", Image.Resampling.BICUBIC), ("bilinear", Image.Resampling.BILINEAR)]:
        out = np.asarray(img.resize((w, h), flag))
        tensors[f"case{i}.{mode}"] = torch.from_numpy(out.copy())
    meta.append({"path": rel, "height": h, "width": w})
out = os.path.join(ROOT, "tests", "golden", "data.safetensors")
save_file(tensors, out, metadata={"cases": json.dumps(meta)})
print(f"wrote {out} ({os.path.getsize(out)} bytes)")
