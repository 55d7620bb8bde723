#!/usr/bin/env python3
"""The reproduction harness end to end at a tiny size (ctest "harness: ..."): a spec with a trained
and an untrained teacher and three arms runs, writes results.md, results.json and two PNG plots,
skips everything on a rerun, reuses identical finished runs for another results folder, re-renders with --report, and rejects bad specs (unknown key, unknown
config key, missing prerequisite, cycle) with exit status 2 before anything runs.

    python3 tests/experiments/test_reproduce.py [BUILD_BIN_DIR]
"""
import json
import os
import re
import subprocess
import sys
import tempfile

import scratch  # tests/experiments/scratch.py, beside this file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUNNER = os.path.join(ROOT, "experiments", "reproduce.py")
SPEC = os.path.join(ROOT, "tests", "experiments", "tiny_spec.yaml")
failures = []


def check(cond, what):
    print(("ok    " if cond else "FAIL  ") + what, flush=True)
    if not cond:
        failures.append(what)


def run(*args):
    r = subprocess.run([sys.executable, RUNNER, *args], capture_output=True, text=True, cwd=ROOT)
    return r.returncode, r.stdout + r.stderr


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build", "bin")
    if os.environ.get("SCION_CAPPED_RERUN"):
        # A rerun under an ISA cap: skipped (77, as tests/main.cpp) where the cap changes no kernel.
        info = subprocess.run([os.path.join(binary, "scion"), "info"], capture_output=True,
                              text=True)
        if "changes no kernel on this CPU" in info.stdout:
            print("skipped: the ISA cap changes no kernel on this CPU (a rerun of the same test)")
            return 77
    data = os.path.join(ROOT, "..", "shared", "data", "cifar10-jpg")
    if not os.path.isdir(data):
        print(f"FAIL  the test data {data} is missing")
        return 1
    tmp = tempfile.mkdtemp(prefix="scion_harness_")
    out, pre = os.path.join(tmp, "out"), os.path.join(tmp, "prereq")
    common = ["--out", out, "--prereq-dir", pre, "--bin", binary]

    status, text = run(SPEC, "--quick", *common)
    check(status == 0, f"the tiny spec runs (exit {status})\n{text[-3000:]}")
    check("7 steps (5 runs in 3 arms, 2 prerequisites)" in text, "7 steps: 2 prerequisites and 5 runs")
    for f in ("results.md", "results.json", "curves.png", "bars.png"):
        check(os.path.exists(os.path.join(out, f)), f"{f} written")
    for f in ("curves.png", "bars.png"):
        with open(os.path.join(out, f), "rb") as fh:
            check(fh.read(8) == b"\x89PNG\r\n\x1a\n", f"{f} is a PNG")
    res = json.load(open(os.path.join(out, "results.json")))
    arms = res["arms"]
    check(arms["random"]["seeds"] == [0, 1] and arms["wsel"]["seeds"] == [0, 1]
          and arms["control"]["seeds"] == [0], "seeds per arm as the spec says (quick: first 2)")
    check(all(arms[a]["epochs"] == 2 for a in arms), "quick overrides applied (2 epochs)")
    check("delta_final" in arms["wsel"] and "delta_final" not in arms["random"],
          "deltas against the baseline")
    check(set(arms["wsel"]["epochs_to_baseline_final"]) == {0, 1} or
          set(arms["wsel"]["epochs_to_baseline_final"]) == {"0", "1"}, "epochs to baseline per seed")
    check("teacher" in res["prerequisites"], "the teacher's accuracy is reported")
    md = open(os.path.join(out, "results.md")).read()
    check("| weight selection | 0,1 |" in md and "Δ final vs baseline" in md, "results.md table")
    run_json = json.load(open(os.path.join(out, "runs", "wsel", "seed1", "run.json")))
    built = subprocess.run([os.path.join(binary, "train"), "--version"], capture_output=True,
                           text=True).stdout.split()[-1]
    check(re.fullmatch(r"[0-9a-f]{40}(\+dirty)?|unknown", run_json["bin_revision"]) and
          run_json["bin_revision"] == built, "run.json records the revision the binaries were built from")
    check(run_json["exit_status"] == 0 and run_json["git_revision"] and
          run_json["wall_seconds"] >= 0 and run_json["command"][0].endswith("train"),
          "run.json records command, git revision and wall time")

    status, text = run(SPEC, "--quick", *common)
    check(status == 0 and "7 already done, 0 to run" in text and "[1/7]" not in text,
          "a rerun skips every finished step")

    status, text = run(SPEC, "--quick", "--out", os.path.join(tmp, "out2"), "--prereq-dir", pre,
                       "--bin", binary)
    check(status == 0 and text.count("; reused") == 5,
          "a second spec's identical runs reuse the finished ones")

    os.remove(os.path.join(out, "results.md"))
    status, text = run("--report", out)
    check(status == 0 and os.path.exists(os.path.join(out, "results.md")), "--report re-renders")

    def bad(spec_text, expect, name):
        path = os.path.join(tmp, name + ".yaml")
        with open(path, "w") as f:
            f.write(spec_text)
        o = os.path.join(tmp, "bad_" + name)
        status, text = run(path, "--quick", "--out", o, "--prereq-dir", o + "_pre", "--bin", binary)
        check(status == 2 and expect in text, f"{name}: exit 2 naming '{expect}' (got {status}: "
              f"{text.strip()[-300:]})")
        check(not os.path.exists(o) and not os.path.exists(o + "_pre"),
              f"{name}: nothing written or run")

    spec = open(SPEC).read()
    bad(spec.replace("  random: {set:", "  random: {sett:"), "sett", "unknown_arm_key")
    bad(spec.replace("init.type: trunc_normal}", "init.tipe: trunc_normal}"), "init.tipe",
        "unknown_config_key")
    bad(spec.replace("${teacher}", "${teachr}"), "teachr", "missing_prerequisite")
    bad(spec.replace("    train: tests/experiments/tiny_base.yaml",
                     "    needs: [untrained]\n    train: tests/experiments/tiny_base.yaml")
        .replace("  untrained:\n", "  untrained:\n    needs: [teacher]\n"), "cycle", "cycle")
    print(f"{len(failures)} failure(s)" if failures else "all harness checks passed")
    return scratch.finish(tmp, failures)


if __name__ == "__main__":
    sys.exit(main())
