// Stop signals taken on a thread of their own (see signals.h).
#include "train/signals.h"

#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <mutex>
#include <thread>

namespace scion::train {

namespace {

std::atomic<int> g_signal{0};

extern "C" void record_signal(int sig) {
  g_signal = sig;
}

sigset_t stop_set() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  return set;
}

}  // namespace

void take_stop_signals() {
  struct sigaction sa {};
  sa.sa_handler = record_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  const sigset_t set = stop_set();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  static std::once_flag started;
  std::call_once(started, [set] {
    // Created with both signals blocked (sigwait requires it), like every thread from here on.
    std::thread([set] {
      for (;;) {
        int sig = 0;
        if (sigwait(&set, &sig) == 0) g_signal = sig;
      }
    }).detach();
  });
}

int interrupted() {
  return g_signal;
}

void clear_interrupted() {
  g_signal = 0;
}

}  // namespace scion::train
