// The device caching allocator's bookkeeping (core/cuda/block_pool.h), on host memory: segments
// from aligned_alloc, so every block handed out is real memory the test writes and reads back.
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>

#include "core/cuda/block_pool.h"
#include "tests/support.h"

using namespace scion::cuda;

namespace {

constexpr size_t MiB = size_t(1) << 20;

// Host segments, counted; `limit` bytes at most (a full device).
struct HostSegments {
  size_t limit = size_t(1) << 40, held = 0;
  std::map<void*, size_t> live;
  BlockPool pool() {
    return BlockPool(
        [this](size_t bytes) -> void* {
          if (held + bytes > limit) return nullptr;
          void* p = std::aligned_alloc(512, bytes);
          live[p] = bytes;
          held += bytes;
          return p;
        },
        [this](void* p) {
          held -= live.at(p);
          live.erase(p);
          std::free(p);
        });
  }
};

char* at(void* p, size_t offset = 0) {
  return static_cast<char*>(p) + offset;
}

}  // namespace

TEST_CASE("block pool: request rounding and segment sizes", "[cuda-host]") {
  CHECK(BlockPool::round_size(0) == 512);
  CHECK(BlockPool::round_size(1) == 512);
  CHECK(BlockPool::round_size(512) == 512);
  CHECK(BlockPool::round_size(513) == 1024);
  CHECK(BlockPool::round_size(5 * MiB + 1) == 5 * MiB + 512);
  CHECK(BlockPool::segment_size(512) == 2 * MiB);
  CHECK(BlockPool::segment_size(MiB) == 2 * MiB);
  CHECK(BlockPool::segment_size(MiB + 512) == 20 * MiB);
  CHECK(BlockPool::segment_size(10 * MiB - 512) == 20 * MiB);
  CHECK(BlockPool::segment_size(10 * MiB) == 10 * MiB);
  CHECK(BlockPool::segment_size(11 * MiB + 512) == 12 * MiB);
}

TEST_CASE("block pool: small blocks share a segment and merge back when freed", "[cuda-host]") {
  HostSegments segs;
  BlockPool pool = segs.pool();
  void* a = pool.allocate(1000);
  void* b = pool.allocate(3000);
  CHECK(pool.block_size(a) == 1024);
  CHECK(pool.block_size(b) == 3072);
  CHECK(at(b) == at(a, 1024));  // cut from the same 2 MiB segment, in address order
  CHECK(pool.stats().reserved == 2 * MiB);
  CHECK(pool.stats().allocated == 4096);
  CHECK(segs.live.size() == 1);
  pool.release(a);
  void* c = pool.allocate(700);  // best fit: the freed 1024-byte block, not the segment's rest
  CHECK(c == a);
  CHECK(pool.block_size(c) == 1024);
  pool.release(b);
  pool.release(c);
  CHECK(pool.stats().allocated == 0);
  CHECK(pool.free_blocks() == 1);  // one whole segment again
  CHECK(pool.stats().peak_allocated == 4096);
  CHECK(pool.release_cached() == 2 * MiB);
  CHECK(pool.stats().reserved == 0);
  CHECK(segs.held == 0);
}

TEST_CASE("block pool: a freed large block serves smaller requests of any size", "[cuda-host]") {
  HostSegments segs;
  BlockPool pool = segs.pool();
  void* big = pool.allocate(30 * MiB);
  CHECK(pool.block_size(big) == 30 * MiB);
  CHECK(pool.stats().reserved == 30 * MiB);
  pool.release(big);
  // 12 MiB and 3 MiB come out of the freed 30 MiB: no new segment (exact size classes would
  // have asked the driver for 12 and 4 MiB more).
  void* a = pool.allocate(12 * MiB);
  void* b = pool.allocate(3 * MiB);
  CHECK(a == big);
  CHECK(at(b) == at(a, 12 * MiB));
  CHECK(pool.stats().reserved == 30 * MiB);
  CHECK(pool.stats().allocated == 15 * MiB);
  // A rest of 1 MiB or less is not split off a large block: 14.5 MiB of 15 free take it all.
  void* c = pool.allocate(14 * MiB + MiB / 2);
  CHECK(at(c) == at(b, 3 * MiB));
  CHECK(pool.block_size(c) == 15 * MiB);
  CHECK(pool.stats().allocated == 30 * MiB);
  CHECK(pool.free_blocks() == 0);
  // Small requests never take large blocks: a 2 MiB segment of their own.
  void* s = pool.allocate(100);
  CHECK(pool.stats().reserved == 32 * MiB);
  // Freeing in any order merges the segment back whole.
  pool.release(a);
  pool.release(c);
  CHECK(pool.free_blocks() == 3);  // a, c, and the small segment's rest
  pool.release(b);
  pool.release(s);
  CHECK(pool.free_blocks() == 2);
  CHECK(pool.release_cached() == 32 * MiB);
  CHECK(segs.held == 0);
}

