#!/usr/bin/env python3
"""The reproduction harness against hostile and careless input (ctest "harness: hostile ..."):
names that are paths, wrong types, YAML alias bombs and recursive aliases, a FIFO as the spec,
bad prerequisite flags, damaged results under --report, a results folder another process holds,
and a signal mid-run. Every case ends at once with exit status 2 (130/143 for a signal) naming the
file and key, no Python traceback, and nothing written outside the folders it was given (nothing
at all when the spec is bad).

    python3 tests/experiments/test_reproduce_hostile.py [BUILD_BIN_DIR] [REPRODUCE_PY]

REPRODUCE_PY defaults to this checkout's experiments/reproduce.py (another checkout's shows
which of these cases it fails).
"""
import fcntl
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import scratch  # tests/experiments/scratch.py, beside this file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SPEC = os.path.join(ROOT, "tests", "experiments", "tiny_spec.yaml")
failures = []


def check(cond, what):
    print(("ok    " if cond else "FAIL  ") + what, flush=True)
    if not cond:
        failures.append(what)


def listing(folder):
    """Every path under `folder` (to see what a command wrote)."""
    out = set()
    for d, dirs, files in os.walk(folder):
        for n in dirs + files:
            out.add(os.path.relpath(os.path.join(d, n), folder))
    return out


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build", "bin")
    runner = sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, "experiments", "reproduce.py")
    tmp = tempfile.mkdtemp(prefix="scion_hostile_")
    # Every case runs with --out and --prereq-dir three levels below `tmp`, so that a name with
    # ../ that escaped would land inside `tmp`, where the listing sees it.
    work = os.path.join(tmp, "a", "b", "c")
    os.makedirs(work)

    def run(args, timeout=120, cwd=ROOT):
        try:
            r = subprocess.run([sys.executable, runner, *args], capture_output=True, text=True,
                               cwd=cwd, timeout=timeout)
            return r.returncode, r.stdout + r.stderr
        except subprocess.TimeoutExpired:
            return None, f"no answer within {timeout} s (a hang)"

    spec_text = open(SPEC).read()

    def bad(name, text, expect, timeout=60):
        """A bad spec: exit 2 at once, the message naming `expect`, no traceback, nothing
        written anywhere under tmp."""
        path = os.path.join(tmp, f"{name}.yaml")
        if text is not None:
            with open(path, "w") as f:
                f.write(text)
        before = listing(tmp)
        out, pre = os.path.join(work, "out_" + name), os.path.join(work, "pre_" + name)
        start = time.time()
        status, log = run([path, "--quick", "--out", out, "--prereq-dir", pre, "--bin", binary],
                          timeout=timeout)
        took = time.time() - start
        check(status == 2 and all(e in log for e in expect) and "Traceback" not in log,
              f"{name}: exit 2 naming {expect} in {took:.1f} s (got {status}: {log.strip()[-400:]})")
        written = listing(tmp) - before
        check(not written, f"{name}: nothing written (found {sorted(written)[:5]})")

    # 1. Names that are paths.
    bad("escaped_arm", spec_text.replace("  random: {set:", "  ../../../../escaped_arm: {set:")
        .replace("baseline: random", "baseline: ../../../../escaped_arm"),
        ["arms", "../../../../escaped_arm", "not a valid arm name"])
    bad("escaped_prereq", spec_text.replace("  untrained:\n", "  ../../../escaped_prereq:\n")
        .replace("${untrained}", "${teacher}"), ["prerequisites", "escaped_prereq"])
    bad("slash_arm", spec_text.replace("  random: {set:", "  wide/xavier: {set:")
        .replace("baseline: random", "baseline: wide/xavier"), ["wide/xavier", "arm name"])
    bad("path_seed", spec_text.replace("seeds: [0, 1]", "seeds: [0, 'x/../../../../seed']"),
        ["seeds", "not an integer"])
    bad("negative_seed", spec_text.replace("seeds: [0, 1]", "seeds: [-1]"), ["seeds", "-1"])
    bad("spec_name", "name: ../../up\n" + spec_text.replace("name: tiny\n", ""),
        ["name", "not a valid spec name"])
    bad("data_root_name", spec_text.replace("tier: cpu", "tier: cpu\ndata: {'../x': /tmp}"),
        ["data", "../x"])
    # 2. Wrong types, each before anything runs.
    bad("arms_number", spec_text[:spec_text.index("arms:")] + "arms: 5\n", ["arms", "a number (5)"])
    bad("base_number", spec_text.replace("base: tests/experiments/tiny_base.yaml", "base: 5"),
        ["base", "a number (5)"])
    bad("arm_set_number", spec_text.replace("random: {set: {init.type: trunc_normal}}",
                                            "random: {set: 5}"), ["arms.random.set", "a number"])
    bad("seeds_number", spec_text.replace("seeds: [0, 1]", "seeds: 3"), ["seeds", "a number (3)"])
    bad("numeric_arm", spec_text.replace("  random: {set:", "  1: {set:")
        .replace("baseline: random", "baseline: 1"), ["arms", "a number (1)"])
    bad("epochs_at_text", spec_text.replace("epochs_at: [1]", 'epochs_at: ["5"]'),
        ["epochs_at", "text ('5')"])
    bad("epochs_at_zero", spec_text.replace("epochs_at: [1]", "epochs_at: [0, -1]"),
        ["epochs_at", "a number (0)"])
    bad("spec_list", "- 1\n- 2\n", ["expected a mapping"])
    bad("set_seed", spec_text.replace("set: {data.root:", "set: {seed: 3, data.root:"),
        ["set", "seed", "set by the harness"])
    # 3. Bad flags of a prerequisite: caught before the teacher trains.
    bad("select_flag", spec_text.replace(
        "  untrained:\n", "  sel:\n    select: {teacher: \"${teacher}\", model: convnext_atto, "
        "layers: sideways}\n  untrained:\n"), ["prerequisites.sel.select", "sideways"])
    bad("grow_noise", spec_text.replace(
        "  untrained:\n", "  g:\n    grow: {from: \"${teacher}\", from_model: convnext_atto, "
        "model: convnext_atto, noise: -1}\n  untrained:\n"), ["prerequisites.g.grow.noise"])
    bad("init_model", spec_text.replace("init: {model: convnext_atto",
                                        "init: {model: convnext_nope"),
        ["prerequisites.untrained.init", "convnext_nope"])
    # 4. YAML that would hang or explode.
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(9))
    bad("alias_bomb", bomb + spec_text, ["more than", "values"], timeout=30)
    bad("recursive_alias", spec_text.replace("set: {data.root: \"${data.cifar10}\"}",
                                             "set: &loop {data.root: *loop}"),
        ["recursive"], timeout=30)
    fifo = os.path.join(tmp, "fifo.yaml")
    os.mkfifo(fifo)
    status, log = run([fifo, "--quick", "--out", os.path.join(work, "o_fifo"), "--bin", binary],
                      timeout=30)
    check(status == 2 and "a FIFO" in log and "Traceback" not in log,
          f"a FIFO as the spec: exit 2 at once ({status}: {log.strip()[-300:]})")
    bad("binary_spec", "\x00\x01\x02" * 10, ["binary", "NUL"])
    base_list = os.path.join(tmp, "base_list.yaml")
    with open(base_list, "w") as f:
        f.write("- 1\n- 2\n")
    bad("base_is_list", spec_text.replace("base: tests/experiments/tiny_base.yaml",
                                       f"base: {base_list}"), ["base_list.yaml", "mapping"])
    base_bin = os.path.join(tmp, "base_bin.yaml")
    with open(base_bin, "wb") as f:
        f.write(bytes(range(256)))
    bad("base_is_binary", spec_text.replace("base: tests/experiments/tiny_base.yaml",
                                         f"base: {base_bin}"), ["base_bin.yaml"])
    status, log = run([SPEC, "--quick", "--out", base_list, "--bin", binary])
    check(status == 2 and "--out" in log and "not a folder" in log,
          f"--out naming a file: exit 2 ({status}: {log.strip()[-200:]})")

    # 5. --report over damaged results: exit 2 naming the file.
    rep = os.path.join(work, "report")
    seed_dir = os.path.join(rep, "runs", "random", "seed0")
    os.makedirs(seed_dir)
    with open(os.path.join(rep, "spec.yaml"), "w") as f:
        f.write(spec_text)
    with open(os.path.join(rep, "harness.json"), "w") as f:
        json.dump({"quick": True}, f)
    with open(os.path.join(seed_dir, "summary.json"), "w") as f:
        json.dump({"best_val_acc1": 10.0, "final_val_acc1": 10.0, "epochs": 2}, f)
    good = '{"epoch": 1, "val_acc1": 9.5}\n{"epoch": 2, "val_acc1": 10.0}\n'
    metrics = os.path.join(seed_dir, "metrics.jsonl")
    for name, text, expect in (("truncated", good[:-12], "metrics.jsonl:2"),
                               ("empty", "", "empty beside"),
                               ("missing", None, "missing beside"),
                               ("no val_acc1", '{"epoch": 1}\n', "val_acc1")):
        if os.path.exists(metrics):
            os.remove(metrics)
        if text is not None:
            with open(metrics, "w") as f:
                f.write(text)
        status, log = run(["--report", rep])
        check(status == 2 and expect in log and "Traceback" not in log,
              f"--report over a {name} metrics.jsonl: exit 2 naming it ({status}: "
              f"{log.strip()[-300:]})")
    with open(metrics, "w") as f:
        f.write(good)
    status, log = run(["--report", rep])
    check(status == 0 and os.path.exists(os.path.join(rep, "results.md")),
          f"--report over intact results works ({status}: {log.strip()[-200:]})")
    status, log = run(["--report", os.path.join(work, "nothing_here")])
    check(status == 2 and "not a folder" in log, f"--report of a missing folder: exit 2 ({log[-200:]})")

    # 6. A results folder held by another process: exit 2 naming its pid, nothing run.
    held = os.path.join(work, "held")
    os.makedirs(held)
    fd = os.open(os.path.join(held, ".lock"), os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.pwrite(fd, f"{os.getpid()} holder\n".encode(), 0)
    pre = os.path.join(work, "pre_held")
    status, log = run([SPEC, "--quick", "--out", held, "--prereq-dir", pre, "--bin", binary])
    check(status == 2 and f"pid {os.getpid()}" in log and not os.path.exists(pre),
          f"a held results folder: exit 2 naming the holder, nothing run ({status}: "
          f"{log.strip()[-300:]})")
    with open(os.path.join(held, "spec.yaml"), "w") as f:
        f.write(spec_text)
    status, log = run(["--report", held])
    check(status == 2 and f"pid {os.getpid()}" in log and
          not os.path.exists(os.path.join(held, "results.md")),
          f"--report of a held folder: exit 2 naming the holder ({status}: {log.strip()[-200:]})")
    os.close(fd)

    # 7. A signal mid-run: the step saves, the harness exits 143 without a traceback, a rerun
    # finishes the spec.
    out, pre = os.path.join(work, "sig_out"), os.path.join(work, "sig_pre")
    log_path = os.path.join(tmp, "sig.log")
    with open(log_path, "w") as log:
        p = subprocess.Popen([sys.executable, runner, SPEC, "--quick", "--out", out,
                              "--prereq-dir", pre, "--bin", binary], stdout=log,
                             stderr=subprocess.STDOUT, cwd=ROOT)
        deadline = time.time() + 120
        while time.time() < deadline and "[3/7]" not in open(log_path).read():
            time.sleep(0.02)
        time.sleep(0.3)
        p.send_signal(signal.SIGTERM)
        status = p.wait(timeout=120)
    text = open(log_path).read()
    check(status == 143 and "Traceback" not in text and "again to continue" in text,
          f"SIGTERM mid-run: exit 143, no traceback ({status}: {text.strip()[-300:]})")
    status, log = run([SPEC, "--quick", "--out", out, "--prereq-dir", pre, "--bin", binary])
    check(status == 0 and os.path.exists(os.path.join(out, "results.md")),
          f"the rerun finishes the spec ({status}: {log.strip()[-300:]})")

    print(f"{len(failures)} failure(s)" if failures else "all hostile-input checks passed")
    return scratch.finish(tmp, failures)


if __name__ == "__main__":
    sys.exit(main())
