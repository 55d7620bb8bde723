// OpenMP helpers. oneDNN (Debian's build) runs on the same OpenMP runtime, so set_num_threads
// governs both. parallel_for splits [begin, end) into one contiguous chunk per thread, so the
// result of any chunked computation is independent of scheduling.
//
// Threads that share their cores with another busy process wait at every barrier for a partner the
// scheduler has parked (a whole time slice, each of hundreds of parallel regions per batch), so a
// job beside another one slows far more than the cores it lost. adapt_threads(), called by the
// trainer between batches, makes the count follow the load: it reads how much CPU time other
// processes took on our cores and uses only the cores they leave free (at least one).
// SCION_ADAPTIVE_THREADS=0 keeps all cores instead; an explicit count is never changed.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstdint>

namespace scion::cpu {

inline int num_threads() {
  return omp_get_max_threads();
}

// n > 0: exactly n threads; 0: the cores this process may run on, fewer while other processes keep
// some of them busy (see adapt_threads; not with SCION_ADAPTIVE_THREADS=0).
void set_num_threads(int n);

// Whether the thread count follows the load (set_num_threads(0), unless SCION_ADAPTIVE_THREADS=0
// is in the environment).
bool adaptive_threads();

// Re-reads the load at most every half second and sets the thread count to the cores other
// processes leave free. Call it only between operations (a kernel sizes per-thread buffers from
// num_threads() before its parallel_for), from the thread that called set_num_threads.
void adapt_threads();

// The decision, apart from measuring: `others` is the CPU time other processes used on our cores
// over the window, in cores (0.0 to `cores`); returns the thread count to use, from 1 to `max`.
// A core counts as free when less than 0.35 of it was taken (stray system work is not a job).
int threads_for_load(double others, int cores, int max);

// The most threads a parallel region of this process may have used: the largest count
// set_num_threads has set, the cores, or the OpenMP default (OMP_NUM_THREADS), whichever is most.
int largest_thread_count();

// Whether this process is a child forked from one that ran this code (fork copies only the
// calling thread; libgomp's pool comes along without its threads, and the next parallel region
// hangs).
bool forked_child();

// Calls f once on the calling thread and once on each of its OpenMP workers (libgomp keeps them
// between regions, so these are the threads every later region of the calling thread runs on;
// largest_thread_count of them). For per-thread state such as the signal mask, which a worker
// otherwise keeps from when it was created. In a forked child, where the calling thread is the
// only one, on it alone. Not inside a parallel region.
template <class F>
void on_every_thread(const F& f) {
  if (forked_child()) {
    f();
    return;
  }
#pragma omp parallel num_threads(largest_thread_count())
  f();
}

// Calls f(chunk_begin, chunk_end) on each thread; runs inline when the range is below `grain`.
template <class F>
void parallel_for(int64_t begin, int64_t end, int64_t grain, const F& f) {
  int64_t n = end - begin;
  if (n <= 0) return;
  if (n <= grain || omp_get_max_threads() == 1 || omp_in_parallel()) {
    f(begin, end);
    return;
  }
  int64_t max_chunks = std::max<int64_t>(1, n / std::max<int64_t>(grain, 1));
#pragma omp parallel num_threads(int(std::min <int64_t>(omp_get_max_threads(), max_chunks)))
  {
    int64_t nt = omp_get_num_threads(), tid = omp_get_thread_num();
    int64_t b = begin + n * tid / nt, e = begin + n * (tid + 1) / nt;
    if (b < e) f(b, e);
  }
}

}  // namespace scion::cpu
