// A CUDA block's threads on the host, for the tests that run kernel bodies on emulated threads:
// each GPU thread is a fiber (its own stack, switched to and from on one host thread, ucontext),
// and a barrier (__syncthreads, or a warp's collective operation) lets the other fibers run until
// every one has arrived. Fibers, not host threads: the emulated tests used a host thread per GPU
// thread, with barriers that yielded, and hundreds of those threads on 2 cores ran 3 to 5 times
// slower as soon as another test ran beside them (ctest -j2), most of it in the kernel.
//
// The fibers are resumed in index order, each until it waits at a barrier or returns, and in the
// reverse order every other run, so a thread that reads shared memory before the barrier that
// should order it reads it unwritten in one of two consecutive runs, whichever thread writes it.
#pragma once

#include <cstdint>
#include <functional>

namespace scion::test {

// f(t) for t = 0 .. threads - 1, each on its own fiber, all returned before it returns. An
// exception from f is rethrown here (the other fibers are abandoned where they wait); so is a
// deadlock: every fiber not yet returned waiting at a barrier that cannot complete.
void on_fibers(int threads, const std::function<void(int)>& f);

// A barrier for a fixed number of the fibers of one on_fibers call, reusable; the last fiber to
// arrive opens it for all. Only for fibers: a thread outside on_fibers that waits gets a
// std::logic_error.
class Barrier {
 public:
  explicit Barrier(int n) : n_(n) {}
  void wait();

 private:
  const int n_;
  int arrived_ = 0;
  uint64_t generation_ = 0;
};

}  // namespace scion::test
