#!/usr/bin/env python3
"""Generates tests/golden/ops.safetensors: inputs, outputs and input gradients of every core op,
computed by PyTorch, for scion's golden tests (tests/core/test_golden_ops.cpp).

For a case NAME the file holds NAME.in0, NAME.in1, ... (inputs), NAME.out (output), NAME.gout
(upstream gradient) and NAME.grad0, ... (gradients of the floating inputs; absent for inputs that
take none). Cases ending in _bf16 run in bfloat16. Run from the repository root:

    python3 tests/golden/make_golden.py          # needs torch and safetensors
"""
import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

torch.manual_seed(0)
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ops.safetensors")
tensors = {}


def case(name, fn, *inputs, grads=True):
    """Runs fn(*inputs) and stores inputs, output, a random upstream gradient and input grads."""
    ins = []
    for i, x in enumerate(inputs):
        x = x.detach().clone()
        if grads and x.is_floating_point():
            x.requires_grad_(True)
        ins.append(x)
        tensors[f"{name}.in{i}"] = x.detach().clone().contiguous()
    out = fn(*ins)
    tensors[f"{name}.out"] = out.detach().clone().contiguous()
    if grads and out.is_floating_point():
        gout = torch.randn(out.shape, dtype=torch.float32).to(out.dtype)
        tensors[f"{name}.gout"] = gout
        out.backward(gout)
        for i, x in enumerate(ins):
            if x.requires_grad:
                tensors[f"{name}.grad{i}"] = x.grad.detach().clone().contiguous()


def r(*shape, lo=-2.0, hi=2.0, dtype=torch.float32):
    return (torch.rand(*shape) * (hi - lo) + lo).to(dtype)


def away_from_zero(*shape):
    x = r(*shape)
    return torch.where(x.abs() < 0.3, x.sign() * 0.3 + x, x)


# Elementwise unary (kinks avoided: relu away from 0).
for dt, sfx in [(torch.float32, ""), (torch.bfloat16, "_bf16")]:
    case("neg" + sfx, torch.neg, r(3, 5, dtype=dt))
    case("exp" + sfx, torch.exp, r(3, 5, dtype=dt))
    case("log" + sfx, torch.log, r(3, 5, lo=0.2, hi=3.0, dtype=dt))
    case("sqrt" + sfx, torch.sqrt, r(3, 5, lo=0.2, hi=3.0, dtype=dt))
    case("rsqrt" + sfx, torch.rsqrt, r(3, 5, lo=0.2, hi=3.0, dtype=dt))
    case("tanh" + sfx, torch.tanh, r(3, 5, dtype=dt))
    case("erf" + sfx, torch.erf, r(3, 5, dtype=dt))
    case("relu" + sfx, torch.relu, away_from_zero(3, 5).to(dt))
    case("sigmoid" + sfx, torch.sigmoid, r(3, 5, dtype=dt))
    case("gelu" + sfx, F.gelu, r(4, 7, lo=-4, hi=4, dtype=dt))
    case("gelu_tanh" + sfx, lambda x: F.gelu(x, approximate="tanh"), r(4, 7, lo=-4, hi=4, dtype=dt))

# Elementwise binary with broadcasting.
a, b = r(3, 1, 5), r(4, 5)
case("add", torch.add, a, b)
case("sub", torch.sub, a, b)
case("mul", torch.mul, a, b)
case("div", torch.div, a, away_from_zero(4, 5))
case("pow", torch.pow, r(3, 1, 5, lo=0.3, hi=2.0), r(4, 5, lo=-1.5, hi=1.5))
case("pow_scalar", lambda x: torch.pow(x, 3.0), r(2, 6))
m1, m2 = r(3, 4), r(3, 4)
m2[0, 0] = m1[0, 0]  # a tie: torch splits the gradient evenly
case("maximum", torch.maximum, m1, m2)
case("minimum", torch.minimum, m1, m2)
case("add_bf16", torch.add, a.bfloat16(), b.bfloat16())
case("mul_bf16", torch.mul, a.bfloat16(), b.bfloat16())
ca, cb = torch.randint(0, 3, (3, 4)).float(), torch.randint(0, 3, (4,)).float()
for op in ["eq", "ne", "lt", "le", "gt", "ge"]:
    case(op, getattr(torch, op), ca, cb, grads=False)
