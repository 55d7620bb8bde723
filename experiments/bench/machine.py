"""What machine a benchmark ran on, for the tables' headers."""
import platform


def cpu_model():
    """The CPU's model name from /proc/cpuinfo with its family and model, since VMs often name only
    "AMD EPYC" or "Intel Xeon" (e.g. "AMD EPYC (family 25 model 1)"; `scion info` names the core
    too: Zen 3), else what platform knows."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("model name", "cpu family", "model") and key not in fields:
                    fields[key] = value.strip()
                if not line.strip() and fields:
                    break  # the first processor's block
    except OSError:
        pass
    name = fields.get("model name") or platform.processor() or "unknown CPU"
    if "cpu family" in fields and "model" in fields:
        name += f" (family {fields['cpu family']} model {fields['model']})"
    return name
