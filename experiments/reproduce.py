#!/usr/bin/env python3
"""Reproduction harness: runs an experiment spec (experiments/specs/README.md) and renders its tables
and plots.

    python3 experiments/reproduce.py SPEC.yaml [--quick] [--out DIR] [--data-root NAME=PATH ...]
    python3 experiments/reproduce.py SPEC.yaml --yes          # paper-scale specs: after the estimate
    python3 experiments/reproduce.py --report DIR             # re-render DIR from its finished runs

A spec names prerequisite runs (teachers trained by scion, `scion init/select/grow` steps), a base
config, arms as config overrides, seeds and the baseline arm. Every (arm, seed) is one `train` run in
DIR/runs/<arm>/seed<k>/; prerequisites live in runs/repro/_prereq/<name>/ so specs share them.
Runs go one at a time, in dependency order, with all cores. A run whose summary.json exists for the
identical resolved config is skipped; an interrupted one resumes (train resumes from
last.safetensors); one whose config changed is moved aside to <folder>.stale-<time> and rerun.
Each run's run.json records its command, wall time, the checkout's git revision and the revision
the programs were built from (`train --version`; they differ with --bin pointing elsewhere).
Everything a spec names (config keys, prerequisites, cycles) is checked before anything runs.

What tricky parts there are: configs are validated and resolved by `train --print-config` itself
(the same parser as training, so there is no second schema here); a run's identity is that
resolved text. Only the standard library, PyYAML and matplotlib (Debian's python3-yaml and
python3-matplotlib, which `make deps` installs); when the `python3` on PATH lacks them, the script
re-runs itself under /usr/bin/python3.
"""
import argparse
import datetime
import fcntl
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time


def _ensure_modules():
    try:
        import yaml  # noqa: F401
        import matplotlib  # noqa: F401
    except ImportError as e:
        system = "/usr/bin/python3"
        if os.path.exists(system) and os.path.realpath(sys.executable) != os.path.realpath(system) \
                and not os.environ.get("SCION_REPRODUCE_REEXEC"):
            os.environ["SCION_REPRODUCE_REEXEC"] = "1"
            os.execv(system, [system] + sys.argv)
        sys.exit(f"reproduce.py: error: {e.name} is missing; install Debian's python3-yaml and "
                 "python3-matplotlib (make deps does)")


if __name__ == "__main__":
    _ensure_modules()
import yaml  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from repro_spec import (NAME, PREREQ_KINDS, REF, SpecError, check_name,  # noqa: E402
                        load_spec, load_yaml_file, planned_folders)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DATA = {"cifar10": "../shared/data/cifar10-jpg",
                "tiny_imagenet": "../shared/data/tiny-imagenet-200-subset",
                "cifar100": "data/cifar-100-binary", "imagenet": "data/imagenet",
                "fashion_mnist": "/usr/share/datasets/fashion-mnist",
                # data/download.sh NAME's default folders (cifar10's binary release under data/)
                "cifar10_binary": "data", "stl10": "data/stl10", "svhn": "data/svhn",
                "flowers102": "data/flowers102", "pets": "data/pets", "food101": "data/food101",
                "dtd": "data/dtd", "eurosat": "data/eurosat"}
BIN = os.path.join(ROOT, "build", "bin")  # the scion programs (--bin)


# ---------------------------------------------------------------------------------------------
# Files and folders


def write_atomic(path, text):
    """Writes `text` to a temporary file beside `path` and renames it over `path`: a crash
    leaves the old file or the new one, never half of one."""
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class FolderLock:
    """flock() on DIR/.lock for the life of the process (the kernel releases it however the
    process ends), with this pid in the file, as scion's train does for its run folders: a second
    harness on the same folder stops with exit 2 naming the holder."""

    def __init__(self, folder, what):
        self.path = os.path.join(folder, ".lock")
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = ""
            for _ in range(100):  # the holder writes its pid right after locking
                holder = os.pread(self.fd, 256, 0).decode(errors="replace").strip()
                if holder:
                    break
                time.sleep(0.01)
            os.close(self.fd)
            pid, _, prog = holder.partition(" ")
            who = f"{prog} (pid {pid})" if prog else (f"process {pid}" if pid else
                                                      "another process")
            raise SpecError(f"{folder}: the {what} is in use by {who}; two processes writing one "
                            "folder would overwrite each other's files. Wait for it to end, or "
                            "give another folder.")
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()} reproduce.py\n".encode(), 0)

    def release(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def unique_aside(folder, tag):
    """A new name <folder>.<tag>-<time>[-N] that no file or folder has yet."""
    stamp = f"{folder}.{tag}-{datetime.datetime.now():%Y%m%d-%H%M%S}"
    dest, n = stamp, 1
    while os.path.lexists(dest):
        n += 1
        dest = f"{stamp}-{n}"
    return dest


# ---------------------------------------------------------------------------------------------
# Spec expansion


def set_path(tree, dotted, value):
    keys = dotted.split(".")
    node = tree
    for k in keys[:-1]:
        if not isinstance(node.get(k), dict):
            node[k] = {}
        node = node[k]
    node[keys[-1]] = value


def substitute(value, refs, where):
    """Replaces ${name} in strings (recursively in lists/dicts) by refs[name]."""
    if isinstance(value, str):
        def one(m):
            if m.group(1) not in refs:
                raise SpecError(f"{where}: ${{{m.group(1)}}} names no prerequisite or data root "
                                f"(known: {', '.join(sorted(refs))})")
            return refs[m.group(1)]
        return REF.sub(one, value)
    if isinstance(value, list):
        return [substitute(v, refs, where) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, refs, where) for k, v in value.items()}
    return value


