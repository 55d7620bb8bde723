// The thread count, and its adaptation to other processes' load (see parallel.h).
//
// The load comes from /proc/stat: the busy time of each core this process may run on (user, nice,
// system, irq, softirq and steal ticks), less this process's own CPU time, over a half-second
// window, is what other processes (or, under a hypervisor, other guests) took. Without /proc/stat
// (not Linux) the count stays as set.
#include <pthread.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/cpu/parallel.h"

namespace scion::cpu {

namespace {

using Clock = std::chrono::steady_clock;

struct Sample {
  Clock::time_point wall;
  double busy = 0;  // seconds of busy time summed over our cores, all processes
  double own = 0;   // seconds of CPU time of this process
};

struct Governor {
  bool adaptive = false;
  int max = 1;            // the cores we may run on
  std::vector<int> cpus;  // their ids
  std::thread::id owner;  // the thread whose ICV sets the count
  Sample last;            // the start of the current window
  bool have_last = false;
  int pending = 0;  // a new count seen in one window, applied on the next
};

Governor& governor() {
  static Governor g;
  return g;
}

std::atomic<int> g_largest{0};  // the largest count set_num_threads has set

// OMP_NUM_THREADS, or the cores: the count before anything set one (read at start-up, before
// set_num_threads can change it).
const int g_initial = omp_get_max_threads();

std::atomic<bool> g_forked{false};
const int g_watch_fork = pthread_atfork(nullptr, nullptr, [] { g_forked = true; });

void set_count(int n) {
  omp_set_num_threads(n);
  int seen = g_largest.load();
  while (n > seen && !g_largest.compare_exchange_weak(seen, n)) {
  }
}

std::vector<int> allowed_cpus() {
  std::vector<int> ids;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0)
    for (int i = 0; i < CPU_SETSIZE; ++i)
      if (CPU_ISSET(i, &set)) ids.push_back(i);
  return ids;
}

// Busy seconds of the listed cores from /proc/stat; false when it cannot be read.
bool read_busy(const std::vector<int>& cpus, double& busy) {
  std::ifstream in("/proc/stat");
  if (!in) return false;
  static const double tick = double(sysconf(_SC_CLK_TCK) > 0 ? sysconf(_SC_CLK_TCK) : 100);
  std::vector<bool> want;
  for (int c : cpus) {
    if (size_t(c) >= want.size()) want.resize(size_t(c) + 1, false);
    want[size_t(c)] = true;
  }
  std::string line;
  int64_t ticks = 0, seen = 0;
  while (std::getline(in, line)) {
    if (line.compare(0, 3, "cpu") != 0) break;                        // the cpu lines come first
    if (line.size() < 4 || line[3] < '0' || line[3] > '9') continue;  // the "cpu " total
    std::istringstream s(line.substr(3));
    int id = -1;
    int64_t f[8] = {0, 0, 0, 0, 0, 0, 0, 0};  // user nice system idle iowait irq softirq steal
    s >> id;
    for (auto& v : f) s >> v;
    if (!s || id < 0 || size_t(id) >= want.size() || !want[size_t(id)]) continue;
    ticks += f[0] + f[1] + f[2] + f[5] + f[6] + f[7];
    ++seen;
  }
  busy = double(ticks) / tick;
  return seen > 0;
}

double own_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

bool take_sample(const Governor& g, Sample& s) {
  s.wall = Clock::now();
  s.own = own_cpu_seconds();
  return read_busy(g.cpus, s.busy);
}

}  // namespace

bool forked_child() {
  (void)g_watch_fork;
  return g_forked;
}

int largest_thread_count() {
  return std::max({g_largest.load(), g_initial, omp_get_max_threads(), omp_get_num_procs()});
}

int threads_for_load(double others, int cores, int max) {
  double free_cores = double(cores) - std::max(0.0, others);
  int n = int(std::floor(free_cores + 0.35));
  return std::max(1, std::min(max, n));
}

void set_num_threads(int n) {
  Governor& g = governor();
  g.owner = std::this_thread::get_id();
  g.have_last = false;
  g.pending = 0;
  const char* env = std::getenv("SCION_ADAPTIVE_THREADS");
  g.adaptive = n <= 0 && !(env && std::strcmp(env, "0") == 0);  // =0: a fixed count
  if (n > 0) {
    set_count(n);
    return;
  }
  g.cpus = allowed_cpus();
  g.max = g.cpus.empty() ? omp_get_num_procs() : int(g.cpus.size());
  set_count(g.max);
  double busy = 0;
  if (g.adaptive && !read_busy(g.cpus, busy)) g.adaptive = false;
}

bool adaptive_threads() {
  return governor().adaptive;
}

void adapt_threads() {
  Governor& g = governor();
  if (!g.adaptive || std::this_thread::get_id() != g.owner || omp_in_parallel()) return;
  const auto now = Clock::now();
  if (g.have_last && now - g.last.wall < std::chrono::milliseconds(500)) return;
  Sample s;
  if (!take_sample(g, s)) return;
  if (!g.have_last) {
    g.last = s;
    g.have_last = true;
    return;
  }
  const double wall = std::chrono::duration<double>(s.wall - g.last.wall).count();
  const double others = ((s.busy - g.last.busy) - (s.own - g.last.own)) / wall;
  g.last = s;
  const int want = threads_for_load(others, g.max, g.max);
  if (want == omp_get_max_threads()) {
    g.pending = 0;
  } else if (want == g.pending) {  // the same answer two windows running
    omp_set_num_threads(want);
    g.pending = 0;
  } else {
    g.pending = want;
  }
}

}  // namespace scion::cpu
