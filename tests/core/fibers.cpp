#include "tests/core/fibers.h"

#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

// AddressSanitizer keeps its own record of which stack a thread runs on; every switch between
// stacks is announced to it (sanitizer/common_interface_defs.h), or it would take a fiber's frames
// for stray writes past the host thread's stack.
#if defined(__SANITIZE_ADDRESS__)
#define SCION_FIBERS_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SCION_FIBERS_ASAN 1
#endif
#endif
#ifdef SCION_FIBERS_ASAN
#include <sanitizer/common_interface_defs.h>
#endif

namespace scion::test {
namespace {

// Enough for the kernel bodies' frames under the sanitizers' red zones, with room to spare.
constexpr size_t kStackBytes = size_t(256) << 10;

// One fiber's stack, mapped once and kept for later runs; its lowest page is a guard, so an
// overflow faults instead of writing over the next stack.
class Stack {
 public:
  Stack() : page_(size_t(sysconf(_SC_PAGESIZE))) {
    base_ = mmap(nullptr, page_ + kStackBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                 -1, 0);
    if (base_ == MAP_FAILED) throw std::runtime_error("on_fibers: cannot map a fiber's stack");
    mprotect(base_, page_, PROT_NONE);
  }
  ~Stack() { munmap(base_, page_ + kStackBytes); }
  Stack(const Stack&) = delete;
  Stack& operator=(const Stack&) = delete;
  void* bottom() const { return static_cast<char*>(base_) + page_; }

 private:
  const size_t page_;
  void* base_;
};

struct Fiber {
  ucontext_t context;
  bool returned = false;
  void* asan_fake_stack = nullptr;
};

class Scheduler;
thread_local Scheduler* current = nullptr;

// Runs the fibers of one on_fibers call from the host thread's own stack ("main"), one at a
// time, each until it yields or returns.
class Scheduler {
 public:
  Scheduler(int threads, const std::function<void(int)>& f) : f_(f), fibers_(size_t(threads)) {
    static std::vector<std::unique_ptr<Stack>> stacks;  // kept from run to run
    while (stacks.size() < fibers_.size()) stacks.push_back(std::make_unique<Stack>());
    for (size_t i = 0; i < fibers_.size(); ++i) {
      ucontext_t& c = fibers_[i].context;
      getcontext(&c);
      c.uc_stack.ss_sp = stacks[i]->bottom();
      c.uc_stack.ss_size = kStackBytes;
      c.uc_link = nullptr;  // a fiber switches back itself (entry), never by returning
      makecontext(&c, reinterpret_cast<void (*)()>(&Scheduler::entry), 1, int(i));
    }
  }

  void run(bool reverse) {
    current = this;
    struct Reset {
      ~Reset() { current = nullptr; }
    } reset;
    const int n = int(fibers_.size());
    int live = n, idle = 0;
    while (live > 0) {
      for (int k = 0; k < n && live > 0; ++k) {
        const int i = reverse ? n - 1 - k : k;
        if (fibers_[size_t(i)].returned) continue;
        const uint64_t before = progress_;
        resume(i);
        if (error_) std::rethrow_exception(error_);
        if (fibers_[size_t(i)].returned) {
          --live, idle = 0;
        } else if (progress_ != before) {
          idle = 0;
        } else if (++idle >= live) {
          throw std::runtime_error(
              "on_fibers: deadlock: each of the " + std::to_string(live) + " of " +
              std::to_string(n) +
              " threads not yet returned waits at a barrier that no other thread can reach (a "
              "collective operation some threads skip?)");
        }
      }
    }
  }

  // From a fiber: back to main, which resumes the next fiber; returns when this one is resumed.
  void yield() {
    Fiber& self = fibers_[size_t(running_)];
    leave(&self.asan_fake_stack);
    swapcontext(&self.context, &main_);
    arrive(self.asan_fake_stack);
  }
  void note_progress() { ++progress_; }
  bool in_fiber() const { return running_ >= 0; }

 private:
  static void entry(int index) {
    Scheduler& s = *current;
    s.arrive_first();
    try {
      s.f_(index);
    } catch (...) {
      if (!s.error_) s.error_ = std::current_exception();
    }
    Fiber& self = s.fibers_[size_t(index)];
    self.returned = true;
    s.leave(nullptr);  // for good: its fake stack may go
    swapcontext(&self.context, &s.main_);
  }

  void resume(int i) {
    running_ = i;
#ifdef SCION_FIBERS_ASAN
    __sanitizer_start_switch_fiber(&main_fake_stack_, fibers_[size_t(i)].context.uc_stack.ss_sp,
                                   kStackBytes);
#endif
    swapcontext(&main_, &fibers_[size_t(i)].context);
#ifdef SCION_FIBERS_ASAN
    __sanitizer_finish_switch_fiber(main_fake_stack_, nullptr, nullptr);
#endif
    running_ = -1;
  }

  // The sanitizer's side of a fiber's switches: leaving for main, arriving back, arriving for the
  // first time (which tells it where main's stack is).
  void leave(void** fake_stack) {
#ifdef SCION_FIBERS_ASAN
    __sanitizer_start_switch_fiber(fake_stack, main_bottom_, main_size_);
#else
    (void)fake_stack;
#endif
  }
  void arrive(void* fake_stack) {
#ifdef SCION_FIBERS_ASAN
    __sanitizer_finish_switch_fiber(fake_stack, nullptr, nullptr);
#else
    (void)fake_stack;
#endif
  }
  void arrive_first() {
#ifdef SCION_FIBERS_ASAN
    __sanitizer_finish_switch_fiber(nullptr, &main_bottom_, &main_size_);
#endif
  }

  const std::function<void(int)>& f_;
  std::vector<Fiber> fibers_;
  ucontext_t main_;
  int running_ = -1;
  uint64_t progress_ = 0;  // barrier arrivals so far
  std::exception_ptr error_;
  void* main_fake_stack_ = nullptr;
  const void* main_bottom_ = nullptr;
  size_t main_size_ = 0;
};

}  // namespace

void on_fibers(int threads, const std::function<void(int)>& f) {
  static thread_local uint64_t runs = 0;
  Scheduler scheduler(threads, f);
  scheduler.run(runs++ % 2 == 1);
}

void Barrier::wait() {
  if (!current || !current->in_fiber())
    throw std::logic_error("Barrier::wait outside on_fibers: a barrier is for fibers only");
  current->note_progress();
  const uint64_t generation = generation_;
  if (++arrived_ == n_) {
    arrived_ = 0;
    ++generation_;
    return;
  }
  while (generation_ == generation) current->yield();
}

}  // namespace scion::test