def references(value):
    if isinstance(value, str):
        return set(REF.findall(value))
    if isinstance(value, list):
        return set().union(*[references(v) for v in value]) if value else set()
    if isinstance(value, dict):
        return set().union(*[references(v) for v in value.values()]) if value else set()
    return set()


class Job:
    """One step: a `train` run (prerequisite or arm/seed) or a `scion init/select/grow` step."""

    def __init__(self, key, kind, folder, needs):
        self.key, self.kind, self.folder, self.needs = key, kind, folder, set(needs)
        self.config_text = None  # resolved config (train jobs)
        self.input_path = self.input_text = None  # the train config the command names
        self.command = None
        self.arm = self.seed = None

    def same_config(self):
        return normalized_config(os.path.join(self.folder, "config.yaml")) == self.config_text

    @property
    def product(self):
        return os.path.join(self.folder, "best.safetensors" if self.kind == "train"
                            else "weights.safetensors")

    def done(self):
        if self.kind == "train":
            return (os.path.exists(os.path.join(self.folder, "summary.json"))
                    and self.same_config())
        meta = read_json(os.path.join(self.folder, "run.json"))
        return os.path.exists(self.product) and isinstance(meta, dict) and \
            meta.get("command") == self.command


def normalized_config(path):
    """A run's config.yaml as the current `train` resolves it (keys added since it was written take
    their defaults), or None when absent or no longer valid."""
    if not os.path.isfile(path):
        return None
    r = subprocess.run([os.path.join(BIN, "train"), "--config", path, "--print-config"],
                       capture_output=True, text=True, cwd=ROOT)
    return r.stdout if r.returncode == 0 else None


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except (OSError, UnicodeDecodeError):
        return None


def read_json(path):
    text = read(path) if os.path.isfile(path) else None
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def build_config(base_path, overrides, where):
    cfg = load_yaml_file(base_path, "a train config (YAML)")
    if cfg is None:
        cfg = {}
    if not isinstance(cfg, dict):
        raise SpecError(f"{where}: base config {base_path}: expected a mapping of config sections, "
                        f"got a {type(cfg).__name__}")
    for k, v in overrides.items():
        set_path(cfg, k, v)
    return cfg


def resolve(binary_dir, cfg, where):
    """train's resolved text of a config (its own checks: unknown keys, types, ranges), and the
    YAML the harness will give it. Checked from a temporary file: nothing is written under --out
    before the whole spec passes."""
    text = yaml.safe_dump(cfg, sort_keys=False)
    with tempfile.TemporaryDirectory(prefix="scion_repro_") as tmp:
        path = os.path.join(tmp, "input.yaml")
        with open(path, "w") as f:
            f.write(text)
        r = subprocess.run([os.path.join(binary_dir, "train"), "--config", path, "--print-config"],
                           capture_output=True, text=True, cwd=ROOT)
    if r.returncode != 0:
        raise SpecError(f"{where}: {r.stderr.strip().replace(path, 'its config')}")
    for line in r.stderr.splitlines():  # train's warnings (e.g. warmup longer than training)
        print(f"{where}: {line}", file=sys.stderr)
    return text, r.stdout


def check_scion_flags(cmd, where):
    """`scion init/select/grow ... --check`: the program's own flag and model checks, run before
    any prerequisite trains (nothing is read or written)."""
    r = subprocess.run(cmd + ["--check"], capture_output=True, text=True, cwd=ROOT)
    if r.returncode != 0:
        msg = (r.stderr or r.stdout).strip().splitlines()
        raise SpecError(f"{where}: {' '.join(msg[:3])}")


