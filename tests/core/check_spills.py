"""No register spills in the CUDA kernels: every kernel of core/cuda/*.cu has LOCAL:0 in
cuobjdump's resource usage (local memory is where spilled registers go; a STACK frame of a few
bytes for CUDA's double-precision math routines is a call stack, not a spill). A second check:
for the default architectures the build itself fails on a spill (-Xptxas -warn-spills with
--warning-as-error, CMakeLists.txt), wherever nvcc is. Exit 77 (ctest: skipped) when no
cuobjdump is found: it is not in Debian's CUDA packages here, only in the toolkit's full install
or Triton's wheel.

  python3 tests/core/check_spills.py OBJECT_DIR"""
import glob
import os
import re
import shutil
import subprocess
import sys


def find_cuobjdump():
    hit = shutil.which("cuobjdump") or (
        "/usr/local/cuda/bin/cuobjdump" if os.path.exists("/usr/local/cuda/bin/cuobjdump") else None)
    if hit:
        return hit
    try:
        import triton  # its wheel carries NVIDIA's binary tools
        cand = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
        return cand if os.path.exists(cand) else None
    except ImportError:
        return None


def main():
    objects = sorted(glob.glob(os.path.join(sys.argv[1], "**", "*.cu.o"), recursive=True))
    tool = find_cuobjdump()
    if not tool or not objects:
        print(f"SKIPPED: {'no cuobjdump found' if not tool else 'no .cu objects in ' + sys.argv[1]}")
        return 77
    kernels, spilling = 0, []
    for obj in objects:
        out = subprocess.run([tool, "-res-usage", obj], capture_output=True, text=True).stdout
        name = None
        for line in out.splitlines():
            m = re.match(r"\s*Function (\S+):", line)
            if m:
                name = m.group(1)
                continue
            m = re.search(r"LOCAL:(\d+)", line)
            if m and name:
                kernels += 1
                if int(m.group(1)) > 0:
                    spilling.append(f"{os.path.basename(obj)}: {name} LOCAL:{m.group(1)}")
                name = None
    print(f"{kernels} kernel builds in {len(objects)} objects checked with {tool}")
    for s in spilling:
        print("spills:", s)
    return 1 if spilling or kernels == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
