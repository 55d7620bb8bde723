// OpenMP helpers. oneDNN (Debian's build) runs on the same OpenMP runtime, so set_num_threads
// governs both. parallel_for splits [begin, end) into one contiguous chunk per thread, so the
// result of any chunked computation is independent of scheduling.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstdint>

namespace scion::cpu {

inline int num_threads() {
  return omp_get_max_threads();
}
inline void set_num_threads(int n) {
  omp_set_num_threads(n > 0 ? n : omp_get_num_procs());
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
