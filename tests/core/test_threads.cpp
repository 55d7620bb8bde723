// The thread count under load (core/cpu/parallel.h): the decision from a measured load, an explicit
// count left alone, and "all cores" giving up the cores that busy processes beside it take.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "core/cpu/parallel.h"
#include "tests/support.h"

using namespace scion;

TEST_CASE("thread count for a measured load: the cores others leave free, at least one",
          "[threads]") {
  CHECK(cpu::threads_for_load(0.0, 2, 2) == 2);
  CHECK(cpu::threads_for_load(0.3, 2, 2) == 2);  // stray system work is not a job
  CHECK(cpu::threads_for_load(0.5, 2, 2) == 1);
  CHECK(cpu::threads_for_load(1.0, 2, 2) == 1);
  CHECK(cpu::threads_for_load(2.0, 2, 2) == 1);   // never zero
  CHECK(cpu::threads_for_load(-0.1, 2, 2) == 2);  // tick rounding can make it negative
  CHECK(cpu::threads_for_load(1.0, 8, 8) == 7);
  CHECK(cpu::threads_for_load(2.9, 8, 8) == 5);
  CHECK(cpu::threads_for_load(0.0, 8, 4) == 4);  // never more than asked for
}

namespace {

// `n` child processes, each spinning on a core until the guard ends them.
struct BusyProcesses {
  std::vector<pid_t> pids;
  explicit BusyProcesses(int n) {
    for (int i = 0; i < n; ++i) {
      pid_t pid = fork();
      if (pid == 0) {
        volatile unsigned long x = 0;
        for (;;) x = x + 1;
      }
      REQUIRE(pid > 0);
      pids.push_back(pid);
    }
  }
  ~BusyProcesses() {
    for (pid_t p : pids) kill(p, SIGKILL);
    for (pid_t p : pids) waitpid(p, nullptr, 0);
  }
};

// SCION_ADAPTIVE_THREADS set to `value` (or unset) for the guard's life.
struct AdaptiveEnv {
  std::string saved;
  bool had = false;
  explicit AdaptiveEnv(const char* value) {
    const char* v = std::getenv("SCION_ADAPTIVE_THREADS");
    had = v != nullptr;
    if (had) saved = v;
    if (value)
      setenv("SCION_ADAPTIVE_THREADS", value, 1);
    else
      unsetenv("SCION_ADAPTIVE_THREADS");
  }
  ~AdaptiveEnv() {
    if (had)
      setenv("SCION_ADAPTIVE_THREADS", saved.c_str(), 1);
    else
      unsetenv("SCION_ADAPTIVE_THREADS");
    cpu::set_num_threads(0);
  }
};

}  // namespace

TEST_CASE("threads: 0 follows the load: the count drops while other processes keep the cores busy",
          "[threads]") {
  AdaptiveEnv env(nullptr);
  cpu::set_num_threads(0);
  const int all = cpu::num_threads();
  if (!cpu::adaptive_threads() || all < 2) {
    WARN("no /proc/stat or a single core: nothing to adapt");
    return;
  }
  {
    BusyProcesses busy(all);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (cpu::num_threads() > 1 && std::chrono::steady_clock::now() < deadline) {
      cpu::adapt_threads();
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    CHECK(cpu::num_threads() == 1);
  }
  cpu::set_num_threads(0);
  CHECK(cpu::num_threads() == all);
}

TEST_CASE("SCION_ADAPTIVE_THREADS=0: the count stays while other processes keep the cores busy",
          "[threads]") {
  AdaptiveEnv env("0");
  cpu::set_num_threads(0);
  CHECK_FALSE(cpu::adaptive_threads());
  const int all = cpu::num_threads();
  BusyProcesses busy(all);
  for (int i = 0; i < 60; ++i) {  // 1.2 s: more than two half-second windows
    cpu::adapt_threads();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  CHECK(cpu::num_threads() == all);
}

TEST_CASE("an explicit thread count is never changed by the load", "[threads]") {
  cpu::set_num_threads(2);
  CHECK_FALSE(cpu::adaptive_threads());
  {
    BusyProcesses busy(2);
    for (int i = 0; i < 60; ++i) {  // 1.2 s: more than two half-second windows
      cpu::adapt_threads();
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    CHECK(cpu::num_threads() == 2);
  }
  cpu::set_num_threads(0);
}
