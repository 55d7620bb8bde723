// A barrier for a fixed number of host threads, reusable: the tests that run CUDA kernel bodies
// on the host (a host thread per GPU thread, on_host_threads below) use it for a block's
// __syncthreads and for a warp's collective operations. The last thread to arrive starts the next
// generation; the others yield until it has.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <mutex>
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

// The host threads that stand for a block's GPU threads, kept from block to block: created once
// (as many as the largest block so far), each runs the block's function for its own index. A
// thread created and joined per GPU thread of every block made qemu-user (`make test-arm64`) grow
// by gigabytes, as it keeps memory per thread it has created: the column sums test reached 6 GB
// in 33 s there (29 MB natively), and the emulated group was killed for memory at 24 GB.
class HostThreads {
 public:
  static HostThreads& instance() {
    static HostThreads pool;
    return pool;
  }
  // f(t) for t = 0 .. threads - 1, each on its own host thread, all finished before it returns.
  void run(int threads, const std::function<void(int)>& f) {
    std::unique_lock<std::mutex> lock(mu_);
    while (int(workers_.size()) < threads) {
      const int index = int(workers_.size());
      workers_.emplace_back([this, index, seen = epoch_]() mutable { work(index, seen); });
    }
    job_ = &f;
    active_ = threads;
    remaining_ = threads;
    ++epoch_;
    start_.notify_all();
    done_.wait(lock, [this] { return remaining_ == 0; });
    job_ = nullptr;
  }
  ~HostThreads() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    start_.notify_all();
    for (std::thread& t : workers_) t.join();
  }

 private:
  void work(int index, uint64_t seen) {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      start_.wait(lock, [&] { return stop_ || epoch_ != seen; });
      if (stop_) return;
      seen = epoch_;
      if (index >= active_) continue;
      const std::function<void(int)>& f = *job_;
      lock.unlock();
      f(index);
      lock.lock();
      if (--remaining_ == 0) done_.notify_one();
    }
  }

  std::mutex mu_;
  std::condition_variable start_, done_;
  std::vector<std::thread> workers_;
  const std::function<void(int)>* job_ = nullptr;
  int active_ = 0, remaining_ = 0;
  uint64_t epoch_ = 0;
  bool stop_ = false;
};

// f(t) for t = 0 .. threads - 1, each on its own host thread (one per GPU thread of a block),
// all finished before it returns.
template <class F>
void on_host_threads(int threads, const F& f) {
  HostThreads::instance().run(threads, std::function<void(int)>(std::cref(f)));
}

}  // namespace scion::test
