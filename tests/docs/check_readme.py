#!/usr/bin/env python3
"""The README agrees with itself and with the repository:
- it opens with the two set-up commands, `make demo` and `make test`;
- every section it points to by name (see "CUDA", "Recipes" below, ("Tests"), ...) is one of its
  headings or bold lead-ins, above or below the reference as the text says;
- its contents list links every section and subsection (## and ###) in order, and every link to a
  section (`[Tests](#tests)`) is the anchor GitHub gives one of its headings;
- every repository path it quotes in backticks (`core/cpu/depthwise.cpp`, `configs/{a,b}_x.yaml`)
  exists;
- every row of its CPU-suite result tables (those with a "final top-1" column, under the spec the
  text last names, `experiments/specs/cpu/<spec>.yaml`) has the seed count, final and best top-1
  of an arm of that spec's committed `experiments/results/cpu/<spec>/results.md`.
Commit 6c8fb5a once deleted five of its sections by accident, leaving "see Quickstart" pointing at
nothing for two days; a rerun whose results land without the README's table is the other drift.

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
TABLE = re.compile(r"^\|.*\|\n\|[-| ]+\|\n(?:\|.*\|\n)+", re.M)
SPEC = re.compile(r"experiments/specs/cpu/(\w+)\.yaml")
ANCHOR_LINK = re.compile(r"\]\(#([^)\s]*)\)")
CONTENTS = "Contents"


def words(text):
    return " ".join(text.split())


def expand(path):
    """The paths a quoted one stands for: {a,b} alternatives expanded."""
    parts = re.split(r"\{([^{}]*)\}", path)
    fixed, choices = parts[0::2], [p.split(",") for p in parts[1::2]]
    for pick in itertools.product(*choices):
        yield "".join(f + c for f, c in itertools.zip_longest(fixed, pick, fillvalue=""))


def table_rows(table):
    """A markdown table's header cells and rows of cells (bold marks dropped)."""
    def cells(line):
        return [c.strip().replace("**", "") for c in line.strip().strip("|").split("|")]

    lines = table.strip("\n").split("\n")
    return cells(lines[0]), [cells(line) for line in lines[2:]]


def result_rows(path):
    """(seed count, final, best) of each arm in a results.md written by experiments/reproduce.py."""
    header, rows = table_rows(TABLE.search(open(path, encoding="utf-8").read()).group(0))
    seeds, final, best = (header.index(k) for k in ("seeds", "final top-1", "best top-1 (epoch)"))
    return {(str(len(r[seeds].split(","))), r[final], r[best]) for r in rows}


def anchor(title, taken):
    """The id GitHub gives a heading: lower case, punctuation but - and _ dropped, spaces to -,
    and -1, -2, ... after the second and later headings of one name."""
    base = re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")
    slug, n = base, 0
    while slug in taken:
        n += 1
        slug = f"{base}-{n}"
    taken.add(slug)
    return slug


def contents_problems(prose):
    """Section links resolve, and the contents list names every ## and ### heading in order."""
    found, taken = [], set()
    headings = [(len(m.group(1)), anchor(m.group(2), taken), m.start())
                for m in re.finditer(r"^(#+) (.*)$", prose, re.M)]
    for m in ANCHOR_LINK.finditer(prose):
        if m.group(1) not in taken:
            line = prose.count("\n", 0, m.start()) + 1
            found.append(f"line {line}: #{m.group(1)} is the anchor of no heading")
    start = next((at for level, slug, at in headings if level == 2 and slug == CONTENTS.lower()),
                 None)
    if start is None:
        return found + [f'no "## {CONTENTS}" section']
    end = next((at for level, _, at in headings if level <= 2 and at > start), len(prose))
    listed = ANCHOR_LINK.findall(prose, start, end)
    wanted = [slug for level, slug, at in headings if level in (2, 3) and at >= end]
    missing = [s for s in wanted if s not in listed]
    extra = [s for s in listed if s not in wanted]
    if missing:
        found.append(f'"{CONTENTS}" leaves out the sections {missing}')
    if extra:
        found.append(f'"{CONTENTS}" lists {extra}, no section after it')
    twice = sorted({s for s in listed if listed.count(s) > 1})
    if twice:
        found.append(f'"{CONTENTS}" lists {twice} more than once')
    if not missing and not extra and not twice and listed != wanted:
        first = next(a for a, b in zip(listed, wanted) if a != b)
        found.append(f'"{CONTENTS}" lists #{first} out of the sections\' order')
    return found


def result_problems(root, text):
    """README result tables against the committed results they quote."""
    found = []
    for t in TABLE.finditer(text):
        header, rows = table_rows(t.group(0))
        if "final top-1" not in header:
            continue
        line = text.count("\n", 0, t.start()) + 1
        specs = SPEC.findall(text, 0, t.start())
        spec = specs[-1] if specs else "?"
        path = os.path.join(root, "experiments/results/cpu", spec, "results.md")
        if not os.path.exists(path):
            found.append(f"line {line}: a results table without committed results ({path})")
            continue
        try:
            committed = result_rows(path)
        except (AttributeError, ValueError):  # no table, or not the columns reproduce.py writes
            found.append(f"line {line}: {path} has no arm table with seeds, final and best top-1")
            continue
        seeds, final = header.index("seeds"), header.index("final top-1")
        best = next(i for i, h in enumerate(header) if h.startswith("best top-1"))
        for r in rows:
            if (r[seeds], r[final], r[best]) not in committed:
                found.append(f"line {line}: {r[0]}: {r[seeds]} seeds, final {r[final]}, best "
                             f"{r[best]} is no arm of {os.path.relpath(path, root)}")
    return found


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

    found += contents_problems(prose)

    for m in PATH.finditer(text):
        quoted = m.group(1).rstrip(".,:;")
        if "<" in quoted or "..." in quoted:
            continue  # a placeholder (`results/cpu/<spec>/`), not a path
        if quoted.startswith("../shared/") and not os.path.isdir(os.path.join(root, "../shared")):
            continue  # a checkout without the shared folder beside it (CI has one)
        line = text.count("\n", 0, m.start()) + 1
        for path in expand(quoted):
            full = os.path.normpath(os.path.join(root, path))
            if not (glob.glob(full) if "*" in path else os.path.exists(full)):
                found.append(f"line {line}: `{path}` does not exist")
    return found + result_problems(root, text)


def main():
    if len(sys.argv) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    found = problems(sys.argv[1])
    for p in found:
        print(f"{sys.argv[1]}: {p}")
    if not found:
        print(f"{sys.argv[1]}: references, contents, paths and result tables agree")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
