#!/usr/bin/env python3
"""Fuzz target for the reproduction harness's spec parser (experiments/repro_spec.py).

Each case is a spec: a real one (tests/experiments/tiny_spec.yaml, experiments/specs/*/*.yaml)
mutated structurally (values replaced by values of every type, names that are paths, keys added
and removed, aliases, recursion, deep nesting) or as text (bytes flipped, cut, spliced, alias bombs).
The properties, for every case:
  - load_spec either returns a spec or raises SpecError: never another exception, never a hang
    (each case must finish within --case-seconds);
  - a spec it accepts has every name an identifier, seeds integers >= 0, epochs_at integers >= 1;
  - planned_folders of an accepted spec lie inside --out/runs and --prereq-dir;
  - nothing is written (the working folder's listing is unchanged).
A failing case is saved under --crashes and the run exits 1.

    python3 tests/experiments/fuzz_spec.py --seconds 600            # random generator
    python3 tests/experiments/fuzz_spec.py --seconds 600 --atheris  # coverage-guided (pip atheris)

ctest runs it for a few seconds; `make fuzz` runs it for FUZZ_SECONDS beside the C++ targets.
"""
import argparse
import copy
import os
import random
import shutil
import signal
import sys
import tempfile
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "experiments"))
import yaml  # noqa: E402
import repro_spec  # noqa: E402


SEEDS = [os.path.join(ROOT, "tests", "experiments", "tiny_spec.yaml")] + sorted(
    os.path.join(d, f) for d in (os.path.join(ROOT, "experiments", "specs", "cpu"),
                                 os.path.join(ROOT, "experiments", "specs", "paper"))
    if os.path.isdir(d) for f in os.listdir(d) if f.endswith(".yaml"))
HOSTILE_TEXT = ["../../x", "a/b", "", ".", "..", "-rf", "${teacher}", "${nope}", "${data.cifar10}",
                "x" * 300, "名前", "a\nb", "\0", "seed0", "random", "teacher", "/etc/passwd",
                "init.type", "train.epochs", "output_dir", "seed", "1e309", "nan", "true"]
KEYS = sorted(repro_spec.SPEC_KEYS | repro_spec.ARM_KEYS | {"train", "init", "select", "grow",
                                                           "needs", "teacher", "model", "noise",
                                                           "layers", "head_norm", "from"})


class Timeout(Exception):
    pass


class RandomSource:
    def __init__(self, rng):
        self.rng = rng

    def int(self, lo, hi):
        return self.rng.randint(lo, hi)

    def float(self):
        return self.rng.choice([0.0, -1.0, 1e308, float("inf"), float("nan"), 0.5,
                                self.rng.uniform(-1e6, 1e6)])

    def bytes(self, n):
        return bytes(self.rng.getrandbits(8) for _ in range(n))


class AtherisSource:
    def __init__(self, fdp):
        self.fdp = fdp

    def int(self, lo, hi):
        return self.fdp.ConsumeIntInRange(lo, hi)

    def float(self):
        return self.fdp.ConsumeFloat()

    def bytes(self, n):
        return self.fdp.ConsumeBytes(n)


def pick(src, seq):
    return seq[src.int(0, len(seq) - 1)]


def random_value(src, depth=0):
    kind = src.int(0, 9 if depth < 4 else 5)
    if kind == 0:
        return None
    if kind == 1:
        return bool(src.int(0, 1))
    if kind == 2:
        return pick(src, [0, 1, -1, 2, 5, 10 ** 30, -(10 ** 30), src.int(-1000, 1000)])
    if kind == 3:
        return src.float()
    if kind in (4, 5):
        return pick(src, HOSTILE_TEXT)
    if kind in (6, 7):
        return [random_value(src, depth + 1) for _ in range(src.int(0, 4))]
    if kind == 8:
        return {random_key(src): random_value(src, depth + 1) for _ in range(src.int(0, 3))}
    return {pick(src, KEYS): random_value(src, depth + 1)}


