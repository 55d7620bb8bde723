// The stop signals, SIGINT and SIGTERM. Once a run has started they ask it to stop: it saves at
// the next optimizer step and exits 128 + the signal (train/trainer.h). Before that, as while a
// program reads its config or scans a data folder, they end the process as by default.
//
// No handler may run on a thread that computes. oneDNN 2.6's JIT f32 GEMM kernels
// (jit_avx_gemm_f32 on AVX2, jit_avx512_common_gemm_f32 on AVX-512) point the stack pointer into
// a heap buffer while they run (oneDNN issue #4845, fixed in 3.11.2), so the kernel writes a
// handler's frame into the heap below that buffer, and glibc aborts later ("free(): invalid
// pointer", "corrupted size vs. prev_size"), or nothing notices. So the signals are blocked in
// every thread, and one thread that computes nothing takes them with sigwait.
#pragma once

namespace scion::train {

// Blocks SIGINT and SIGTERM in the calling thread, and so in every thread it creates afterwards,
// and in its OpenMP workers (cpu::on_every_thread), which compute, even those an earlier parallel
// region created; and starts (once per process) the thread that takes them. Call it first in
// main: another thread created earlier still has them unblocked, and when the kernel delivers one
// to it, it acts there (by default, or through the handler defer_stop_signals installs, the old
// way, unsafe on a thread inside a GEMM).
void take_stop_signals();

// From now on a stop signal is recorded for interrupted() instead of ending the process. Calls
// take_stop_signals (for programs that did not) and installs a handler that records, for threads
// created before it. run_training calls it when the run starts.
void defer_stop_signals();

// The stop signal received since defer_stop_signals, or 0: a training run stops at the next step,
// a program running several stages stops between them instead of starting the next.
int interrupted();

// Forgets a received signal (for tests that send one).
void clear_interrupted();

}  // namespace scion::train
