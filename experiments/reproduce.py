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
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
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


_ensure_modules()
import yaml  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DATA = {"cifar10": "../shared/data/cifar10-jpg",
                "tiny_imagenet": "../shared/data/tiny-imagenet-200-subset",
                "cifar100": "data/cifar-100-binary", "imagenet": "data/imagenet",
                "fashion_mnist": "/usr/share/datasets/fashion-mnist"}
SPEC_KEYS = {"name", "description", "tier", "data", "prerequisites", "base", "set", "quick",
             "seeds", "quick_seeds", "baseline", "arms", "epochs_at", "claims"}
ARM_KEYS = {"set", "seeds", "label", "needs"}
PREREQ_KINDS = {"train": {"set", "quick", "seed"},
                "init": {"model", "set", "init", "seed"},
                "select": {"teacher", "model", "set", "layers", "elements", "seed", "head_norm"},
                "grow": {"from", "from_model", "model", "set", "noise", "seed"}}
REF = re.compile(r"\$\{([A-Za-z0-9_.\-]+)\}")
BIN = os.path.join(ROOT, "build", "bin")  # the scion programs (--bin)


class SpecError(Exception):
    """A problem in the spec (or in a config it builds): reported before anything runs, exit 2."""


# ---------------------------------------------------------------------------------------------
# Spec loading and expansion


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


def check_keys(mapping, allowed, where):
    if not isinstance(mapping, dict):
        raise SpecError(f"{where}: expected a mapping")
    unknown = set(mapping) - set(allowed)
    if unknown:
        raise SpecError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} "
                        f"(known: {', '.join(sorted(allowed))})")


def load_spec(path):
    try:
        with open(path) as f:
            spec = yaml.safe_load(f)
    except OSError as e:
        raise SpecError(f"{path}: cannot read ({e.strerror})")
    except yaml.YAMLError as e:
        raise SpecError(f"{path}: invalid YAML: {e}")
    check_keys(spec, SPEC_KEYS, path)
    spec.setdefault("name", os.path.splitext(os.path.basename(path))[0])
    for k in ("base", "arms", "baseline"):
        if k not in spec:
            raise SpecError(f"{path}: {k}: missing")
    if spec["baseline"] not in spec["arms"]:
        raise SpecError(f"{path}: baseline: '{spec['baseline']}' is not an arm "
                        f"(arms: {', '.join(spec['arms'])})")
    if not isinstance(spec["arms"], dict) or not spec["arms"]:
        raise SpecError(f"{path}: arms: expected a mapping of arm names to overrides")
    for arm, a in spec["arms"].items():
        check_keys(a or {}, ARM_KEYS, f"{path}: arms.{arm}")
    for name, p in (spec.get("prerequisites") or {}).items():
        p = p or {}
        kinds = [k for k in PREREQ_KINDS if k in (p or {})]
        if len(kinds) != 1:
            raise SpecError(f"{path}: prerequisites.{name}: expected exactly one of "
                            f"{', '.join(PREREQ_KINDS)}")
        kind = kinds[0]
        check_keys(p, {kind, "needs"} | ({"set", "quick", "seed"} if kind == "train" else set()),
                   f"{path}: prerequisites.{name}")
        if kind != "train":
            check_keys(p[kind], PREREQ_KINDS[kind], f"{path}: prerequisites.{name}.{kind}")
    spec["_path"] = os.path.abspath(path)
    return spec


class Job:
    """One step: a `train` run (prerequisite or arm/seed) or a `scion init/select/grow` step."""

    def __init__(self, key, kind, folder, needs):
        self.key, self.kind, self.folder, self.needs = key, kind, folder, set(needs)
        self.config_text = None  # resolved config (train jobs)
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
        return os.path.exists(self.product) and meta and meta.get("command") == self.command


