"""Experiment specs for experiments/reproduce.py: reading and checking, nothing written.

A spec is checked whole before the harness writes or runs anything: the file is a regular file of
bounded size (a FIFO, folder or device is refused, never read), its YAML is finite (a recursive
alias or an alias bomb is an error, not a hang), every key has the type the README documents, and
every name that becomes a folder (spec, arm, prerequisite, data root) is an identifier, so the
folders a spec asks for always lie inside the harness's --out and --prereq-dir. Every problem is a
SpecError naming the file and the key; reproduce.py reports it with exit status 2.

Only the standard library and PyYAML; tests/experiments/fuzz_spec.py fuzzes load_spec and
planned_folders.
"""
import os
import re
import stat

import yaml

SPEC_KEYS = {"name", "description", "tier", "data", "prerequisites", "base", "set", "quick",
             "seeds", "quick_seeds", "baseline", "arms", "epochs_at", "claims"}
ARM_KEYS = {"set", "seeds", "label", "needs"}
PREREQ_FLAGS = {"init": {"model", "set", "init", "seed"},
                "select": {"teacher", "model", "set", "layers", "elements", "seed", "head_norm", "qkv",
                           "components"},
                "grow": {"from", "from_model", "model", "set", "noise", "seed"}}
PREREQ_REQUIRED = {"init": {"model"}, "select": {"teacher", "model"},
                   "grow": {"from", "from_model", "model"}}
PREREQ_KINDS = ("train",) + tuple(PREREQ_FLAGS)
TRAIN_PREREQ_KEYS = {"train", "set", "quick", "seed", "needs"}
TIERS = ("cpu", "paper")
# Config keys the harness sets itself for every run.
HARNESS_KEYS = {"seed", "output_dir"}

NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,99}")
REF = re.compile(r"\$\{([A-Za-z0-9_.\-]+)\}")
CONFIG_KEY = re.compile(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*")
MAX_SPEC_BYTES = 1 << 20
MAX_NODES = 100_000  # YAML values after alias expansion
MAX_DEPTH = 50


class SpecError(Exception):
    """A problem in a spec (or a config it builds): reported before anything runs, exit 2."""


# ---------------------------------------------------------------------------------------------
# Bounded YAML


def file_kind(mode):
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def read_regular_file(path, what, limit=MAX_SPEC_BYTES):
    """The bytes of a regular file of at most `limit` bytes; anything else is a SpecError naming
    `path` and what was expected. A FIFO is never opened (no hang)."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise SpecError(f"{path}: cannot read ({e.strerror}); expected {what}")
    if not stat.S_ISREG(st.st_mode):
        raise SpecError(f"{path}: is {file_kind(st.st_mode)}; expected {what}")
    if st.st_size > limit:
        raise SpecError(f"{path}: {st.st_size} bytes; {what} is at most {limit} bytes")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):  # replaced since the stat
                raise SpecError(f"{path}: not a regular file; expected {what}")
            return f.read(limit + 1)[:limit]
    except OSError as e:
        raise SpecError(f"{path}: cannot read ({e.strerror})")


def check_finite(value, where):
    """Walks a loaded YAML value counting nodes as if aliases were expanded; a value that contains
    itself (a recursive alias), nests deeper than MAX_DEPTH or expands to more than MAX_NODES
    values (an alias bomb) is a SpecError. Stops at the first excess, so it is fast."""
    count = 0
    on_path = set()

    def walk(v, depth):
        nonlocal count
        count += 1
        if count > MAX_NODES:
            raise SpecError(f"{where}: expands to more than {MAX_NODES} values (YAML aliases "
                            "repeated many times over?)")
        if depth > MAX_DEPTH:
            raise SpecError(f"{where}: nested deeper than {MAX_DEPTH} levels")
        if isinstance(v, (list, dict)):
            if id(v) in on_path:
                raise SpecError(f"{where}: a recursive YAML alias (a value that contains itself)")
            on_path.add(id(v))
            for child in (v.values() if isinstance(v, dict) else v):
                walk(child, depth + 1)
            on_path.discard(id(v))

    walk(value, 0)


def load_yaml_file(path, what):
    """A regular file's YAML (safe_load), bounded and finite; every failure a SpecError."""
    return parse_yaml(read_regular_file(path, what), path, what)


def parse_yaml(raw, path, what):
    """YAML bytes read from `path` (safe_load), finite; every failure a SpecError."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SpecError(f"{path}: not UTF-8 text; expected {what}")
    if "\0" in text:
        raise SpecError(f"{path}: binary data (a NUL byte); expected {what}")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise SpecError(f"{path}: invalid YAML: {e}")
    except (RecursionError, MemoryError):
        raise SpecError(f"{path}: YAML nested too deeply")
    except (TypeError, ValueError) as e:  # e.g. a mapping used as a key
        raise SpecError(f"{path}: invalid YAML: {e}")
    check_finite(value, path)
    return value


# ---------------------------------------------------------------------------------------------
# Types


def describe(v):
    if v is None:
        return "nothing (null)"
    if isinstance(v, bool):
        return f"a boolean ({v})"
    if isinstance(v, (int, float)):
        return f"a number ({v})"
    if isinstance(v, str):
        return f"text ('{v[:40]}')"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, dict):
        return "a mapping"
    return f"a {type(v).__name__}"


def expect(cond, where, wanted, got):
    if not cond:
        raise SpecError(f"{where}: expected {wanted}, got {describe(got)}")


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def check_name(v, where, what):
    expect(isinstance(v, str), where, f"{what}: an identifier (letters, digits, _ - .)", v)
    if not NAME.fullmatch(v):
        raise SpecError(f"{where}: '{v}' is not a valid {what}: use letters, digits, _ - . "
                        "(not starting with . or -; no / or spaces; at most 100 characters)")


def check_keys(mapping, allowed, where):
    expect(isinstance(mapping, dict), where, "a mapping", mapping)
    for k in mapping:
        if not isinstance(k, str):
            raise SpecError(f"{where}: key {describe(k)} is not text "
                            f"(known: {', '.join(sorted(allowed))})")
    unknown = set(mapping) - set(allowed)
    if unknown:
        raise SpecError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} "
                        f"(known: {', '.join(sorted(allowed))})")


def check_seeds(v, where):
    expect(isinstance(v, list) and v, where, "a non-empty list of seeds (integers >= 0)", v)
    for s in v:
        if not is_int(s) or s < 0:
            raise SpecError(f"{where}: seed {describe(s)} is not an integer >= 0")
    if len(set(v)) != len(v):
        raise SpecError(f"{where}: a seed is listed twice")


def check_overrides(v, where, harness_sets=True):
    """A `set`/`quick` mapping: config keys (dotted identifiers) to YAML values."""
    expect(isinstance(v, dict), where, "a mapping of config keys (a.b.c) to values", v)
    for k in v:
        if not isinstance(k, str) or not CONFIG_KEY.fullmatch(k):
            raise SpecError(f"{where}: {describe(k)} is not a config key (dotted names like "
                            "train.epochs)")
        if harness_sets and k in HARNESS_KEYS:
            raise SpecError(f"{where}: {k}: set by the harness for every run (use seeds: / "
                            "--out instead)")


def check_text(v, where, what="text"):
    expect(isinstance(v, str), where, what, v)


def check_path(v, where, root):
    """A file named relative to the repository: must exist as a regular file."""
    check_text(v, where, "a file path (relative to the repository)")
    path = os.path.join(root, v)
    try:
        st = os.stat(path)
    except OSError:
        raise SpecError(f"{where}: {v}: no such file")
    if not stat.S_ISREG(st.st_mode):
        raise SpecError(f"{where}: {v}: is {file_kind(st.st_mode)}; expected a config file")


def check_needs(v, where):
    expect(isinstance(v, list), where, "a list of prerequisite names", v)
    for n in v:
        check_name(n, where, "prerequisite name")


def check_prerequisite(name, p, where, root):
    expect(isinstance(p, dict), where, f"a mapping with one of {', '.join(PREREQ_KINDS)}", p)
    kinds = [k for k in PREREQ_KINDS if k in p]
    if len(kinds) != 1:
        raise SpecError(f"{where}: expected exactly one of {', '.join(PREREQ_KINDS)}")
    kind = kinds[0]
    if kind == "train":
        check_keys(p, TRAIN_PREREQ_KEYS, where)
        check_path(p["train"], f"{where}.train", root)
        for k in ("set", "quick"):
            if p.get(k) is not None:
                check_overrides(p[k], f"{where}.{k}")
        if "seed" in p and (not is_int(p["seed"]) or p["seed"] < 0):
            raise SpecError(f"{where}.seed: expected an integer >= 0, got {describe(p['seed'])}")
    else:
        check_keys(p, {kind, "needs"}, where)
        flags = p[kind]
        check_keys(flags, PREREQ_FLAGS[kind], f"{where}.{kind}")
        missing = PREREQ_REQUIRED[kind] - set(flags)
        if missing:
            raise SpecError(f"{where}.{kind}: missing {', '.join(sorted(missing))}")
        for k, v in flags.items():
            w = f"{where}.{kind}.{k}"
            if k == "set":
                check_overrides(v, w, harness_sets=False)
                for sk in v:
                    if not sk.startswith("model."):
                        raise SpecError(f"{w}: {sk}: only model.* options apply to scion {kind}")
                    val = v[sk]
                    scalar = (str, int, float)  # bool is an int
                    expect(isinstance(val, scalar) or isinstance(val, list) and
                           all(isinstance(x, scalar) for x in val), f"{w}.{sk}",
                           "a value or a list of values", val)
            elif k == "seed":
                if not is_int(v) or v < 0:
                    raise SpecError(f"{w}: expected an integer >= 0, got {describe(v)}")
            elif k == "noise":
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0 \
                        or v == float("inf"):
                    raise SpecError(f"{w}: expected a finite number >= 0, got {describe(v)}")
            elif k == "head_norm":
                expect(isinstance(v, bool), w, "true or false", v)
            else:
                check_text(v, w)
                if "\n" in v or v.startswith("-"):
                    raise SpecError(f"{w}: '{v}' is not a value for --{k.replace('_', '-')}")
    if p.get("needs") is not None:
        check_needs(p["needs"], f"{where}.needs")
    return kind


def validate(spec, path, root):
    """Checks every key of a loaded spec (types, names, references' syntax); returns it with
    defaults filled in. Raises SpecError naming `path` and the key."""
    check_keys(spec, SPEC_KEYS, path)
    spec = dict(spec)
    if "name" in spec:
        check_name(spec["name"], f"{path}: name", "spec name")
    else:
        stem = os.path.splitext(os.path.basename(path))[0]
        if not NAME.fullmatch(stem):
            raise SpecError(f"{path}: the file name '{stem}' is not a valid spec name; add "
                            "name: (letters, digits, _ - .)")
        spec["name"] = stem
    for k in ("base", "arms", "baseline"):
        if k not in spec:
            raise SpecError(f"{path}: {k}: missing")
    if "description" in spec:
        check_text(spec["description"], f"{path}: description")
    if "tier" in spec and spec["tier"] not in TIERS:
        raise SpecError(f"{path}: tier: expected one of {', '.join(TIERS)}, got "
                        f"{describe(spec['tier'])}")
    check_path(spec["base"], f"{path}: base", root)
    if spec.get("data") is not None:
        expect(isinstance(spec["data"], dict), f"{path}: data",
               "a mapping of data names to folders", spec["data"])
        for k, v in spec["data"].items():
            check_name(k, f"{path}: data", "data name")
            check_text(v, f"{path}: data.{k}", "a folder path")
    for k in ("set", "quick"):
        if spec.get(k) is not None:
            check_overrides(spec[k], f"{path}: {k}")
    for k in ("seeds", "quick_seeds"):
        if spec.get(k) is not None:
            check_seeds(spec[k], f"{path}: {k}")
    if spec.get("epochs_at") is not None:
        e = spec["epochs_at"]
        expect(isinstance(e, list), f"{path}: epochs_at", "a list of epochs (integers >= 1)", e)
        for x in e:
            if not is_int(x) or x < 1:
                raise SpecError(f"{path}: epochs_at: {describe(x)} is not an epoch (an integer "
                                ">= 1)")
    if spec.get("claims") is not None:
        expect(isinstance(spec["claims"], (list, dict)), f"{path}: claims", "a list or mapping",
               spec["claims"])
    prereqs = spec.get("prerequisites")
    if prereqs is not None:
        expect(isinstance(prereqs, dict), f"{path}: prerequisites",
               "a mapping of prerequisite names to steps", prereqs)
        for name, p in prereqs.items():
            check_name(name, f"{path}: prerequisites", "prerequisite name")
            check_prerequisite(name, p, f"{path}: prerequisites.{name}", root)
    arms = spec["arms"]
    expect(isinstance(arms, dict) and arms, f"{path}: arms",
           "a mapping of arm names to overrides", arms)
    for arm, a in arms.items():
        check_name(arm, f"{path}: arms", "arm name")
        w = f"{path}: arms.{arm}"
        if a is None:
            continue
        check_keys(a, ARM_KEYS, w)
        if a.get("set") is not None:
            check_overrides(a["set"], f"{w}.set")
        if a.get("seeds") is not None:
            check_seeds(a["seeds"], f"{w}.seeds")
        if "label" in a:
            check_text(a["label"], f"{w}.label")
        if a.get("needs") is not None:
            check_needs(a["needs"], f"{w}.needs")
    check_name(spec["baseline"], f"{path}: baseline", "arm name")
    if spec["baseline"] not in arms:
        raise SpecError(f"{path}: baseline: '{spec['baseline']}' is not an arm "
                        f"(arms: {', '.join(arms)})")
    return spec


def load_spec(path, root):
    """Reads and validates a spec file (paths in it are relative to `root`, the repository).
    The result also holds "_path" (absolute) and "_text" (the file's text, as checked)."""
    what = "an experiment spec (YAML)"
    raw = read_regular_file(path, what)
    spec = parse_yaml(raw, path, what)
    spec = validate(spec, path, root)
    spec["_path"] = os.path.abspath(path)
    spec["_text"] = raw.decode("utf-8")
    return spec


# ---------------------------------------------------------------------------------------------
# Where a spec's steps write


def planned_folders(spec, out, prereq_dir, quick=False):
    """{step key: folder} of every step the spec runs; each lies inside `out`/runs or
    `prereq_dir` (names are identifiers; seeds integers). Raises SpecError otherwise."""
    folders = {}
    for name in spec.get("prerequisites") or {}:
        folders[name] = os.path.join(prereq_dir, name)
    seeds = spec.get("seeds") or [0]
    for arm, a in spec["arms"].items():
        arm_seeds = (a or {}).get("seeds") or seeds
        if quick:
            arm_seeds = (spec.get("quick_seeds") or arm_seeds)[:2]
        for seed in arm_seeds:
            folders[f"{arm}/seed{seed}"] = os.path.join(out, "runs", arm, f"seed{seed}")
    for key, folder in folders.items():
        base = prereq_dir if "/" not in key else os.path.join(out, "runs")
        inside = os.path.relpath(os.path.abspath(folder), os.path.abspath(base))
        if inside.startswith("..") or os.path.isabs(inside) or inside == ".":
            raise SpecError(f"{spec.get('_path', 'spec')}: {key}: its folder {folder} would lie "
                            f"outside {base}")
    return folders