def expand(spec, args):
    """The spec as a list of Jobs in dependency order; raises SpecError on any problem. Writes
    nothing."""
    data = dict(DEFAULT_DATA)
    data.update(spec.get("data") or {})
    data.update(args.data_root)
    refs = {f"data.{k}": v for k, v in data.items()}
    prereqs = spec.get("prerequisites") or {}
    prereq_dir = args.prereq_dir
    folders = planned_folders(spec, args.out, prereq_dir, args.quick)
    jobs = {}
    for name in prereqs:
        refs[name] = os.path.join(prereq_dir, name, "best.safetensors"
                                  if "train" in prereqs[name] else "weights.safetensors")
    # Prerequisites.
    for name, p in prereqs.items():
        kind = next(k for k in PREREQ_KINDS if k in p)
        where = f"{spec['_path']}: prerequisites.{name}"
        needs = references(p) - {r for r in references(p) if r.startswith("data.")}
        needs |= set(p.get("needs") or [])
        for n in needs:
            if n not in prereqs:
                raise SpecError(f"{where}: needs '{n}', which is not a prerequisite")
        job = Job(name, kind, folders[name], needs)
        if kind == "train":
            overrides = dict(substitute(p.get("set") or {}, refs, where))
            if args.quick:
                overrides.update(substitute(p.get("quick") or {}, refs, where))
            overrides["output_dir"] = job.folder
            if "seed" in p:
                overrides["seed"] = p["seed"]
            cfg = build_config(os.path.join(ROOT, p["train"]), overrides, where)
            job.input_text, job.config_text = resolve(args.bin, cfg, where)
            job.input_path = os.path.join(args.scratch, name, "input.yaml")
            job.command = [os.path.join(args.bin, "train"), "--config", job.input_path]
        else:
            q = substitute(p[kind], refs, where)
            cmd = [os.path.join(args.bin, "scion"), kind]
            flag = {"teacher": "--teacher", "model": "--model", "layers": "--layers",
                    "elements": "--elements", "seed": "--seed", "from": "--from",
                    "from_model": "--from-model", "noise": "--noise", "init": "--init",
                    "qkv": "--qkv", "components": "--components"}
            for k, v in q.items():
                if k == "set":
                    for sk, sv in v.items():
                        cmd += ["--set", f"{sk}={json.dumps(sv) if isinstance(sv, list) else sv}"]
                elif k == "head_norm":
                    cmd += ["--head-norm"] if v else []
                else:
                    cmd += [flag[k], str(v)]
            job.command = cmd + ["--out", job.product]
            check_scion_flags(job.command, f"{where}.{kind}")
        jobs[name] = job
    # Arms.
    base = os.path.join(ROOT, spec["base"])
    for arm, a in spec["arms"].items():
        a = a or {}
        where = f"{spec['_path']}: arms.{arm}"
        needs = {r for r in references(a) | references(spec.get("set") or {})
                 if not r.startswith("data.")} | set(a.get("needs") or [])
        for n in needs:
            if n not in prereqs:
                raise SpecError(f"{where}: needs '{n}', which is not a prerequisite")
        for key, folder in folders.items():
            if not key.startswith(arm + "/seed"):
                continue
            seed = int(key[len(arm) + 5:])
            overrides = dict(substitute(spec.get("set") or {}, refs, where))
            overrides.update(substitute(a.get("set") or {}, refs, where))
            if args.quick:
                overrides.update(substitute(spec.get("quick") or {}, refs, where))
            overrides["seed"] = seed
            overrides["output_dir"] = folder
            cfg = build_config(base, overrides, where)
            job = Job(key, "train", folder, needs)
            job.arm, job.seed = arm, seed
            job.input_text, job.config_text = resolve(args.bin, cfg, where)
            job.input_path = os.path.join(args.scratch, "runs", arm, f"seed{seed}", "input.yaml")
            job.command = [os.path.join(args.bin, "train"), "--config", job.input_path]
            jobs[job.key] = job
    return order(jobs, spec["_path"])


def write_inputs(jobs):
    """The train configs the jobs' commands name (under --out/.configs), once the spec passed."""
    for job in jobs:
        if job.input_path:
            os.makedirs(os.path.dirname(job.input_path), exist_ok=True)
            write_atomic(job.input_path, job.input_text)


def order(jobs, where):
    """Kahn's algorithm over `needs`; a cycle is an error naming its members."""
    done, out = set(), []
    pending = dict(jobs)
    while pending:
        ready = [k for k, j in pending.items() if j.needs <= done]
        if not ready:
            stuck = sorted(k for k, j in pending.items() if j.arm is None)
            raise SpecError(f"{where}: prerequisites form a cycle: {', '.join(stuck)}")
        for k in ready:
            out.append(pending.pop(k))
            done.add(k)
    return out


# ---------------------------------------------------------------------------------------------
# Running


def git_revision():
    r = subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True, text=True)
    rev = r.stdout.strip() or "unknown"
    dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return rev + ("+dirty" if dirty else "")


