#!/usr/bin/env python3
"""Generates tests/golden/memory.safetensors for tests/nn/test_saved_memory.cpp: the bytes that
PyTorch's autograd graph keeps for backward under bf16 autocast (CPU), for one block and for a whole
forward + cross-entropy of timm's vit_tiny_patch16_224 and convnext_femto at batch 2, train mode,
without and with drop path (rate 0.1; keys *_drop_path).
The keys *.cuda_autocast hold the same graph under CUDA autocast's op lists, which scion's autocast
follows on every device: they differ from the CPU's in layer_norm, which CUDA autocast runs in f32
(its input cast to f32, and that copy saved), where CPU autocast runs it in the input's bf16. This
machine has no GPU, so the script runs that rule on the CPU: F.layer_norm takes f32 inputs there.
Counted with torch.autograd.graph.saved_tensors_hooks: every tensor the graph saves, each storage
once, parameters left out (they live anyway); the bf16 weight copies autocast caches count. Each
key holds the sizes of the saved storages, so that the test can round them as scion's allocator
rounds its own (its size classes) and compare the graphs' contents, not the allocators.

    python3 tests/golden/make_golden_memory.py     # needs torch, timm and safetensors
"""
import contextlib
import os

import timm
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

torch.manual_seed(0)


def saved_bytes(module, make_input, params, head=None):
    """Sizes in bytes of the distinct storages the graph of head(module(make_input())) saves."""
    param_ptrs = {p.untyped_storage().data_ptr() for p in params}
    seen = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in param_ptrs:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = module(make_input())
            if head is not None:
                out = head(out)
    return torch.tensor(sorted(seen.values()), dtype=torch.int64)


@contextlib.contextmanager
def cuda_autocast_layer_norm():
    """F.layer_norm as CUDA autocast runs it: inputs cast to f32, an f32 result."""
    cpu_layer_norm = F.layer_norm

    def f32_layer_norm(x, shape, weight=None, bias=None, eps=1e-5):
        if not torch.is_autocast_enabled("cpu"):
            return cpu_layer_norm(x, shape, weight, bias, eps)
        with torch.autocast("cpu", enabled=False):
            return cpu_layer_norm(x.float(), shape, None if weight is None else weight.float(),
                                  None if bias is None else bias.float(), eps)

    F.layer_norm = f32_layer_norm
    try:
        yield
    finally:
        F.layer_norm = cpu_layer_norm


B = 2
out = {}
labels = torch.tensor([3, 7])
for name, block_index, token_shape in [("vit_tiny", 11, (B, 197, 192)),
                                       ("convnext_femto", 1, (B, 48, 56, 56))]:
    for drop_path in (0.0, 0.1):
        timm_name = "vit_tiny_patch16_224" if name == "vit_tiny" else name
        model = timm.create_model(timm_name, num_classes=100, drop_path_rate=drop_path).train()
        params = list(model.parameters())
        # The last block of ViT-T, the second of ConvNeXt-F's first stage: the highest drop-path
        # rate of their stage (drop_path for ViT-T, drop_path / 17 for ConvNeXt-F).
        block = model.blocks[block_index] if name == "vit_tiny" else model.stages[0].blocks[block_index]
        # The block's input is made inside the graph (x + 0 saves nothing), so that a block that
        # keeps its input counts it, as one that keeps a copy of it does.
        leaf = torch.randn(*token_shape)
        if len(token_shape) == 4:
            leaf = leaf.to(memory_format=torch.channels_last)
        leaf.requires_grad_()
        key = name + ("_drop_path" if drop_path else "")
        for suffix, policy in [("", contextlib.nullcontext), (".cuda_autocast", cuda_autocast_layer_norm)]:
            with policy():
                out[f"{key}.block{suffix}"] = saved_bytes(block, lambda: leaf + 0.0, params)
                image = torch.randn(B, 3, 224, 224, generator=torch.Generator().manual_seed(1))
                out[f"{key}.model{suffix}"] = saved_bytes(model, lambda: image + 0.0, params,
                                                          lambda y: F.cross_entropy(y, labels))
            print(key + suffix, "block", out[f"{key}.block{suffix}"].sum().item(), "bytes, forward",
                  out[f"{key}.model{suffix}"].sum().item())
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "memory.safetensors")
save_file(out, path, metadata={"torch_version": torch.__version__, "timm_version": timm.__version__})
print(f"wrote {path}")
