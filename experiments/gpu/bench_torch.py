"""PyTorch/timm on the same GPU, the same cases as bench_models --device cuda --step: a full
training step (forward, cross-entropy, backward, AdamW) in bf16 autocast, images/s and memory
(peak allocated and reserved over the timed steps; in eager mode also what the forward keeps for
backward and the peak by its end). Eager first (channels-last for ConvNeXt, fused AdamW), then torch.compile while the time
budget lasts. One JSON line per result."""
import argparse
import json
import time

import timm
import torch

CASES = [
    ("vit_tiny_patch16_224", "vit_tiny", 224, 256, {}),
    ("vit_tiny_patch16_224", "vit_tiny", 32, 512, {"img_size": 32, "patch_size": 4}),
    ("convnext_femto", "convnext_femto", 224, 256, {}),
    ("vit_tiny_patch16_224", "vit_tiny", 224, 64, {}),  # the paper's batch per GPU
]


def bench(name, px, batch, kwargs, mode, steps=20, warmup=5):
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=1000, **kwargs).cuda()
    fmt = torch.channels_last if "convnext" in name else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    x = torch.randn(batch, 3, px, px, device="cuda").to(memory_format=fmt)
    y = torch.randint(0, 1000, (batch,), device="cuda")

    def train_step(probe=None):
        opt.zero_grad(set_to_none=True)
        before = torch.cuda.memory_allocated()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        if probe is not None:  # what the forward keeps for backward, and the peak so far
            probe["graph_mib"] = (torch.cuda.memory_allocated() - before) / 2**20
            probe["forward_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
        loss.backward()
        opt.step()

    step = torch.compile(train_step) if mode == "compile" else train_step
    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    times, probe = [], {}
    for i in range(steps):
        t0 = time.perf_counter()
        # Eager's first timed step also reads the allocator's counters (host-side, no sync);
        # a compiled step cannot be split at the end of its forward.
        step(probe) if i == 0 and mode == "eager" else step()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    times.sort()
    med = times[len(times) // 2]
    return {"model": name, "img_size": px, "batch": batch, "mode": mode,
            "step_ms": med * 1e3, "images_per_second": batch / med,
            "peak_memory_mib": torch.cuda.max_memory_allocated() / 2**20,
            "peak_reserved_mib": torch.cuda.max_memory_reserved() / 2**20, **probe}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget", type=float, default=300)
    args = ap.parse_args()
    t0 = time.time()
    torch.backends.cuda.matmul.allow_tf32 = False
    for mode in ("eager", "compile"):
        for name, short, px, batch, kw in CASES:
            left = args.budget - (time.time() - t0)
            if left < (60 if mode == "compile" else 15):
                print(json.dumps({"model": name, "img_size": px, "mode": mode, "skipped": "time"}),
                      flush=True)
                continue
            r = bench(name, px, batch, kw, mode)
            r["scion_model"] = short
            print(json.dumps(r), flush=True)
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