def normalized_config(path):
    """A run's config.yaml as the current `train` resolves it (keys added since it was written take
    their defaults), or None when absent or no longer valid."""
    if not os.path.exists(path):
        return None
    r = subprocess.run([os.path.join(BIN, "train"), "--config", path, "--print-config"],
                       capture_output=True, text=True, cwd=ROOT)
    return r.stdout if r.returncode == 0 else None


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def read_json(path):
    text = read(path)
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def build_config(base_path, overrides, where):
    try:
        with open(base_path) as f:
            cfg = yaml.safe_load(f) or {}
    except OSError:
        raise SpecError(f"{where}: base config {base_path} cannot be read")
    for k, v in overrides.items():
        set_path(cfg, k, v)
    return cfg


def resolve(binary_dir, cfg, folder, where):
    """Writes the config to folder/input.yaml and returns train's resolved text (its checks)."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "input.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(cfg, f, sort_keys=False)
    r = subprocess.run([os.path.join(binary_dir, "train"), "--config", path, "--print-config"],
                       capture_output=True, text=True, cwd=ROOT)
    if r.returncode != 0:
        raise SpecError(f"{where}: {r.stderr.strip()}")
    return path, r.stdout


def expand(spec, args):
    """The spec as a list of Jobs in dependency order; raises SpecError on any problem."""
    data = dict(DEFAULT_DATA)
    data.update(spec.get("data") or {})
    data.update(args.data_root)
    refs = {f"data.{k}": v for k, v in data.items()}
    prereqs = spec.get("prerequisites") or {}
    prereq_dir = args.prereq_dir
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
        job = Job(name, kind, os.path.join(prereq_dir, name), needs)
        if kind == "train":
            overrides = dict(substitute(p.get("set") or {}, refs, where))
            if args.quick:
                overrides.update(substitute(p.get("quick") or {}, refs, where))
            overrides["output_dir"] = job.folder
            if "seed" in p:
                overrides["seed"] = p["seed"]
            cfg = build_config(os.path.join(ROOT, p["train"]), overrides, where)
            path, job.config_text = resolve(args.bin, cfg, os.path.join(args.scratch, name), where)
            job.command = [os.path.join(args.bin, "train"), "--config", path]
        else:
            q = substitute(p[kind], refs, where)
            cmd = [os.path.join(args.bin, "scion"), kind]
            flag = {"teacher": "--teacher", "model": "--model", "layers": "--layers",
                    "elements": "--elements", "seed": "--seed", "from": "--from",
                    "from_model": "--from-model", "noise": "--noise", "init": "--init"}
            for k, v in q.items():
                if k == "set":
                    for sk, sv in v.items():
                        cmd += ["--set", f"{sk}={json.dumps(sv) if isinstance(sv, list) else sv}"]
                elif k == "head_norm":
                    cmd += ["--head-norm"] if v else []
                else:
                    cmd += [flag[k], str(v)]
            job.command = cmd + ["--out", job.product]
        jobs[name] = job
    # Arms.
    base = os.path.join(ROOT, spec["base"])
    seeds = spec.get("seeds") or [0]
    for arm, a in spec["arms"].items():
        a = a or {}
        arm_seeds = a.get("seeds") or seeds
        if args.quick:
            arm_seeds = (spec.get("quick_seeds") or arm_seeds)[:2]
        where = f"{spec['_path']}: arms.{arm}"
        needs = {r for r in references(a) | references(spec.get("set") or {})
                 if not r.startswith("data.")} | set(a.get("needs") or [])
        for n in needs:
            if n not in prereqs:
                raise SpecError(f"{where}: needs '{n}', which is not a prerequisite")
        for seed in arm_seeds:
            folder = os.path.join(args.out, "runs", arm, f"seed{seed}")
            overrides = dict(substitute(spec.get("set") or {}, refs, where))
            overrides.update(substitute(a.get("set") or {}, refs, where))
            if args.quick:
                overrides.update(substitute(spec.get("quick") or {}, refs, where))
            overrides["seed"] = seed
            overrides["output_dir"] = folder
            cfg = build_config(base, overrides, where)
            job = Job(f"{arm}/seed{seed}", "train", folder, needs)
            job.arm, job.seed = arm, seed
            path, job.config_text = resolve(args.bin, cfg,
                                            os.path.join(args.scratch, "runs", arm, f"seed{seed}"),
                                            where)
            job.command = [os.path.join(args.bin, "train"), "--config", path]
            jobs[job.key] = job
    return order(jobs, spec["_path"])


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
            meta = read_json(os.path.join(cand, "run.json")) or {}
            meta["reused_from"] = cand
            with open(os.path.join(job.folder, "run.json"), "w") as f:
                json.dump(meta, f, indent=1)
            with open(os.path.join(job.folder, "config.yaml"), "w") as f:
                f.write(job.config_text)
            return cand
    return None


def run_jobs(jobs, provenance, results_root):
    """Runs the steps not done yet; provenance: the revisions every run.json records."""
    todo = [j for j in jobs if not j.done()]
    n = len(jobs)
    print(f"{n} steps: {n - len(todo)} already done, {len(todo)} to run", flush=True)
    walls = {}  # kind of step ("arm" runs, "prerequisite" steps) -> wall times of this invocation
    for i, job in enumerate(jobs, 1):
        if job.done():
            continue
        stale = job.kind == "train" and os.path.exists(os.path.join(job.folder, "config.yaml")) \
            and not job.same_config()
        if stale:
            moved = f"{job.folder}.stale-{datetime.datetime.now():%Y%m%d-%H%M%S}"
            os.rename(job.folder, moved)
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
        with open(os.path.join(job.folder, "log.txt"), "a") as log:
            r = subprocess.run(job.command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        wall = time.time() - start
        walls.setdefault("arm" if job.arm else "prerequisite", []).append(wall)
        meta = {"step": job.key, "command": job.command, **provenance,
                "wall_seconds": round(wall, 1), "exit_status": r.returncode,
                "finished": datetime.datetime.now().isoformat(timespec="seconds")}
        with open(os.path.join(job.folder, "run.json"), "w") as f:
            json.dump(meta, f, indent=1)
        if r.returncode != 0:
            tail = (read(os.path.join(job.folder, "log.txt")) or "").strip().splitlines()[-5:]
            print(f"  {job.key} failed (exit {r.returncode}); log: {job.folder}/log.txt\n    "
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


def load_runs(out):
    """{arm: {seed: [metrics per epoch]}} for finished runs (summary.json present)."""
    runs = {}
    root = os.path.join(out, "runs")
    for arm in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        for s in sorted(os.listdir(os.path.join(root, arm))):
            m = re.fullmatch(r"seed(\d+)", s)
            folder = os.path.join(root, arm, s)
            if not m or not os.path.exists(os.path.join(folder, "summary.json")):
                continue
            lines = (read(os.path.join(folder, "metrics.jsonl")) or "").splitlines()
            runs.setdefault(arm, {})[int(m.group(1))] = [json.loads(x) for x in lines if x.strip()]
    return runs


def aggregate(spec, out):
    runs = load_runs(out)
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
    prereq_dir = (read_json(os.path.join(out, "harness.json")) or {}).get("prereq_dir")
    for name, p in (spec.get("prerequisites") or {}).items():
        if "train" in p and prereq_dir:
            s = read_json(os.path.join(prereq_dir, name, "summary.json"))
            if s:
                res[name] = {"final_val_acc1": s["final_val_acc1"],
                             "best_val_acc1": s["best_val_acc1"], "epochs": s["epochs"]}
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
    fig.savefig(os.path.join(out, "curves.png"))
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
    fig.savefig(os.path.join(out, "bars.png"))
    plt.close(fig)


def report(spec, out, quick):
    agg = aggregate(spec, out)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(agg, f, indent=1)
    md = render_markdown(spec, agg, quick)
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(md)
    render_plots(spec, agg, out)
    print(md)
    print(f"wrote {out}/results.md, results.json, curves.png, bars.png")


# ---------------------------------------------------------------------------------------------
# Paper-scale estimate


def train_images(cfg):
    ds, root = cfg["data"]["dataset"], cfg["data"]["root"]
    if cfg["data"].get("train_subset"):
        return int(cfg["data"]["train_subset"])
    known = {"cifar10": 50000, "cifar100": 50000, "image_folder": 1281167, "tiny_imagenet": 100000,
             "fashion_mnist": 60000, "mnist": 60000}
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
                raise SpecError(f"estimate: bench_models failed: {r.stderr.strip()}")
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
    try:
        if args.report:
            args.report = os.path.abspath(args.report)
            spec = load_spec(os.path.join(args.report, "spec.yaml"))
            quick = (read_json(os.path.join(args.report, "harness.json")) or {}).get("quick", False)
            report(spec, args.report, quick)
            return 0
        if not args.spec:
            ap.error("a SPEC.yaml (or --report DIR) is required")
        roots = {}
        for item in args.data_root:
            if "=" not in item:
                raise SpecError(f"--data-root {item}: expected NAME=PATH")
            k, v = item.split("=", 1)
            roots[k] = inside_root(v)
        args.data_root = roots
        spec = load_spec(args.spec)
        suffix = "-quick" if args.quick else ""
        # Paths given by the user are taken from the current folder; everything then runs from
        # the repository root, where the specs' relative paths (configs, ../shared/data) point.
        args.out = inside_root(args.out) if args.out else os.path.join("runs", "repro",
                                                                         spec["name"] + suffix)
        args.prereq_dir = (inside_root(args.prereq_dir) if args.prereq_dir
                           else os.path.join("runs", "repro", "_prereq" + suffix))
        args.bin = os.path.abspath(args.bin)
        global BIN
        BIN = args.bin
        os.chdir(ROOT)
        args.scratch = os.path.join(args.out, ".configs")
        for b in ("train", "scion"):
            if not os.path.exists(os.path.join(args.bin, b)):
                raise SpecError(f"{args.bin}/{b} not found: build first (make demo or make build)")
        fresh = not os.path.exists(args.out)
        try:
            jobs = expand(spec, args)
        except SpecError:
            # Nothing ran; leave no trace of the checked configs either.
            shutil.rmtree(args.out if fresh else args.scratch, ignore_errors=True)
            raise
    except SpecError as e:
        print(f"reproduce.py: error: {e}", file=sys.stderr)
        return 2
    print(f"{spec['name']}: {len(jobs)} steps ({sum(1 for j in jobs if j.arm)} runs in "
          f"{len(spec['arms'])} arms, {len(jobs) - sum(1 for j in jobs if j.arm)} prerequisites)"
          f"{', quick tier' if args.quick else ''}; results in {args.out}", flush=True)
    if args.dry_run:
        for j in jobs:
            print(f"  {j.key}: {' '.join(j.command)}{'  (done)' if j.done() else ''}")
        return 0
    if spec.get("tier") == "paper" and not args.quick:
        try:
            estimate(jobs, args)
        except SpecError as e:
            print(f"reproduce.py: error: {e}", file=sys.stderr)
            return 1
        if not args.yes:
            print("a paper-scale spec: rerun with --yes to start it")
            return 0
    os.makedirs(args.out, exist_ok=True)
    shutil.copyfile(args.spec, os.path.join(args.out, "spec.yaml"))
    with open(os.path.join(args.out, "harness.json"), "w") as f:
        json.dump({"spec": os.path.relpath(spec["_path"], ROOT), "quick": args.quick,
                   "prereq_dir": args.prereq_dir, "data_roots": args.data_root}, f, indent=1)
    provenance = {"git_revision": git_revision(), "bin_revision": bin_revision(args.bin)}
    ok = run_jobs(jobs, provenance, os.path.dirname(args.out) or ".")
    report(spec, args.out, args.quick)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
