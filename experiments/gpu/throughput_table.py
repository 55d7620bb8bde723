"""The throughput table of verify.sh: scion (bench_models --device cuda --step, bf16) against
PyTorch eager and torch.compile per case, images/s, the ratio to PyTorch's faster form, scion's
host time per step against its step time (close means the GPU waits for the host); then
memory against PyTorch eager: the peak allocated over the timed steps (the target), what the
forward keeps for backward, the peak by the end of the forward, and the peak reserved."""
import json
import sys


def load(path):
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    except OSError:
        return []


scion, torch = load(sys.argv[1]), load(sys.argv[2])
print("| case | scion img/s | torch eager img/s | torch.compile img/s | scion / best torch |"
      " scion host / step ms | scion peak MiB | torch peak MiB (eager) |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
memory = []
for s in scion:
    case = (s["model"], s["img_size"], s["batch"])
    t = {r["mode"]: r for r in torch
         if "skipped" not in r and (r["scion_model"], r["img_size"], r["batch"]) == case}
    best = max([r["images_per_second"] for r in t.values()], default=None)
    def f(mode):
        return f"{t[mode]['images_per_second']:.0f}" if mode in t else "-"
    ratio = f"{s['images_per_second'] / best:.2f}" if best else "-"
    tpeak = f"{t['eager']['peak_memory_mib']:.0f}" if "eager" in t else "-"
    name = f"{case[0]} {case[1]} px b{case[2]}"
    print(f"| {name} | {s['images_per_second']:.0f} | {f('eager')} |"
          f" {f('compile')} | {ratio} | {s.get('host_ms', 0):.1f} / {s['step_ms']:.1f} |"
          f" {s.get('peak_memory_mib', 0):.0f} | {tpeak} |")
    def pair(key):
        return f"{s.get(key, 0):.0f} / " + (f"{t['eager'][key]:.0f}" if key in t.get("eager", {}) else "-")
    memory.append(f"| {name} | {pair('peak_memory_mib')} | {pair('graph_mib')} |"
                  f" {pair('forward_peak_mib')} | {pair('peak_reserved_mib')} |")
print()
print("| memory, MiB, scion / torch eager | peak allocated | forward keeps | peak by forward's end |"
      " peak reserved |")
print("| --- | --- | --- | --- | --- |")
print("\n".join(memory))