TEST_CASE("block pool: out of device memory, the cache is returned and the request retried",
          "[cuda-host]") {
  HostSegments segs;
  segs.limit = 40 * MiB;
  BlockPool pool = segs.pool();
  void* a = pool.allocate(24 * MiB);
  void* b = pool.allocate(12 * MiB);  // a 12 MiB segment: 36 MiB held
  pool.release(a);
  // 30 MiB fits no free block (24 MiB) and no new segment (36 + 30 > 40).
  CHECK(pool.allocate(30 * MiB) == nullptr);
  CHECK(pool.release_cached() == 24 * MiB);  // a's segment; b's stays, still allocated
  void* c = pool.allocate(26 * MiB);
  REQUIRE(c != nullptr);
  CHECK(pool.stats().reserved == 38 * MiB);
  CHECK(pool.stats().peak_reserved == 38 * MiB);
  pool.reset_peak();
  pool.release(b);
  pool.release(c);
  CHECK(pool.stats().peak_allocated == 38 * MiB);  // the peak since the reset
  CHECK(pool.stats().allocated == 0);
  CHECK_THROWS_WITH(pool.release(at(c, 512)), Catch::Contains("did not hand out"));
}

// Random requests from 1 byte to 24 MiB (log-uniform) and random frees: live blocks never overlap,
// each keeps what was written to it, the counters add up, and once everything is freed every
// segment is whole again and goes back.
TEST_CASE("block pool: random requests keep blocks disjoint and the counters exact",
          "[cuda-host]") {
  HostSegments segs;
  BlockPool pool = segs.pool();
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> log_size(0.0, std::log(24.0 * MiB));
  struct Live {
    size_t bytes;
    unsigned char tag;
  };
  std::map<char*, Live> live;  // by address
  auto check_tag = [](char* p, const Live& l) {
    const size_t n = std::min<size_t>(l.bytes, 256);
    for (size_t i = 0; i < n; ++i) REQUIRE((unsigned char)(p[i]) == l.tag);
    for (size_t i = l.bytes - n; i < l.bytes; ++i) REQUIRE((unsigned char)(p[i]) == l.tag);
  };
  for (int step = 0; step < 4000; ++step) {
    if (live.size() < 48 && (live.empty() || rng() % 100 < 55)) {
      const size_t bytes = size_t(std::exp(log_size(rng)));
      char* p = static_cast<char*>(pool.allocate(bytes));
      REQUIRE(p != nullptr);
      REQUIRE(pool.block_size(p) >= bytes);
      // Disjoint from its neighbours in address order.
      auto next = live.lower_bound(p);
      if (next != live.end()) REQUIRE(p + pool.block_size(p) <= next->first);
      if (next != live.begin()) {
        auto prev = std::prev(next);
        REQUIRE(prev->first + pool.block_size(prev->first) <= p);
      }
      const Live l{bytes, static_cast<unsigned char>(rng())};
      std::memset(p, l.tag, std::min<size_t>(bytes, 256));
      std::memset(p + bytes - std::min<size_t>(bytes, 256), l.tag, std::min<size_t>(bytes, 256));
      live.emplace(p, l);
    } else {
      auto it = std::next(live.begin(), long(rng() % live.size()));
      check_tag(it->first, it->second);
      pool.release(it->first);
      live.erase(it);
    }
    size_t allocated = 0;
    for (auto& kv : live) allocated += pool.block_size(kv.first);
    REQUIRE(pool.stats().allocated == allocated);
    REQUIRE(pool.stats().reserved == segs.held);
    REQUIRE(pool.stats().segments == segs.live.size());
  }
  for (auto& kv : live) {
    check_tag(kv.first, kv.second);
    pool.release(kv.first);
  }
  CHECK(pool.stats().allocated == 0);
  CHECK(pool.free_blocks() == segs.live.size());  // each segment one free block again
  const size_t held = segs.held;
  CHECK(pool.release_cached() == held);
  CHECK(segs.held == 0);
}
