#!/usr/bin/env python3
"""Generates tests/golden/distill.safetensors for tests/train/test_distill.cpp: the knowledge-
distillation loss (1 - alpha) * CE(student, labels, label_smoothing) + alpha * T^2 *
KL(softmax(teacher / T) || softmax(student / T)) (Hinton et al.; torch's kl_div with
reduction="batchmean") and its gradient with respect to the student's logits, in float64.

    python3 tests/golden/make_golden_distill.py
"""
import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

torch.manual_seed(0)
out = {}
for i, (alpha, temp, smoothing) in enumerate([(0.5, 1.0, 0.0), (0.7, 2.0, 0.1), (1.0, 4.0, 0.0)]):
    s = (torch.randn(6, 10, dtype=torch.float64) * 3).requires_grad_()
    t = torch.randn(6, 10, dtype=torch.float64) * 3
    y = torch.randint(0, 10, (6,))
    task = F.cross_entropy(s, y, label_smoothing=smoothing)
    kl = F.kl_div(F.log_softmax(s / temp, dim=1), F.softmax(t / temp, dim=1), reduction="batchmean")
    loss = (1 - alpha) * task + alpha * temp * temp * kl
    loss.backward()
    out.update({f"{i}.student": s.detach(), f"{i}.teacher": t, f"{i}.labels": y,
                f"{i}.params": torch.tensor([alpha, temp, smoothing], dtype=torch.float64),
                f"{i}.loss": loss.detach().reshape(1), f"{i}.grad": s.grad})
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "distill.safetensors")
save_file(out, path, metadata={"torch_version": torch.__version__})
print(f"wrote {path}")
