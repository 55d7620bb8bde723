// Storage: a refcounted, 64-byte aligned byte buffer, shared by every view of a tensor.
// CPU memory comes from a caching allocator: freed blocks are kept in per-size free lists and
// handed out again, so a training step that allocates the same shapes every iteration stops
// calling the system allocator after the first step. Storage can also wrap external memory
// (from_blob, a memory-mapped file) kept alive by an owner handle.
#pragma once

#include <cstddef>
#include <memory>

#include "core/device.h"

namespace scion {

class CachingAllocator {
 public:
  static CachingAllocator& cpu();
  void* allocate(size_t bytes);  // 64-byte aligned; size rounded up to a size class
  void release(void* p, size_t bytes);
  void empty_cache();
  size_t cached_bytes() const;
  size_t live_bytes() const;
  // The largest live_bytes() since the last reset_peak() (torch.cuda.max_memory_allocated and
  // reset_peak_memory_stats, for CPU memory).
  size_t peak_live_bytes() const;
  void reset_peak();
  static size_t round_size(size_t bytes);

 private:
  CachingAllocator() = default;
  struct State;
  State& state() const;
};

class Storage {
 public:
  // Fresh memory from the caching allocator.
  Storage(size_t bytes, Device device);
  // External memory: `owner` keeps it alive (may be null for memory the caller manages).
  Storage(void* data, size_t bytes, Device device, std::shared_ptr<void> owner);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  Device device() const { return device_; }

 private:
  void* data_;
  size_t bytes_;
  Device device_;
  bool owned_;
  std::shared_ptr<void> owner_;
};

}  // namespace scion
