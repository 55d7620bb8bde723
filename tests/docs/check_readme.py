#!/usr/bin/env python3
"""The README's cross-references hold: it opens with the two set-up commands (`make demo`, `make
test`); every section it points to by name (see "CUDA", "Recipes" below, ("Tests"), ...) is one of
its headings or bold lead-ins, above or below the reference as the text says; and every repository
path it quotes in backticks (`core/cpu/depthwise.cpp`, `configs/{a,b}_x.yaml`, ...) exists.
Commit 6c8fb5a once deleted five of its sections by accident, leaving "see Quickstart" pointing at
nothing for two days; this catches that and a renamed or deleted file the text still names.

    check_readme.py README.md      exit 0: consistent, 1: problems listed
Standard library only (ctest runs it).
"""
import glob
import itertools
import os
import re
import sys

# Top-level folders whose paths the README quotes (DESIGN.md's layout), and the shared data.
PATH = re.compile(r"`((?:core|nn|data|init|train|configs|experiments|tests|\.\./shared)/[^`\s]*)`")
# A section named in quotes, and the direction the text gives, if any.
REFERENCE = re.compile(
    r"""(?: \b(?:see|in|under|and) \s+ "(?P<a>[^"]{2,80})"       # see "CUDA", in "Tests"
          | "(?P<b>[^"]{2,80})" (?=\s+(?:above|below|at\ the\ end)) # "Recipes" below
          | \( "(?P<c>[A-Z][^"]{1,60})" \)                           # ("CPUs")
        )
        (?: \s+ (?P<dir>above|below|at\ the\ end) )?""", re.X)
HEADING = re.compile(r"^#+ (.*)$", re.M)
LEAD_IN = re.compile(r"\*\*([^*]+?)\*\*")
FENCE = re.compile(r"^```.*?^```", re.M | re.S)


def words(text):
    return " ".join(text.split())


def expand(path):
    """The paths a quoted one stands for: {a,b} alternatives expanded."""
    parts = re.split(r"\{([^{}]*)\}", path)
    fixed, choices = parts[0::2], [p.split(",") for p in parts[1::2]]
    for pick in itertools.product(*choices):
        yield "".join(f + c for f, c in itertools.zip_longest(fixed, pick, fillvalue=""))


def problems(readme):
    root = os.path.dirname(os.path.abspath(readme))
    text = open(readme, encoding="utf-8").read()
    found = []

    head = "\n".join(text.splitlines()[:8])
    for command in ("make demo", "make test"):
        if command not in head:
            found.append(f"the README does not open with `{command}`")

    # Targets: headings and bold lead-ins, with where they stand. Code blocks hold no references.
    prose = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    targets = [(words(m.group(1)), m.start()) for m in HEADING.finditer(prose)]
    targets += [(words(m.group(1)).rstrip("."), m.start()) for m in LEAD_IN.finditer(prose)]
    for m in REFERENCE.finditer(prose):
        name = words(m.group("a") or m.group("b") or m.group("c"))
        where = [at for title, at in targets if title.startswith(name)]
        line = prose.count("\n", 0, m.start()) + 1
        if not where:
            found.append(f'line {line}: "{name}" names no heading or bold lead-in')
        elif m.group("dir") == "above" and min(where) > m.start():
            found.append(f'line {line}: "{name}" is said to be above but only comes below')
        elif m.group("dir") in ("below", "at the end") and max(where) < m.start():
            found.append(f'line {line}: "{name}" is said to be below but only comes above')

    for m in PATH.finditer(text):
        quoted = m.group(1).rstrip(".,:;")
        if "<" in quoted or "..." in quoted:
            continue  # a placeholder (`results/cpu/<spec>/`), not a path
        line = text.count("\n", 0, m.start()) + 1
        for path in expand(quoted):
            full = os.path.normpath(os.path.join(root, path))
            if not (glob.glob(full) if "*" in path else os.path.exists(full)):
                found.append(f"line {line}: `{path}` does not exist")
    return found


def main():
    if len(sys.argv) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    found = problems(sys.argv[1])
    for p in found:
        print(f"{sys.argv[1]}: {p}")
    if not found:
        print(f"{sys.argv[1]}: references and paths resolve")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
