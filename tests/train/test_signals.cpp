// Stop signals taken on a thread of their own (train/signals.h): SIGTERMs sent every 50 us while
// oneDNN's JIT f32 GEMM runs (its stack pointer in a heap buffer once K outgrows the kernel's stack
// workspace) are recorded, and the heap stays intact. With a handler running on the computing
// threads, as before, this process aborted in glibc within the first GEMMs.
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <thread>
#include <vector>

#include "core/backend.h"
#include "tests/support.h"
#include "train/signals.h"

using namespace scion;

namespace {

// Undoes take_stop_signals for the tests that run after this one in the same process.
struct RestoreSignals {
  ~RestoreSignals() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
    train::clear_interrupted();
    set_num_threads(0);
  }
};

}  // namespace

TEST_CASE("stop signals during oneDNN's JIT GEMM are recorded and leave the heap intact",
          "[signals]") {
  RestoreSignals restore;
  train::take_stop_signals();
  const Tensor a = full({192, 1024}, 0.5), b = full({768, 1024}, 0.25);
  for (int threads : {1, 2}) {
    INFO(threads << " threads");
    set_num_threads(threads);
    train::clear_interrupted();
    std::atomic<bool> done{false};
    std::atomic<long> sent{0};
    std::thread sender([&] {
      while (!done) {
        kill(getpid(), SIGTERM);
        ++sent;
        usleep(50);
      }
    });
    for (int i = 0; i < 60; ++i) {
      // (192 x 1024) (1024 x 768), K = 1024, beside small blocks of other heap traffic.
      std::vector<char> traffic(size_t(1000 + i % 7 * 100));
      const Tensor c = matmul(a, b.t());
      REQUIRE(c.to_vector()[size_t(i * 997 % (192 * 768))] == 128.0);
    }
    done = true;
    sender.join();
    CHECK(sent > 60);
    CHECK(train::interrupted() == SIGTERM);
  }
}
