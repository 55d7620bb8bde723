#!/bin/bash
# The stress that found the heap corruption of 2026-12-06 (README, "Stop signals, and the heap
# corruption they caused"): a SIGTERM taken by a handler on a thread inside oneDNN's JIT f32 GEMM,
# whose stack pointer then points into a heap buffer. The load changes made it likelier (the
# thread count that follows the load drops to 1, and the one thread runs every GEMM); the signal
# was the cause. Since the fix no handler runs on a computing thread (train/signals.h), and every
# round of both modes should exit 143; tests/train/test_signals.cpp checks the same directly.
#
# Usage: experiments/stress/load_changes.sh TRAIN_BINARY RUN_DIR ROUNDS
#   RUN_DIR holds a run's config.yaml (threads: 0) and last.safetensors (a copy: each round
#   restores last.safetensors from RUN_DIR/last.safetensors.orig, made on the first call).
# Each round alternates the two thread modes: `adaptive` (the default: the count follows the load)
# and `fixed` (SCION_ADAPTIVE_THREADS=0). A round resumes the run, lets it train 12 s, then six
# times runs a CPU hog for 2 s and stops the run for 0.5 s (SIGSTOP/SIGCONT), then asks it to
# stop (SIGTERM). A clean round exits 143 after saving; a corrupted heap aborts (134) with glibc's
# message. One line per round: mode, round, exit status, the run's last non-progress line.
set -u
train=$1 dir=$2 rounds=$3
[ -f "$dir/last.safetensors.orig" ] || cp "$dir/last.safetensors" "$dir/last.safetensors.orig"
for round in $(seq "$rounds"); do
  for mode in adaptive fixed; do
    cp "$dir/last.safetensors.orig" "$dir/last.safetensors"
    unset SCION_ADAPTIVE_THREADS
    [ $mode = fixed ] && export SCION_ADAPTIVE_THREADS=0
    log="$dir/stress_$mode$round.log"
    nice -n 10 "$train" --config "$dir/config.yaml" > "$log" 2>&1 &
    pid=$!
    sleep 12
    for _ in 1 2 3 4 5 6; do
      timeout 2 sh -c 'while :; do :; done'
      kill -STOP $pid 2>/dev/null; sleep 0.5; kill -CONT $pid 2>/dev/null
      sleep 2
    done
    kill -TERM $pid 2>/dev/null
    wait $pid
    rc=$?
    last=$(tr '\r' '\n' < "$log" | grep -v '^epoch.*step\|^train\|^resum\|^$' | tail -1)
    echo "$mode round $round exit $rc $last"
  done
done