def random_key(src):
    k = src.int(0, 5)
    if k == 0:
        return pick(src, [1, 0, None, True, 2.5])
    return pick(src, KEYS + HOSTILE_TEXT)


def nodes(tree, seen=None):
    """Every (container, key) pair of a loaded spec (each container once: specs may be
    recursive)."""
    seen = set() if seen is None else seen
    if id(tree) in seen or not isinstance(tree, (dict, list)):
        return []
    seen.add(id(tree))
    out = []
    for k in (list(tree) if isinstance(tree, dict) else range(len(tree))):
        out.append((tree, k))
        out += nodes(tree[k], seen)
    return out


def mutate_structure(spec, src):
    spec = copy.deepcopy(spec)
    for _ in range(src.int(1, 4)):
        places = nodes(spec)
        if not places:
            return random_value(src)
        container, key = pick(src, places)
        op = src.int(0, 6)
        if op <= 2:
            container[key] = random_value(src)
        elif op == 3 and isinstance(container, dict):
            value = container.pop(key)
            container[random_key(src)] = value  # renamed (maybe to a path, a number)
        elif op == 4 and isinstance(container, dict):
            del container[key]
        elif op == 5:
            container[key] = spec  # a recursive reference, as a YAML alias loads
        else:
            value = container[key]
            for _ in range(src.int(1, 60)):
                value = [value]  # deep nesting
            container[key] = value
    return spec


def mutate_text(text, src):
    data = bytearray(text.encode())
    op = src.int(0, 5)
    if op == 0 and data:  # flip bytes
        for _ in range(src.int(1, 8)):
            data[src.int(0, len(data) - 1)] = src.int(0, 255)
    elif op == 1:  # cut
        data = data[:src.int(0, len(data))]
    elif op == 2:  # splice random bytes
        at = src.int(0, len(data))
        data[at:at] = src.bytes(src.int(1, 32))
    elif op == 3:  # an alias bomb in front
        width = src.int(2, 12)
        levels = src.int(1, 12)
        bomb = "a0: &a0 [" + ", ".join(["x"] * width) + "]\n"
        for i in range(1, levels):
            bomb += f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]\n"
        data = bytearray(bomb.encode()) + data
    elif op == 4:  # a recursive anchor
        data = bytearray(b"loop: &l [*l]\n") + data
    else:  # a deeply nested flow sequence
        depth = src.int(10, 3000)
        data = bytearray(("x: " + "[" * depth + "]" * depth + "\n").encode()) + data
    return bytes(data)


def check_accepted(spec, out, pre):
    """The properties of a spec load_spec accepted."""
    assert repro_spec.NAME.fullmatch(spec["name"]), spec["name"]
    for arm, a in spec["arms"].items():
        assert isinstance(arm, str) and repro_spec.NAME.fullmatch(arm), arm
        for s in ((a or {}).get("seeds") or []):
            assert isinstance(s, int) and not isinstance(s, bool) and s >= 0, s
    for name in spec.get("prerequisites") or {}:
        assert isinstance(name, str) and repro_spec.NAME.fullmatch(name), name
    for e in spec.get("epochs_at") or []:
        assert isinstance(e, int) and not isinstance(e, bool) and e >= 1, e
    for s in spec.get("seeds") or []:
        assert isinstance(s, int) and not isinstance(s, bool) and s >= 0, s
    for quick in (False, True):
        folders = repro_spec.planned_folders(spec, out, pre, quick)
        for key, folder in folders.items():
            base = pre if "/" not in key else os.path.join(out, "runs")
            rel = os.path.relpath(os.path.abspath(folder), os.path.abspath(base))
            assert not rel.startswith("..") and rel != ".", (key, folder)


