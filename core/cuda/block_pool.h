// The device caching allocator's bookkeeping, on PyTorch's CUDA allocator's scheme: memory comes
// from the driver in segments and is handed out as blocks cut from them. A request is rounded up
// to 512 bytes and served by the smallest free block that fits (best fit), split when the rest is
// worth keeping; a freed block merges with free neighbours of its segment. Small requests (1 MiB
// and less) share 2 MiB segments; requests under 10 MiB take 20 MiB segments; larger ones a
// segment of their own size rounded up to 2 MiB, which later requests of any size may split.
// So a freed activation serves the next request of any size that fits, where exact size classes
// would leave it waiting for its own size and ask the driver for more.
//
// Plain C++ with the segment allocator passed in, so it is tested on every machine
// ([cuda-host]); backend.cu gives it cudaMalloc and cudaFree. Not thread-safe: the caller locks.
// Every block is used in stream order on one stream, so a freed block can be reused at once.
#pragma once

#include <cstddef>
#include <functional>
#include <set>
#include <unordered_map>

namespace scion::cuda {

class BlockPool {
 public:
  using SegmentAlloc = std::function<void*(size_t)>;  // nullptr when out of memory
  using SegmentFree = std::function<void(void*)>;

  // Counters in bytes, as torch.cuda.memory_stats: blocks handed out (their rounded sizes and
  // any unsplit rest) and segments held; peaks since construction or reset_peak().
  struct Stats {
    size_t allocated = 0, peak_allocated = 0, reserved = 0, peak_reserved = 0;
    size_t segments = 0;
  };

  static constexpr size_t kMinBlock = 512;               // rounding of every request
  static constexpr size_t kSmallSize = size_t(1) << 20;  // largest request of the small pool
  static constexpr size_t kSmallSegment = size_t(2) << 20;
  static constexpr size_t kMidSegment = size_t(20) << 20;  // for requests under kMinLargeAlloc
  static constexpr size_t kMinLargeAlloc = size_t(10) << 20;
  static constexpr size_t kLargeRound = size_t(2) << 20;

  BlockPool(SegmentAlloc alloc, SegmentFree free);
  ~BlockPool();  // returns every segment to `free`
  BlockPool(const BlockPool&) = delete;
  BlockPool& operator=(const BlockPool&) = delete;

  static size_t round_size(size_t bytes);
  // The segment a request of `size` (rounded) bytes would be given when no free block fits.
  static size_t segment_size(size_t size);

  // A block of at least `bytes`, or nullptr when no free block fits and the segment allocator
  // fails (the caller may release_cached() and retry).
  void* allocate(size_t bytes);
  // Frees the block that allocate() returned at p (an InternalError for any other pointer).
  void release(void* p);
  // Returns every segment none of whose memory is allocated; the bytes returned.
  size_t release_cached();

  // The size of the live block at p (its rounded size, or more when the rest was not split off).
  size_t block_size(const void* p) const;
  const Stats& stats() const { return stats_; }
  void reset_peak();
  size_t free_blocks() const { return small_free_.size() + large_free_.size(); }

 private:
  struct Block {
    char* ptr;
    size_t size;
    bool small;  // in the small pool
    bool allocated;
    Block* prev;  // neighbours in the same segment, in address order
    Block* next;
  };
  struct BySize {
    bool operator()(const Block* a, const Block* b) const {
      return a->size != b->size ? a->size < b->size : a->ptr < b->ptr;
    }
  };
  using FreeSet = std::set<Block*, BySize>;

  FreeSet& free_set(bool small) { return small ? small_free_ : large_free_; }
  void add_allocated(size_t bytes);
  // Joins b's next block (free, out of its free set) onto b, and deletes it.
  void absorb_next(Block* b);

  SegmentAlloc alloc_;
  SegmentFree free_;
  FreeSet small_free_, large_free_;
  std::unordered_map<const void*, Block*> live_;
  Stats stats_;
};

}  // namespace scion::cuda
