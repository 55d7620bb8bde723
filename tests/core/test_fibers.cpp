// The fibers that stand for a CUDA block's threads in the emulated kernel tests (fibers.h): their
// barriers order shared memory as __syncthreads does, a missing barrier shows in one of two runs
// whichever way it reads, and a deadlock or an exception ends the run with an error, not a hang.
#include <cmath>
#include <stdexcept>
#include <vector>

#include "tests/core/fibers.h"
#include "tests/support.h"

using scion::test::Barrier;
using scion::test::on_fibers;

TEST_CASE("emulated threads: block and warp barriers order every write before the reads after them",
          "[cuda-host]") {
  constexpr int n = 256, rounds = 5;
  std::vector<int> slot(n, -1), warp_slot(n, -1);
  std::vector<int> wrong(n, 0);
  Barrier block(n);
  std::vector<Barrier> warps(n / 32, Barrier(32));
  for (int run = 0; run < 2; ++run)  // one run in each order
    on_fibers(n, [&](int t) {
      for (int r = 0; r < rounds; ++r) {
        const int value = 1000 * (2 * run + 1) * (r + 1) + t;
        slot[size_t(t)] = value;
        block.wait();
        for (int other : {(t + 1) % n, (t + n - 1) % n, n - 1 - t})
          wrong[size_t(t)] += slot[size_t(other)] != value - t + other;
        warp_slot[size_t(t)] = value;
        warps[size_t(t / 32)].wait();
        const int lane_partner = (t / 32) * 32 + (t % 32 ^ 7);
        wrong[size_t(t)] += warp_slot[size_t(lane_partner)] != value - t + lane_partner;
        block.wait();  // every read done before the next round's writes
      }
    });
  for (int t = 0; t < n; ++t) CHECK(wrong[size_t(t)] == 0);
}

TEST_CASE(
    "emulated threads: a read the barrier does not order sees the slot unwritten in one of "
    "two runs, whichever thread writes it",
    "[cuda-host]") {
  constexpr int n = 64;
  for (int offset : {1, -1}) {  // the next thread's slot, then the previous thread's
    INFO("each thread reads the slot of thread t + " << offset);
    int unwritten_runs = 0;
    for (int run = 0; run < 2; ++run) {
      std::vector<float> slot(n, NAN);
      int unwritten = 0;
      on_fibers(n, [&](int t) {
        slot[size_t(t)] = float(t);
        const int other = t + offset;
        if (other >= 0 && other < n) unwritten += std::isnan(slot[size_t(other)]);  // no barrier
      });
      unwritten_runs += unwritten > 0;
    }
    CHECK(unwritten_runs == 1);
  }
}

TEST_CASE(
    "emulated threads: a barrier some threads skip, or an exception, ends the run with an "
    "error",
    "[cuda-host]") {
  Barrier all(64);
  CHECK_THROWS_WITH(on_fibers(64,
                              [&](int t) {
                                if (t % 32 != 5) all.wait();
                              }),
                    Catch::Contains("deadlock: each of the 62 of 64 threads not yet returned"));
  Barrier again(16);
  CHECK_THROWS_WITH(on_fibers(16,
                              [&](int t) {
                                if (t == 9) throw std::runtime_error("thread 9 gave up");
                                again.wait();
                              }),
                    "thread 9 gave up");
  Barrier outside(1);
  CHECK_THROWS_AS(outside.wait(), std::logic_error);
  // The abandoned fibers leave nothing behind that the next run would trip on.
  std::vector<int> seen(32, 0);
  Barrier fresh(32);
  on_fibers(32, [&](int t) {
    fresh.wait();
    seen[size_t(t)] = 1;
  });
  for (int s : seen) CHECK(s == 1);
}
