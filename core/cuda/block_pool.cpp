// Best-fit blocks cut from segments, split and merged as PyTorch's CUDA caching allocator does
// (see block_pool.h).
#include "core/cuda/block_pool.h"

#include <algorithm>
#include <vector>

#include "core/error.h"

namespace scion::cuda {

BlockPool::BlockPool(SegmentAlloc alloc, SegmentFree free)
    : alloc_(std::move(alloc)), free_(std::move(free)) {}

BlockPool::~BlockPool() {
  // Each segment once, from its first block; then every block.
  std::vector<Block*> blocks(small_free_.begin(), small_free_.end());
  blocks.insert(blocks.end(), large_free_.begin(), large_free_.end());
  for (auto& kv : live_) blocks.push_back(kv.second);
  for (Block* b : blocks)
    if (!b->prev) free_(b->ptr);
  for (Block* b : blocks) delete b;
}

size_t BlockPool::round_size(size_t bytes) {
  if (bytes < kMinBlock) return kMinBlock;
  return (bytes + kMinBlock - 1) / kMinBlock * kMinBlock;
}

size_t BlockPool::segment_size(size_t size) {
  if (size <= kSmallSize) return kSmallSegment;
  if (size < kMinLargeAlloc) return kMidSegment;
  return (size + kLargeRound - 1) / kLargeRound * kLargeRound;
}

void BlockPool::add_allocated(size_t bytes) {
  stats_.allocated += bytes;
  stats_.peak_allocated = std::max(stats_.peak_allocated, stats_.allocated);
}

void* BlockPool::allocate(size_t bytes) {
  const size_t size = round_size(bytes);
  const bool small = size <= kSmallSize;
  FreeSet& pool = free_set(small);
  Block key{nullptr, size, small, false, nullptr, nullptr};
  Block* b = nullptr;
  auto it = pool.lower_bound(&key);  // the smallest free block of at least `size` bytes
  if (it != pool.end()) {
    b = *it;
    pool.erase(it);
  } else {
    const size_t seg = segment_size(size);
    char* p = static_cast<char*>(alloc_(seg));
    if (!p) return nullptr;
    b = new Block{p, seg, small, false, nullptr, nullptr};
    stats_.reserved += seg;
    stats_.peak_reserved = std::max(stats_.peak_reserved, stats_.reserved);
    ++stats_.segments;
  }
  // The rest becomes a free block when it can serve a request of its pool: any size in the small
  // pool, more than the small pool's largest in the large one (as torch splits).
  const size_t rest = b->size - size;
  if (small ? rest >= kMinBlock : rest > kSmallSize) {
    Block* r = new Block{b->ptr + size, rest, small, false, b, b->next};
    if (b->next) b->next->prev = r;
    b->next = r;
    b->size = size;
    pool.insert(r);
  }
  b->allocated = true;
  live_.emplace(b->ptr, b);
  add_allocated(b->size);
  return b->ptr;
}

void BlockPool::release(void* p) {
  auto it = live_.find(p);
  SCION_ASSERT(it != live_.end(), "BlockPool::release of a pointer it did not hand out");
  Block* b = it->second;
  live_.erase(it);
  b->allocated = false;
  stats_.allocated -= b->size;
  FreeSet& pool = free_set(b->small);
  // Merge with free neighbours: the block absorbs a free next one, a free previous one absorbs it.
  if (Block* n = b->next; n && !n->allocated) {
    pool.erase(n);
    absorb_next(b);
  }
  if (Block* pr = b->prev; pr && !pr->allocated) {
    pool.erase(pr);
    absorb_next(pr);
    b = pr;
  }
  pool.insert(b);
}

void BlockPool::absorb_next(Block* b) {
  Block* n = b->next;
  b->size += n->size;
  b->next = n->next;
  if (n->next) n->next->prev = b;
  delete n;
}

size_t BlockPool::release_cached() {
  size_t freed = 0;
  for (FreeSet* pool : {&small_free_, &large_free_}) {
    for (auto it = pool->begin(); it != pool->end();) {
      Block* b = *it;
      if (b->prev || b->next) {  // part of a segment that still has an allocated block
        ++it;
        continue;
      }
      it = pool->erase(it);
      free_(b->ptr);
      stats_.reserved -= b->size;
      --stats_.segments;
      freed += b->size;
      delete b;
    }
  }
  return freed;
}

size_t BlockPool::block_size(const void* p) const {
  auto it = live_.find(p);
  SCION_ASSERT(it != live_.end(), "BlockPool::block_size of a pointer it did not hand out");
  return it->second->size;
}

void BlockPool::reset_peak() {
  stats_.peak_allocated = stats_.allocated;
  stats_.peak_reserved = stats_.reserved;
}

}  // namespace scion::cuda
