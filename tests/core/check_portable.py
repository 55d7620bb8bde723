#!/usr/bin/env python3
"""The portable build runs on any x86-64: no function outside the per-ISA kernel builds
(scion::cpu::isa_avx2 / isa_avx512, core/cpu/isa_begin.h) may contain an AVX, AVX2 or AVX-512
instruction (a VEX/EVEX mnemonic, v..., or a ymm/zmm/mask register). A header's inline function
compiled inside a kernel region, or a stray -m flag, would put one where an AVX2-only or
pre-AVX CPU could run it; this finds them in the linked binaries with objdump.

    check_portable.py BINARY...      exit 0: clean, 1: violations listed, 2: objdump failed
Standard library only (ctest runs it; objdump comes with binutils, which g++ needs).
"""
import re
import subprocess
import sys

ALLOWED = ("scion::cpu::isa_avx2::", "scion::cpu::isa_avx512::")
FUNCTION = re.compile(r"^[0-9a-f]+ <(.*)>:$")
WIDE_REGISTER = re.compile(r"%(ymm|zmm)\d+|%k[0-7]\b")


def violations(binary):
    try:
        text = subprocess.run(["objdump", "-d", "--no-show-raw-insn", "-C", binary], check=True,
                              capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"check_portable: objdump -d {binary} failed: {e}", file=sys.stderr)
        sys.exit(2)
    found, function, scanned = {}, None, 0
    for line in text.splitlines():
        m = FUNCTION.match(line)
        if m:
            function = m.group(1)
            scanned += 1
            continue
        if function is None or any(a in function for a in ALLOWED):
            continue
        parts = line.split("\t")
        if len(parts) < 2:
            continue
        insn = parts[1].strip()
        if insn.startswith("v") or WIDE_REGISTER.search(insn):
            found.setdefault(function, insn)
    return found, scanned


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    bad = 0
    for binary in sys.argv[1:]:
        found, scanned = violations(binary)
        if scanned < 100:
            print(f"{binary}: only {scanned} functions disassembled; not a scion binary?")
            sys.exit(2)
        for function, insn in sorted(found.items()):
            print(f"{binary}: {function[:160]}: {insn}")
        bad += len(found)
        print(f"{binary}: {scanned} functions, {len(found)} with wide instructions outside "
              "the per-ISA kernels")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