class Fuzzer:
    def __init__(self, work, crashes, case_seconds):
        self.work, self.crashes, self.case_seconds = work, crashes, case_seconds
        self.seeds = []
        for path in SEEDS:
            with open(path) as f:
                text = f.read()
            self.seeds.append((text, yaml.safe_load(text)))
        self.cases = self.accepted = self.rejected = 0
        self.path = os.path.join(work, "case.yaml")
        self.out, self.pre = os.path.join(work, "out"), os.path.join(work, "pre")

    def make_case(self, src):
        text, spec = pick(src, self.seeds)
        mode = src.int(0, 3)
        if mode == 0:
            return mutate_text(text, src)
        mutated = mutate_structure(spec, src)
        try:
            dumped = yaml.safe_dump(mutated, allow_unicode=True)
        except (RecursionError, yaml.YAMLError):
            dumped = text  # not representable: fuzz the seed's text instead
        data = dumped.encode()
        return mutate_text(dumped, src) if mode == 3 else data

    def one(self, data):
        with open(self.path, "wb") as f:
            f.write(data)
        before = sorted(os.listdir(self.work))
        signal.alarm(self.case_seconds)
        try:
            spec = repro_spec.load_spec(self.path, ROOT)
            check_accepted(spec, self.out, self.pre)
            self.accepted += 1
        except repro_spec.SpecError:
            self.rejected += 1
        except Timeout:
            self.fail(data, f"no answer within {self.case_seconds} s (a hang)")
        except Exception:  # noqa: BLE001 -- any other exception is the finding
            self.fail(data, traceback.format_exc())
        finally:
            signal.alarm(0)
        after = sorted(os.listdir(self.work))
        if after != before:
            self.fail(data, f"wrote files: {sorted(set(after) - set(before))}")
        self.cases += 1

    def fail(self, data, why):
        os.makedirs(self.crashes, exist_ok=True)
        path = os.path.join(self.crashes, f"spec-{self.cases}.yaml")
        with open(path, "wb") as f:
            f.write(data)
        print(f"FINDING (input saved as {path}):\n{why}", flush=True)
        sys.exit(1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=600)
    ap.add_argument("--seed", type=int, default=None, help="random generator seed (default: time)")
    ap.add_argument("--atheris", action="store_true", help="coverage-guided, with pip's atheris")
    ap.add_argument("--crashes", default=os.path.join(tempfile.gettempdir(), "scion_fuzz_spec"))
    ap.add_argument("--case-seconds", type=int, default=10)
    args = ap.parse_args()

    def on_alarm(signum, frame):
        raise Timeout()

    signal.signal(signal.SIGALRM, on_alarm)
    work = tempfile.mkdtemp(prefix="scion_fuzz_spec_")
    fuzzer = Fuzzer(work, args.crashes, args.case_seconds)
    start = time.time()
    if args.atheris:
        import atheris
        with atheris.instrument_imports():
            import importlib
            importlib.reload(repro_spec)

        def test_one(data):
            fdp = atheris.FuzzedDataProvider(data)
            fuzzer.one(fuzzer.make_case(AtherisSource(fdp)))
            if time.time() - start > args.seconds:
                print(f"{fuzzer.cases} cases in {time.time() - start:.0f} s: {fuzzer.accepted} "
                      f"accepted, {fuzzer.rejected} rejected, no finding", flush=True)
                shutil.rmtree(work, ignore_errors=True)
                os._exit(0)

        atheris.Setup([sys.argv[0], "-max_len=4096"], test_one)
        atheris.Fuzz()
        return 0
    seed = args.seed if args.seed is not None else int(time.time())
    rng = random.Random(seed)
    src = RandomSource(rng)
    while time.time() - start < args.seconds:
        fuzzer.one(fuzzer.make_case(src))
    print(f"seed {seed}: {fuzzer.cases} cases in {time.time() - start:.0f} s: {fuzzer.accepted} "
          f"accepted, {fuzzer.rejected} rejected, no finding", flush=True)
    shutil.rmtree(work, ignore_errors=True)  # its scratch files; findings go to --crashes
    return 0


if __name__ == "__main__":
    sys.exit(main())