cond = torch.rand(3, 4) > 0.5
case("where", lambda c, x, y: torch.where(c, x, y), cond, r(3, 4), r(4))

# Reductions.
x = r(3, 4, 5)
case("sum_all", lambda t: t.sum(), x)
case("sum_dim1_keep", lambda t: t.sum(dim=1, keepdim=True), x)
case("sum_dims02", lambda t: t.sum(dim=(0, 2)), x)
case("mean_dims02", lambda t: t.mean(dim=(0, 2)), x)
case("mean_all", lambda t: t.mean(), x)
case("var_dim1", lambda t: t.var(dim=1), x)
case("var_all", lambda t: t.var(), x)
case("max_dim2", lambda t: t.max(dim=2).values, x)
tensors["max_dim2.indices"] = x.max(dim=2).indices
case("argmax_dim1", lambda t: t.argmax(dim=1), x, grads=False)

# Linear algebra.
case("matmul_2d", torch.matmul, r(4, 6), r(6, 3))
case("matmul_batched_broadcast", torch.matmul, r(2, 1, 4, 6), r(3, 6, 5))
case("matmul_matrix_batch", torch.matmul, r(4, 6), r(2, 6, 3))
case("matmul_vec", torch.matmul, r(6), r(6, 3))
case("matmul_mat_vec", torch.matmul, r(4, 6), r(6))
case("matmul_transposed", lambda p, q: torch.matmul(p.transpose(-1, -2), q.transpose(-1, -2)),
     r(2, 6, 4), r(2, 3, 6))
case("linear", F.linear, r(2, 3, 6), r(4, 6), r(4))
case("linear_nobias", F.linear, r(5, 6), r(4, 6))
case("matmul_bf16", torch.matmul, r(3, 8, 64, dtype=torch.bfloat16), r(3, 64, 8, dtype=torch.bfloat16))
case("linear_bf16", F.linear, r(2, 5, 32, dtype=torch.bfloat16), r(16, 32, dtype=torch.bfloat16),
     r(16, dtype=torch.bfloat16))

# Convolutions.
case("conv2d_s2p1", lambda t, w, b: F.conv2d(t, w, b, stride=2, padding=1), r(2, 4, 9, 9), r(6, 4, 3, 3), r(6))
case("conv2d_dil2", lambda t, w: F.conv2d(t, w, dilation=2, padding=2), r(2, 3, 8, 8), r(5, 3, 3, 3))
case("conv2d_groups2", lambda t, w, b: F.conv2d(t, w, b, groups=2, padding=1), r(2, 4, 6, 6), r(6, 2, 3, 3), r(6))
case("conv2d_depthwise7", lambda t, w, b: F.conv2d(t, w, b, padding=3, groups=4), r(2, 4, 8, 8), r(4, 1, 7, 7), r(4))
case("conv2d_patch4", lambda t, w, b: F.conv2d(t, w, b, stride=4), r(2, 3, 16, 16), r(8, 3, 4, 4), r(8))
case("conv2d_depthwise7_bf16", lambda t, w, b: F.conv2d(t, w, b, padding=3, groups=8),
     r(2, 8, 8, 8, dtype=torch.bfloat16), r(8, 1, 7, 7, dtype=torch.bfloat16), r(8, dtype=torch.bfloat16))
case("conv2d_s2p1_bf16", lambda t, w, b: F.conv2d(t, w, b, stride=2, padding=1),
     r(2, 4, 9, 9, dtype=torch.bfloat16), r(6, 4, 3, 3, dtype=torch.bfloat16), r(6, dtype=torch.bfloat16))

# Normalization, softmax, losses.
case("layer_norm", lambda t, w, b: F.layer_norm(t, (8,), w, b, eps=1e-6), r(3, 4, 8), r(8), r(8))
case("layer_norm_2d", lambda t, w, b: F.layer_norm(t, (4, 8), w, b), r(3, 4, 8), r(4, 8), r(4, 8))
case("layer_norm_noaffine", lambda t: F.layer_norm(t, (8,)), r(5, 8))
case("layer_norm_bf16", lambda t, w, b: F.layer_norm(t, (32,), w, b, eps=1e-6),
     r(6, 32, dtype=torch.bfloat16), r(32, dtype=torch.bfloat16), r(32, dtype=torch.bfloat16))
