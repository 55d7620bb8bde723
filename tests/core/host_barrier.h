// A barrier for a fixed number of host threads, reusable: the tests that run CUDA kernel bodies
// on the host (a host thread per GPU thread, on_host_threads below) use it for a block's
// __syncthreads and for a warp's collective operations. The last thread to arrive starts the next
// generation; the others yield until it has.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

namespace scion::test {

class Barrier {
 public:
  explicit Barrier(int n) : n_(n) {}
  void wait() {
    const uint64_t generation = generation_.load(std::memory_order_acquire);
    if (arrived_.fetch_add(1, std::memory_order_acq_rel) + 1 == n_) {
      arrived_.store(0, std::memory_order_relaxed);
      generation_.store(generation + 1, std::memory_order_release);
      return;
    }
    // A thread that never arrives (a collective some lanes skip: divergent shuffles) would hang
    // the test; after a minute it aborts, naming the barrier's size, instead.
    const auto start = std::chrono::steady_clock::now();
    for (uint64_t spins = 0; generation_.load(std::memory_order_acquire) == generation; ++spins) {
      std::this_thread::yield();
      if (spins % 4096 == 0 && std::chrono::steady_clock::now() - start > std::chrono::minutes(1)) {
        std::fprintf(stderr, "host barrier of %d threads: a thread never arrived in a minute\n",
                     n_);
        std::abort();
      }
    }
  }

 private:
  const int n_;
  std::atomic<int> arrived_{0};
  std::atomic<uint64_t> generation_{0};
};

// f(t) for t = 0 .. threads - 1, each on its own host thread (one per GPU thread of a block),
// all joined before it returns.
template <class F>
void on_host_threads(int threads, const F& f) {
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) pool.emplace_back([&f, t] { f(t); });
  for (std::thread& t : pool) t.join();
}

}  // namespace scion::test
