#!/usr/bin/env python3
"""Runs every libFuzzer target of tests/fuzz for a set time and writes a report (stdlib only).

usage: run_fuzzers.py BUILD_DIR [--seconds 600] [--jobs 2] [--only NAME ...]

Each target starts from BUILD_DIR/fuzz/seeds/<target> (make_corpus.py) plus the saved regressions
and keeps what it learns in BUILD_DIR/fuzz/corpus/<target>, so a later run continues from there.
Crashing inputs land in BUILD_DIR/fuzz/crashes/<target>/; copy each into
tests/fuzz/regressions/<target>/ with its fix. The report (BUILD_DIR/fuzz/report.md) lists per
target the seconds run, executions, executions/s, coverage and findings; the exit status is 1 when
anything was found.
"""
import argparse
import concurrent.futures
import re
import subprocess
import sys
import time
from pathlib import Path

TARGETS = ["safetensors", "config", "cifar", "idx", "tiny_imagenet", "image", "stl10", "mat"]
ROOT = Path(__file__).resolve().parents[2]


def run(build, target, seconds):
    fuzz = build / "fuzz"
    corpus, seeds = fuzz / "corpus" / target, fuzz / "seeds" / target
    crashes, logs = fuzz / "crashes" / target, fuzz / "logs"
    for d in (corpus, crashes, logs):
        d.mkdir(parents=True, exist_ok=True)
    log = logs / f"{target}.log"
    cmd = [str(build / "bin" / f"fuzz_{target}"), str(corpus), str(seeds),
           str(ROOT / "tests" / "fuzz" / "regressions" / target),
           f"-max_total_time={seconds}", "-print_final_stats=1", "-rss_limit_mb=4096",
           "-timeout=30", f"-artifact_prefix={crashes}/"]
    start = time.time()
    with open(log, "w") as out:
        # -fork keeps going after a finding so one bug does not hide the next.
        rc = subprocess.call(cmd + ["-fork=1", "-ignore_crashes=1", "-ignore_timeouts=1",
                                    "-ignore_ooms=1"], stdout=out, stderr=subprocess.STDOUT)
    text = log.read_text(errors="replace")
    execs = re.findall(r"stat::number_of_executed_units:\s*(\d+)", text)
    execs_fork = re.findall(r"#(\d+): cov: (\d+) ft: (\d+) corp: (\d+)", text)
    total = sum(int(e) for e in execs) if execs else (int(execs_fork[-1][0]) if execs_fork else 0)
    cov = execs_fork[-1][1] if execs_fork else "?"
    found = sorted(p.name for p in crashes.iterdir())
    return dict(target=target, seconds=round(time.time() - start), execs=total, cov=cov,
                corpus=len(list(corpus.iterdir())), found=found, rc=rc, log=str(log))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build", type=Path)
    ap.add_argument("--seconds", type=int, default=600)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--only", nargs="*", default=TARGETS)
    args = ap.parse_args()
    build = args.build.resolve()
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda t: run(build, t, args.seconds), args.only))
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                if l.startswith("model name")), "unknown CPU")
    lines = [f"# Fuzzing report ({cpu}, {args.jobs} at a time)", "",
             "| target | seconds | executions | exec/s | coverage (edges) | corpus | findings |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for r in results:
        lines.append(f"| {r['target']} | {r['seconds']} | {r['execs']} | "
                     f"{r['execs'] // max(r['seconds'], 1)} | {r['cov']} | {r['corpus']} | "
                     f"{', '.join(r['found']) or 'none'} |")
    report = build / "fuzz" / "report.md"
    report.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"\nreport: {report}; logs: {build / 'fuzz' / 'logs'}")
    sys.exit(1 if any(r["found"] for r in results) else 0)


if __name__ == "__main__":
    main()