def bin_revision(bin_dir):
    """The source revision the programs in bin_dir were built from (`train --version`), or
    "unknown" for a build that predates the flag."""
    try:
        r = subprocess.run([os.path.join(bin_dir, "train"), "--version"], capture_output=True,
                           text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    words = r.stdout.split()
    return words[-1] if r.returncode == 0 and "revision" in words else "unknown"


def fmt_duration(s):
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def without_output_dir(config_text):
    return "\n".join(l for l in config_text.splitlines() if not l.startswith("output_dir:"))


def reuse_finished(job, root):
    """Copies the results of an identical finished run of another spec under `root` (the folder of
    the specs' result folders; same resolved config but for output_dir: e.g. the random baseline
    that several ablations share) into job.folder; returns its folder, or None. Checkpoints are not copied: a reused run is a finished record, not resumable."""
    want = without_output_dir(job.config_text)
    for spec_dir in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        runs = os.path.join(root, spec_dir, "runs")
        arms = sorted(os.listdir(runs)) if os.path.isdir(runs) else []
        for cand in [os.path.join(runs, a, f"seed{job.seed}") for a in arms]:
            if os.path.abspath(cand) == os.path.abspath(job.folder):
                continue
            text = normalized_config(os.path.join(cand, "config.yaml"))
            if text is None or without_output_dir(text) != want or \
                    not os.path.exists(os.path.join(cand, "summary.json")):
                continue
            os.makedirs(job.folder, exist_ok=True)
            for f in ("metrics.jsonl", "summary.json", "best.safetensors", "log.txt"):
                if os.path.exists(os.path.join(cand, f)):
                    shutil.copyfile(os.path.join(cand, f), os.path.join(job.folder, f))
            meta = read_json(os.path.join(cand, "run.json"))
            meta = meta if isinstance(meta, dict) else {}
            meta["reused_from"] = cand
            write_atomic(os.path.join(job.folder, "run.json"), json.dumps(meta, indent=1))
            write_atomic(os.path.join(job.folder, "config.yaml"), job.config_text)
            return cand
    return None


_child = None  # the running step's process
_stop = 0  # the signal that asked the harness to stop


def on_stop_signal(signum, frame):
    """SIGTERM/SIGINT: passed on to the running step (train saves and exits), then run_jobs
    stops with Stop."""
    global _stop
    _stop = signum
    child = _child
    if child is not None and child.poll() is None:
        try:
            child.send_signal(signum)
        except OSError:
            pass


def run_jobs(jobs, provenance, results_root):
    """Runs the steps not done yet; provenance: the revisions every run.json records. Raises Stop
    when a signal asked the harness to stop."""
    todo = [j for j in jobs if not j.done()]
    n = len(jobs)
    print(f"{n} steps: {n - len(todo)} already done, {len(todo)} to run", flush=True)
    walls = {}  # kind of step ("arm" runs, "prerequisite" steps) -> wall times of this invocation
    for i, job in enumerate(jobs, 1):
        if _stop:
            raise Stop(_stop)
        if job.done():
            continue
        stale = job.kind == "train" and os.path.exists(os.path.join(job.folder, "config.yaml")) \
            and not job.same_config()
        if stale:
            moved = unique_aside(job.folder, "stale")
            lock = FolderLock(job.folder, "run folder")  # never move a folder a process uses
            os.rename(job.folder, moved)
            lock.release()
            print(f"  {job.key}: its config changed; the old run is kept in {moved}", flush=True)
        if job.arm is not None and not os.path.exists(job.folder):
            source = reuse_finished(job, results_root)
            if source:
                print(f"[{i}/{len(jobs)}] {job.key}: identical to the finished {source}; reused",
                      flush=True)
                continue
        os.makedirs(job.folder, exist_ok=True)
        # ETA: each remaining step costs the mean wall time of finished steps of its kind (arm
        # runs and prerequisites differ by far); unknown kinds are not counted.
        rest = [j for j in jobs[i - 1:] if not j.done()]
        eta_s = sum(sum(walls[k]) / len(walls[k]) for k in
                    ("arm" if j.arm else "prerequisite" for j in rest) if walls.get(k))
        eta = f", ETA for the rest {fmt_duration(eta_s)}" if eta_s else ""
        resumed = " (resuming)" if os.path.exists(os.path.join(job.folder, "last.safetensors")) else ""
        print(f"[{i}/{n}] {job.key}{resumed}{eta}", flush=True)
        start = time.time()
        # train locks its run folder itself; a scion init/select/grow step's folder is locked here.
        lock = FolderLock(job.folder, "step folder") if job.kind != "train" else None
        global _child
        with open(os.path.join(job.folder, "log.txt"), "a") as log:
            _child = subprocess.Popen(job.command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
            returncode = _child.wait()
            _child = None
        if lock:
            lock.release()
        wall = time.time() - start
        walls.setdefault("arm" if job.arm else "prerequisite", []).append(wall)
        meta = {"step": job.key, "command": job.command, **provenance,
                "wall_seconds": round(wall, 1), "exit_status": returncode,
                "finished": datetime.datetime.now().isoformat(timespec="seconds")}
        write_atomic(os.path.join(job.folder, "run.json"), json.dumps(meta, indent=1))
        if _stop:
            raise Stop(_stop)
        if returncode != 0:
            tail = (read(os.path.join(job.folder, "log.txt")) or "").strip().splitlines()[-5:]
            print(f"  {job.key} failed (exit {returncode}); log: {job.folder}/log.txt\n    "
                  + "\n    ".join(tail), flush=True)
            return False
        summary = read_json(os.path.join(job.folder, "summary.json")) or {}
        if job.kind == "train" and "final_val_acc1" not in summary:
            print(f"  {job.key}: stopped before its last epoch (signal?); rerun to resume", flush=True)
            return False
        acc = f", final top-1 {summary['final_val_acc1']:.2f}" if summary else ""
        print(f"  done in {fmt_duration(wall)}{acc}", flush=True)
    return True


# ---------------------------------------------------------------------------------------------
# Aggregation, tables and plots


def mean_std(xs):
    if not xs:
        return float("nan"), float("nan")
    m = sum(xs) / len(xs)
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0
    return m, sd


def read_metrics(folder):
    """A finished run's metrics.jsonl: one record per epoch with an integer epoch and a numeric
    val_acc1. Missing, empty, truncated or malformed: a SpecError naming the file and line."""
    path = os.path.join(folder, "metrics.jsonl")
    beside = f"beside {os.path.join(folder, 'summary.json')}, which says the run finished"
    if not os.path.isfile(path):
        raise SpecError(f"{path}: missing {beside}")
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"{path}: cannot read ({e})")
    records = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
        except ValueError:
            raise SpecError(f"{path}:{n}: not a JSON record (a truncated or damaged file?)")
        if not isinstance(r, dict):
            raise SpecError(f"{path}:{n}: expected a JSON object per line")
        for key, kind in (("epoch", int), ("val_acc1", (int, float))):
            v = r.get(key)
            if isinstance(v, bool) or not isinstance(v, kind) or \
                    (key == "val_acc1" and not math.isfinite(v)):
                raise SpecError(f"{path}:{n}: {key}: expected a {'number' if key != 'epoch' else 'whole number'}, got {json.dumps(v)}")
        if r["epoch"] != len(records) + 1:
            raise SpecError(f"{path}:{n}: epoch {r['epoch']} where epoch {len(records) + 1} "
                            "was expected")
        records.append(r)
    if not records:
        raise SpecError(f"{path}: empty {beside}")
    return records


def load_runs(spec, out):
    """{arm: {seed: [metrics per epoch]}} for the spec's finished runs (summary.json present)."""
    runs = {}
    for arm in spec["arms"]:
        arm_dir = os.path.join(out, "runs", arm)
        for s in sorted(os.listdir(arm_dir)) if os.path.isdir(arm_dir) else []:
            m = re.fullmatch(r"seed(\d+)", s)
            folder = os.path.join(arm_dir, s)
            if not m or not os.path.isfile(os.path.join(folder, "summary.json")):
                continue
            runs.setdefault(arm, {})[int(m.group(1))] = read_metrics(folder)
    return runs


def aggregate(spec, out):
    runs = load_runs(spec, out)
    baseline = spec["baseline"]
    epochs_at = spec.get("epochs_at") or [5, 10]
    base_final = [r[-1]["val_acc1"] for r in runs.get(baseline, {}).values()]
    target = sum(base_final) / len(base_final) if base_final else None
    arms = {}
    for arm in spec["arms"]:
        per_seed = runs.get(arm, {})
        if not per_seed:
            arms[arm] = {"seeds": []}
            continue
        final = {s: r[-1]["val_acc1"] for s, r in per_seed.items()}
        best = {s: max(e["val_acc1"] for e in r) for s, r in per_seed.items()}
        best_ep = {s: max(r, key=lambda e: e["val_acc1"])["epoch"] for s, r in per_seed.items()}
        at = {}
        for ep in epochs_at + ["last"]:
            vals = [r[ep - 1]["val_acc1"] if ep != "last" else r[-1]["val_acc1"]
                    for r in per_seed.values() if ep == "last" or len(r) >= ep]
            if vals:
                at[str(ep)] = dict(zip(("mean", "std"), mean_std(vals)))
        reach = {}
        if target is not None:
            for s, r in per_seed.items():
                hit = [e["epoch"] for e in r if e["val_acc1"] >= target]
                reach[s] = hit[0] if hit else None
        a = {"seeds": sorted(per_seed), "epochs": len(next(iter(per_seed.values()))),
             "final": dict(zip(("mean", "std"), mean_std(list(final.values()))),
                           min=min(final.values()), max=max(final.values()), per_seed=final),
             "best": dict(zip(("mean", "std"), mean_std(list(best.values()))),
                          per_seed=best, epoch_mean=mean_std(list(best_ep.values()))[0]),
             "top1_at": at,
             "epochs_to_baseline_final": reach,
             "curve": {s: [e["val_acc1"] for e in r] for s, r in per_seed.items()}}
        if arm != baseline and baseline in runs:
            for what in ("final", "best"):
                bvals = {s: (r[-1]["val_acc1"] if what == "final" else
                             max(e["val_acc1"] for e in r)) for s, r in runs[baseline].items()}
                paired = [a[what]["per_seed"][s] - bvals[s] for s in a[what]["per_seed"] if s in bvals]
                bm, bs = mean_std(list(bvals.values()))
                a[f"delta_{what}"] = {"mean": a[what]["mean"] - bm,
                                      "spread": math.sqrt(a[what]["std"] ** 2 + bs ** 2),
                                      "paired_min": min(paired) if paired else None,
                                      "paired_max": max(paired) if paired else None}
        arms[arm] = a
    return {"spec": spec["name"], "baseline": baseline, "baseline_final_mean": target,
            "epochs_at": epochs_at, "arms": arms, "prerequisites": prereq_results(spec, out)}


def prereq_results(spec, out):
    res = {}
    harness = read_json(os.path.join(out, "harness.json"))
    prereq_dir = harness.get("prereq_dir") if isinstance(harness, dict) else None
    if not isinstance(prereq_dir, str):
        return res
    for name, p in (spec.get("prerequisites") or {}).items():
        path = os.path.join(prereq_dir, name, "summary.json")
        s = read_json(path) if "train" in p else None
        if s is None:
            continue
        keys = ("final_val_acc1", "best_val_acc1", "epochs")
        if not isinstance(s, dict) or any(isinstance(s.get(k), bool) or
                                          not isinstance(s.get(k), (int, float)) for k in keys):
            raise SpecError(f"{path}: expected numbers {', '.join(keys)}")
        res[name] = {k: s[k] for k in keys}
    return res


def pm(d, digits=2):
    if not d or d.get("mean") is None or math.isnan(d["mean"]):
        return "—"
    return f"{d['mean']:.{digits}f} ± {d['std']:.{digits}f}"


def render_markdown(spec, agg, quick):
    lines = [f"# {spec['name']}{' (quick tier: tiny budgets, not results)' if quick else ''}", ""]
    if spec.get("description"):
        lines += [spec["description"].strip(), ""]
    lines += [f"Baseline arm: `{agg['baseline']}`; top-1 is validation accuracy in %, mean ± std "
              "over seeds (sample std), [min, max] over seeds. \"Epochs to baseline\" is the first "
              f"epoch at which a run reaches the baseline's mean final top-1 "
              f"({agg['baseline_final_mean']:.2f})." if agg["baseline_final_mean"] is not None
              else f"Baseline arm: `{agg['baseline']}` (no finished run yet).", ""]
    at_cols = [str(e) for e in agg["epochs_at"]]
    head = ["arm", "seeds", "final top-1", "[min, max]", "Δ final vs baseline", "best top-1 (epoch)",
            "Δ best"] + [f"top-1 @{e}" for e in at_cols] + ["epochs to baseline final"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for arm, a in agg["arms"].items():
        label = (spec["arms"][arm] or {}).get("label", arm)
        if not a["seeds"]:
            lines.append(f"| {label} | 0 | " + " | ".join(["—"] * (len(head) - 2)) + " |")
            continue
        def delta(k):
            d = a.get(k)
            if not d:
                return "(baseline)" if arm == agg["baseline"] else "—"
            rng = (f"; per seed {d['paired_min']:+.2f}..{d['paired_max']:+.2f}"
                   if d["paired_min"] is not None else "")
            return f"{d['mean']:+.2f} (spread ±{d['spread']:.2f}{rng})"
        reach = a["epochs_to_baseline_final"]
        hits = [v for v in reach.values() if v is not None]
        reach_txt = ("—" if not reach else
                     f"{sum(hits) / len(hits):.1f} of {a['epochs']} ({len(hits)}/{len(reach)} seeds)"
                     if hits else f"not reached in {a['epochs']} (0/{len(reach)})")
        row = [label, ",".join(map(str, a["seeds"])), pm(a["final"]),
               f"[{a['final']['min']:.2f}, {a['final']['max']:.2f}]", delta("delta_final"),
               f"{pm(a['best'])} ({a['best']['epoch_mean']:.1f})", delta("delta_best")]
        row += [pm(a["top1_at"].get(e)) for e in at_cols]
        row += [reach_txt]
        lines.append("| " + " | ".join(row) + " |")
    if agg["prerequisites"]:
        lines += ["", "Prerequisite training runs (teachers and sources):", "",
                  "| run | epochs | final top-1 | best top-1 |", "|---|---|---|---|"]
        for name, r in agg["prerequisites"].items():
            lines.append(f"| {name} | {r['epochs']} | {r['final_val_acc1']:.2f} | "
                         f"{r['best_val_acc1']:.2f} |")
    lines += ["", "Plots: `curves.png` (validation top-1 per epoch: mean line, min-max band over "
              "seeds), `bars.png` (best and final top-1, mean with std error bars).", ""]
    return "\n".join(lines)


def save_png(fig, path):
    tmp = f"{path}.tmp.{os.getpid()}"
    fig.savefig(tmp, format="png")
    os.replace(tmp, path)


def render_plots(spec, agg, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401
    arms = [(k, a) for k, a in agg["arms"].items() if a["seeds"]]
    if not arms:
        return
    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=110)
    for k, a in arms:
        curves = list(a["curve"].values())
        n = min(len(c) for c in curves)
        xs = list(range(1, n + 1))
        mean = [sum(c[i] for c in curves) / len(curves) for i in range(n)]
        lo = [min(c[i] for c in curves) for i in range(n)]
        hi = [max(c[i] for c in curves) for i in range(n)]
        label = (spec["arms"][k] or {}).get("label", k) + f" ({len(curves)} seeds)"
        line, = ax.plot(xs, mean, lw=2, label=label)
        ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.2)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation top-1 (%)")
    ax.set_title(f"{spec['name']}: validation top-1 per epoch (mean, min-max band over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=9)
    fig.tight_layout()
    save_png(fig, os.path.join(out, "curves.png"))
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(arms) + 2), 5), dpi=110)
    w = 0.38
    for i, (what, name) in enumerate((("best", "best"), ("final", "final"))):
        xs = [j + (i - 0.5) * w for j in range(len(arms))]
        ax.bar(xs, [a[what]["mean"] for _, a in arms], w, yerr=[a[what]["std"] for _, a in arms],
               capsize=4, label=f"{name} top-1")
    ax.set_xticks(range(len(arms)))
    ax.set_xticklabels([(spec["arms"][k] or {}).get("label", k) for k, _ in arms], rotation=20,
                       ha="right")
    lo = min(a["final"]["min"] for _, a in arms)
    ax.set_ylim(max(0, lo - 10), None)
    ax.set_ylabel("validation top-1 (%)")
    ax.set_title(f"{spec['name']}: best and final top-1 (mean ± std over seeds)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_png(fig, os.path.join(out, "bars.png"))
    plt.close(fig)


def report(spec, out, quick):
    agg = aggregate(spec, out)
    md = render_markdown(spec, agg, quick)
    write_atomic(os.path.join(out, "results.json"), json.dumps(agg, indent=1))
    write_atomic(os.path.join(out, "results.md"), md)
    render_plots(spec, agg, out)
    print(md)
    print(f"wrote {out}/results.md, results.json, curves.png, bars.png")


# ---------------------------------------------------------------------------------------------
# Paper-scale estimate


def train_images(cfg):
    ds, root = cfg["data"]["dataset"], cfg["data"]["root"]
    if cfg["data"].get("train_subset"):
        return int(cfg["data"]["train_subset"])
    # Training images of each data set's train split as scion reads it.
    known = {"cifar10": 50000, "cifar100": 50000, "image_folder": 1281167, "tiny_imagenet": 100000,
             "fashion_mnist": 60000, "mnist": 60000, "stl10": 5000, "svhn": 73257,
             "flowers102": 2040, "pets": 3680, "food101": 75750, "dtd": 3760, "eurosat": 21600}
    return known[ds]


def estimate(jobs, args):
    """Measures forward+backward speed of each distinct model config with bench_models and prints
    the wall time each training run would take here."""
    total, cache = 0.0, {}
    for job in jobs:
        if job.kind != "train":
            continue
        cfg = yaml.safe_load(job.config_text)
        m, t = cfg["model"], cfg["train"]
        opts = [f"{k}={json.dumps(v) if isinstance(v, list) else v}" for k, v in m.items()
                if k != "name" and v is not None]
        key = (m["name"], tuple(opts), t["batch_size"], t["precision"])
        if key not in cache:
            cmd = [os.path.join(args.bin, "bench_models"), "--model", m["name"], "--batch",
                   str(t["batch_size"]), "--precision", t["precision"], "--steps", "3", "--warmup",
                   "1"] + sum([["--set", o] for o in opts], [])
            r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
            line = [x for x in r.stdout.splitlines() if x.startswith("{")]
            if r.returncode != 0 or not line:
                raise RuntimeError(f"estimate: bench_models failed: {r.stderr.strip()}")
            cache[key] = json.loads(line[-1])["images_per_second"]
        ips = cache[key]
        n = train_images(cfg)
        # +15% for the optimizer step, data loading and evaluation beside forward+backward.
        secs = t["epochs"] * n / ips * 1.15
        total += secs
        print(f"  {job.key}: {m['name']} {m.get('img_size')} px, {t['epochs']} epochs of {n:,} "
              f"images at ~{ips:.0f} img/s (forward+backward measured here): about "
              f"{secs / 3600:.1f} hours on cpu", flush=True)
    print(f"all steps: about {total / 3600:.1f} hours ({total / 86400:.1f} days) on this machine")
    return total


# ---------------------------------------------------------------------------------------------


def inside_root(path):
    """`path` relative to the repository (where train runs) when it lies inside it."""
    path = os.path.abspath(path)
    return os.path.relpath(path, ROOT) if path.startswith(ROOT + os.sep) else path


def user_folder(path, flag):
    """A folder given on the command line (--out, --prereq-dir), relative to the repository when
    inside it; a path that exists as something else is a SpecError."""
    if not path or "\0" in path:
        raise SpecError(f"{flag}: expected a folder")
    if os.path.exists(path) and not os.path.isdir(path):
        raise SpecError(f"{flag} {path}: exists and is not a folder")
    return inside_root(path)


def run_report(folder):
    """--report DIR: re-renders DIR's tables and plots from its finished runs."""
    if not os.path.isdir(folder):
        raise SpecError(f"--report {folder}: not a folder (a results folder of reproduce.py)")
    spec = load_spec(os.path.join(folder, "spec.yaml"), ROOT)
    harness = read_json(os.path.join(folder, "harness.json"))
    quick = harness.get("quick", False) if isinstance(harness, dict) else False
    if not isinstance(quick, bool):
        raise SpecError(f"{folder}/harness.json: quick: expected true or false")
    lock = FolderLock(folder, "results folder")
    report(spec, folder, quick)
    lock.release()
    return 0


def prepare(args):
    """Checks the whole spec and command line; returns (spec, jobs). Writes nothing."""
    roots = {}
    for item in args.data_root:
        k, sep, v = item.partition("=")
        if not sep or not v:
            raise SpecError(f"--data-root {item}: expected NAME=PATH")
        check_name(k, f"--data-root {item}", "data name")
        roots[k] = inside_root(v)
    args.data_root = roots
    spec = load_spec(args.spec, ROOT)
    suffix = "-quick" if args.quick else ""
    # Paths given by the user are taken from the current folder; everything then runs from
    # the repository root, where the specs' relative paths (configs, ../shared/data) point.
    args.out = (user_folder(args.out, "--out") if args.out is not None
                else os.path.join("runs", "repro", spec["name"] + suffix))
    args.prereq_dir = (user_folder(args.prereq_dir, "--prereq-dir")
                       if args.prereq_dir is not None
                       else os.path.join("runs", "repro", "_prereq" + suffix))
    args.bin = os.path.abspath(args.bin)
    global BIN
    BIN = args.bin
    os.chdir(ROOT)
    args.scratch = os.path.join(args.out, ".configs")
    for b in ("train", "scion"):
        if not os.path.isfile(os.path.join(args.bin, b)):
            raise SpecError(f"{args.bin}/{b} not found: build first (make demo or make build)")
    return spec, expand(spec, args)


class Stop(Exception):
    """SIGTERM/SIGINT: the running step was asked to stop (it saves and exits); then we stop."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("spec", nargs="?", help="experiment spec (YAML)")
    ap.add_argument("--quick", action="store_true", help="tiny budgets: the whole pipeline fast")
    ap.add_argument("--out", help="results folder (default runs/repro/<spec name>[-quick])")
    ap.add_argument("--prereq-dir", help="prerequisite runs (default runs/repro/_prereq[-quick])")
    ap.add_argument("--data-root", action="append", default=[], metavar="NAME=PATH",
                    help="a data root for ${data.NAME} (cifar10, tiny_imagenet, cifar100, imagenet)")
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "bin"), help="scion binaries")
    ap.add_argument("--report", metavar="DIR", help="re-render DIR's tables and plots, run nothing")
    ap.add_argument("--yes", action="store_true", help="run a paper-scale spec after its estimate")
    ap.add_argument("--dry-run", action="store_true", help="check and list the steps, run nothing")
    args = ap.parse_args()
    if not args.spec and not args.report:
        ap.error("a SPEC.yaml (or --report DIR) is required")
    try:
        if args.report:
            return run_report(os.path.abspath(args.report))
        spec, jobs = prepare(args)
        print(f"{spec['name']}: {len(jobs)} steps ({sum(1 for j in jobs if j.arm)} runs in "
              f"{len(spec['arms'])} arms, {len(jobs) - sum(1 for j in jobs if j.arm)} "
              f"prerequisites){', quick tier' if args.quick else ''}; results in {args.out}",
              flush=True)
        if args.dry_run:
            for j in jobs:
                print(f"  {j.key}: {' '.join(j.command)}{'  (done)' if j.done() else ''}")
            return 0
        if spec.get("tier") == "paper" and not args.quick:
            try:
                estimate(jobs, args)
            except RuntimeError as e:
                print(f"reproduce.py: error: {e}", file=sys.stderr)
                return 1
            if not args.yes:
                print("a paper-scale spec: rerun with --yes to start it")
                return 0
        # The spec passed every check: from here on the results folder is ours alone.
        os.makedirs(args.out, exist_ok=True)
        lock = FolderLock(args.out, "results folder")
        write_atomic(os.path.join(args.out, "spec.yaml"), spec["_text"])
        write_atomic(os.path.join(args.out, "harness.json"), json.dumps(
            {"spec": os.path.relpath(spec["_path"], ROOT), "quick": args.quick,
             "prereq_dir": args.prereq_dir, "data_roots": args.data_root}, indent=1))
        write_inputs(jobs)
        provenance = {"git_revision": git_revision(), "bin_revision": bin_revision(args.bin)}
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, on_stop_signal)
        try:
            ok = run_jobs(jobs, provenance, os.path.dirname(args.out) or ".")
        except Stop as e:
            print(f"reproduce.py: stopped by signal {e.signum}; the running step saved its "
                  "progress. Run the same command again to continue.", file=sys.stderr)
            return 128 + e.signum
        report(spec, args.out, args.quick)
        lock.release()
        return 0 if ok else 1
    except SpecError as e:
        print(f"reproduce.py: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        print(f"reproduce.py: error: {where}{e.strerror or e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
