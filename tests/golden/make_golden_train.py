#!/usr/bin/env python3
"""Generates tests/golden/train.safetensors: parameters after several torch.optim.AdamW and SGD
steps on fixed gradients, for tests/train/test_optim.cpp. Run from the repository root:

    python3 tests/golden/make_golden_train.py     # needs torch and safetensors
"""
import os

import torch
from safetensors.torch import save_file

torch.manual_seed(0)
out = {}
w0, b0 = torch.randn(4, 3), torch.randn(3)
grads = [(torch.randn(4, 3), torch.randn(3)) for _ in range(5)]
out["w0"], out["b0"] = w0, b0
for k, (gw, gb) in enumerate(grads):
    out[f"grad{k}.w"], out[f"grad{k}.b"] = gw, gb


def run(name, make_opt, lrs):
    w, b = w0.clone().requires_grad_(), b0.clone().requires_grad_()
    opt = make_opt(w, b)
    for (gw, gb), lr in zip(grads, lrs):
        for g in opt.param_groups:
            g["lr"] = lr
        w.grad, b.grad = gw.clone(), gb.clone()
        opt.step()
    out[f"{name}.w"], out[f"{name}.b"] = w.detach(), b.detach()


lrs = [1e-3, 2e-3, 3e-3, 2e-3, 1e-3]
# AdamW with timm's decay groups: the matrix decays, the 1-d bias does not.
run("adamw_groups", lambda w, b: torch.optim.AdamW([{"params": [w], "weight_decay": 0.05},
                                                    {"params": [b], "weight_decay": 0.0}],
                                                   betas=(0.9, 0.999), eps=1e-8), lrs)
run("adamw_all", lambda w, b: torch.optim.AdamW([w, b], weight_decay=0.1, betas=(0.8, 0.99), eps=1e-6), lrs)
run("sgd_nesterov", lambda w, b: torch.optim.SGD([{"params": [w], "weight_decay": 1e-4},
                                                  {"params": [b], "weight_decay": 0.0}],
                                                 momentum=0.9, nesterov=True), [0.1, 0.2, 0.1, 0.05, 0.1])
run("sgd_plain", lambda w, b: torch.optim.SGD([w, b], momentum=0.0, weight_decay=0.0), [0.1, 0.2, 0.1, 0.05, 0.1])
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "train.safetensors")
save_file({k: v.contiguous() for k, v in out.items()}, path)
print(f"wrote {path}")