case("softmax_last", lambda t: F.softmax(t, dim=-1), r(3, 4, 7))
case("softmax_dim1", lambda t: F.softmax(t, dim=1), r(3, 4, 7))
case("log_softmax_last", lambda t: F.log_softmax(t, dim=-1), r(3, 4, 7))
case("log_softmax_dim0", lambda t: F.log_softmax(t, dim=0), r(3, 4, 7))
case("softmax_bf16", lambda t: F.softmax(t, dim=-1), r(4, 65, dtype=torch.bfloat16))
labels = torch.tensor([3, 0, 9, 9, 1, 5])
case("cross_entropy", lambda t, y: F.cross_entropy(t, y), r(6, 10), labels)
case("cross_entropy_smooth", lambda t, y: F.cross_entropy(t, y, label_smoothing=0.1), r(6, 10), labels)
soft = torch.softmax(r(6, 10), dim=1)
case("cross_entropy_soft", lambda t, y: F.cross_entropy(t, y), r(6, 10), soft, grads=True)
case("cross_entropy_soft_smooth", lambda t, y: F.cross_entropy(t, y, label_smoothing=0.1), r(6, 10), soft)

# Indexing, joining, views.
idx = torch.tensor([2, 0, 2, 3])
case("index_select", lambda t, i: torch.index_select(t, 1, i), r(3, 4, 2), idx)
gidx = torch.randint(0, 4, (3, 5, 2))
case("gather", lambda t, i: torch.gather(t, 1, i), r(3, 4, 2), gidx)
case("cat", lambda p, q, s: torch.cat([p, q, s], dim=1), r(2, 3, 4), r(2, 1, 4), r(2, 2, 4))
case("split_chunk", lambda t: torch.cat([c * (k + 1) for k, c in enumerate(torch.split(t, 2, dim=1))]
                                        + [c.sum(dim=1, keepdim=True) for c in torch.chunk(t, 3, dim=1)], dim=1),
     r(2, 5, 3))
case("views", lambda t, w: (t.permute(2, 0, 1).reshape(4, 6)[1:3, ::2].unsqueeze(0).expand(3, 2, 3) * w).sum(dim=0),
     r(2, 3, 4), r(2, 3))
case("to_bf16", lambda t: t.to(torch.bfloat16), r(64) * 3.7)



# Fused attention: timm's Attention core on the packed qkv projection (B, N, 3 * C), 2 heads of 12;
# 37 tokens leave tails in every tile dimension of scion's kernels.
def attention(qkv, heads):
    b, n, c3 = qkv.shape
    q, k, v = qkv.reshape(b, n, 3, heads, c3 // (3 * heads)).permute(2, 0, 3, 1, 4).unbind(0)
    return F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c3 // 3)


case("attention", lambda t: attention(t, 2), r(2, 37, 72))
case("attention_bf16", lambda t: attention(t, 2), r(2, 37, 72, dtype=torch.bfloat16))

# addcmul(x, t, s) = x + t * s: a residual stream plus a layer-scaled branch (ConvNeXt's
# x + gamma * h): s per channel, innermost (scion's one-pass kernel), a bf16 branch on an f32
# stream, all bf16, and s on an outer dimension (scion's add and mul).
case("addcmul", torch.addcmul, r(2, 5, 3, 8), r(2, 5, 3, 8), r(8))
case("addcmul_bf16_branch", torch.addcmul, r(2, 5, 3, 8), r(2, 5, 3, 8, dtype=torch.bfloat16), r(8))
case("addcmul_bf16", torch.addcmul, r(2, 5, 3, 8, dtype=torch.bfloat16), r(2, 5, 3, 8, dtype=torch.bfloat16),
     r(8, dtype=torch.bfloat16))
case("addcmul_outer", torch.addcmul, r(2, 5, 3, 4), r(2, 5, 3, 4), r(5, 1, 1))

# cat of mixed dtypes promotes (timm's f32 class token before bf16 patch tokens under autocast).
case("cat_mixed", lambda p, q: torch.cat([p, q], dim=1), r(2, 1, 4), r(2, 3, 4, dtype=torch.bfloat16))

save_file(tensors, OUT)
print(f"wrote {len(tensors)} tensors to {OUT} ({os.path.getsize(OUT)} bytes)")
