// Stop signals taken on a thread of their own (see signals.h).
#include "train/signals.h"

#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <mutex>
#include <thread>

#include "core/cpu/parallel.h"

namespace scion::train {

namespace {

std::atomic<int> g_signal{0};
bool g_deferred = false;  // guarded by g_mode
std::mutex g_mode;        // orders defer_stop_signals against take

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

// Records the signal once defer_stop_signals has run; before, ends the process as the signal's
// default action does (a shell reports 128 + sig).
void take(int sig) {
  std::lock_guard<std::mutex> lock(g_mode);
  if (g_deferred) {
    g_signal = sig;
    return;
  }
  signal(sig, SIG_DFL);
  sigset_t one;
  sigemptyset(&one);
  sigaddset(&one, sig);
  pthread_sigmask(SIG_UNBLOCK, &one, nullptr);
  raise(sig);
}

}  // namespace

void take_stop_signals() {
  const sigset_t set = stop_set();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  // The OpenMP workers (the computing threads) too, when a parallel region created them before
  // this call: they keep the mask they were created with.
  cpu::on_every_thread([&set] { pthread_sigmask(SIG_BLOCK, &set, nullptr); });
  static std::once_flag started;
  std::call_once(started, [set] {
    // Created with both signals blocked (sigwait requires it), like every thread from here on.
    std::thread([set] {
      for (;;) {
        int sig = 0;
        if (sigwait(&set, &sig) == 0) take(sig);
      }
    }).detach();
  });
}

void defer_stop_signals() {
  take_stop_signals();
  std::lock_guard<std::mutex> lock(g_mode);
  struct sigaction sa {};
  sa.sa_handler = record_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  g_deferred = true;
}

int interrupted() {
  return g_signal;
}

void clear_interrupted() {
  g_signal = 0;
}

}  // namespace scion::train
