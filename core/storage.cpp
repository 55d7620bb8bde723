// The CPU caching allocator. Sizes are rounded to classes (multiples of 64 bytes below 4 KiB, then
// four classes per power of two) so blocks are reusable across slightly different shapes while the
// waste stays under 25%. The cache is bounded: past kMaxCached it frees blocks instead of keeping
// them.
#include "core/storage.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstdlib>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

#include "core/backend.h"
#include "core/error.h"

namespace scion {

namespace {
constexpr size_t kAlign = 64;
constexpr size_t kHugePage = size_t(2) << 20;

// Blocks of 2 MiB and more are 2 MiB aligned and marked for transparent huge pages, which cuts TLB
// misses on large activations (the kernel's THP mode here is "madvise").
void* system_alloc(size_t size) {
  if (size < kHugePage) return std::aligned_alloc(kAlign, size);
  size_t rounded = (size + kHugePage - 1) / kHugePage * kHugePage;
  void* p = std::aligned_alloc(kHugePage, rounded);
  if (p) madvise(p, rounded, MADV_HUGEPAGE);
  return p;
}
constexpr size_t kMaxCached = size_t(4) << 30;
}  // namespace

struct CachingAllocator::State {
  mutable std::mutex mu;
  std::unordered_map<size_t, std::vector<void*>> free_lists;
  size_t cached = 0;
  size_t live = 0;
  size_t peak = 0;
};

CachingAllocator& CachingAllocator::cpu() {
  static CachingAllocator a;
  return a;
}

CachingAllocator::State& CachingAllocator::state() const {
  static State* s = new State();  // never destroyed: storages may outlive static destruction
  return *s;
}

size_t CachingAllocator::round_size(size_t bytes) {
  if (bytes == 0) bytes = 1;
  if (bytes <= 4096) return (bytes + kAlign - 1) / kAlign * kAlign;
  size_t p = 4096;
  while (p * 2 < bytes) p *= 2;
  size_t step = p / 4;
  return (bytes + step - 1) / step * step;
}

void* CachingAllocator::allocate(size_t bytes) {
  size_t size = round_size(bytes);
  State& s = state();
  {
    std::lock_guard<std::mutex> lock(s.mu);
    auto it = s.free_lists.find(size);
    if (it != s.free_lists.end() && !it->second.empty()) {
      void* p = it->second.back();
      it->second.pop_back();
      s.cached -= size;
      s.live += size;
      s.peak = std::max(s.peak, s.live);
      return p;
    }
  }
  void* p = system_alloc(size);
  if (!p) {
    empty_cache();
    p = system_alloc(size);
  }
  if (!p) throw Error(detail::str_cat("out of memory allocating ", size, " bytes"));
  std::lock_guard<std::mutex> lock(s.mu);
  s.live += size;
  s.peak = std::max(s.peak, s.live);
  return p;
}

void CachingAllocator::release(void* p, size_t bytes) {
  size_t size = round_size(bytes);
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  s.live -= size;
  if (s.cached + size > kMaxCached) {
    std::free(p);
    return;
  }
  s.free_lists[size].push_back(p);
  s.cached += size;
}

void CachingAllocator::empty_cache() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  for (auto& kv : s.free_lists)
    for (void* p : kv.second) std::free(p);
  s.free_lists.clear();
  s.cached = 0;
}

size_t CachingAllocator::cached_bytes() const {
  std::lock_guard<std::mutex> lock(state().mu);
  return state().cached;
}

size_t CachingAllocator::live_bytes() const {
  std::lock_guard<std::mutex> lock(state().mu);
  return state().live;
}

size_t CachingAllocator::peak_live_bytes() const {
  std::lock_guard<std::mutex> lock(state().mu);
  return state().peak;
}

void CachingAllocator::reset_peak() {
  std::lock_guard<std::mutex> lock(state().mu);
  state().peak = state().live;
}

Storage::Storage(size_t bytes, Device device)
    : data_(nullptr), bytes_(bytes), device_(device), owned_(true) {
  data_ = backend(device).allocate(bytes);
}

Storage::Storage(void* data, size_t bytes, Device device, std::shared_ptr<void> owner)
    : data_(data), bytes_(bytes), device_(device), owned_(false), owner_(std::move(owner)) {}

Storage::~Storage() {
  if (owned_) backend(device_).release(data_, bytes_);
}

}  // namespace scion
