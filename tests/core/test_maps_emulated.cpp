// The CUDA backend's contiguous elementwise maps (core/cuda/maps.h) on the host: every thread of
// the grid map_flat and map_broadcast launch (launch_1d over n / V threads), each thread's body
// run as the GPU runs it, against one element at a time with the same f, load and store: so the
// vector width chosen for the pointers and the row length, the grid-stride loop over whole vectors,
// the n % V elements after them, in-place maps, and the broadcast operand's index (a row repeated,
// a value per row, one value) are checked bit for bit on any machine; on a GPU, test_backend_ops'
// [cuda] cases check the same kernels against the CPU.
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include "core/cuda/maps.h"
#include "core/cuda/plan.h"
#include "tests/support.h"

using namespace scion;
using namespace scion::cuda;

namespace {

using Bc = StridedPlan::Broadcast;

// n elements of T from `seed` (values of a few bits, so f's results are exact in f32) after `skew`
// elements, in a buffer aligned to 64 bytes; NaN-like fill elsewhere.
template <class T>
struct Buffer {
  Buffer(int64_t n, int skew, uint64_t seed) : storage(size_t(n + skew) * sizeof(T) + 64) {
    const uintptr_t base = reinterpret_cast<uintptr_t>(storage.data());
    data = reinterpret_cast<T*>((base + 63) / 64 * 64) + skew;
    for (int64_t i = 0; i < n; ++i) {
      seed = seed * 6364136223846793005ull + 1442695040888963407ull;
      store(data + i, double(int64_t(seed >> 59) - 16) / 8);  // -2 .. 1.875
    }
  }
  std::vector<unsigned char> storage;
  T* data;
};

template <class T>
std::vector<unsigned char> bytes_of(const T* p, int64_t n) {
  std::vector<unsigned char> b(size_t(n) * sizeof(T));
  std::memcpy(b.data(), p, b.size());
  return b;
}

// The grid map_flat launches, launch_1d(n / V), on a GPU of one multiprocessor: at most 32 blocks,
// so the larger maps loop (grid-stride) as on a large GPU.
template <int V, class Run>
void run_threads(int64_t n, Run run) {
  const Launch l = launch_1d(n / V, 1);
  const int64_t count = int64_t(l.blocks) * l.threads;
  for (int64_t index = 0; index < count; ++index) run(index, count);
}

// out = f(in0, in1) over n elements through map_thread, against an element-at-a-time loop.
template <class O, class I0, class I1, class F>
void check_flat(int64_t n, int skew, bool in_place, const F& f, int want_width) {
  INFO(n << " elements, " << skew << " elements off alignment" << (in_place ? ", in place" : ""));
  Buffer<I0> a(n, skew, 1);
  Buffer<I1> b(n, skew, 2);
  Buffer<O> out(n, skew, 3), ref(n, skew, 3);
  for (int64_t i = 0; i < n; ++i) store(ref.data + i, f(load(a.data + i), load(b.data + i)));
  O* dst = out.data;
  if constexpr (std::is_same_v<O, I0>)
    if (in_place) dst = a.data;
  const int v = map_width(n, dst, a.data, b.data);
  CHECK(v == want_width);
  if (v == pack_width<O, I0, I1>())
    run_threads<pack_width<O, I0, I1>()>(n, [&](int64_t index, int64_t count) {
      map_thread<pack_width<O, I0, I1>()>(index, count, n, f, dst, a.data, b.data);
    });
  else
    run_threads<1>(n, [&](int64_t index, int64_t count) {
      map_thread<1>(index, count, n, f, dst, a.data, b.data);
    });
  CHECK(bytes_of(dst, n) == bytes_of(ref.data, n));
}

// out[i] = f(a[i], b[j]) with b broadcast as M, through map_broadcast_thread.
template <Bc M, class O, class A, class B, class F>
void check_broadcast(int64_t n, int64_t period, int skew, const F& f, int want_width) {
  INFO(n << " elements, period " << period << ", " << skew << " elements off alignment");
  const int64_t nb = M == Bc::row ? period : M == Bc::row_value ? n / period : 1;
  Buffer<A> a(n, skew, 4);
  Buffer<B> b(nb, skew, 5);
  Buffer<O> out(n, skew, 6), ref(n, skew, 6);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t j = M == Bc::row ? i % period : M == Bc::row_value ? i / period : 0;
    store(ref.data + i, f(load(a.data + i), load(b.data + j)));
  }
  const int v = map_broadcast_width<M>(n, period, out.data, a.data, b.data);
  CHECK(v == want_width);
  constexpr int kWide = pack_width<O, A, B>();
  if (v == kWide)
    run_threads<kWide>(n, [&](int64_t index, int64_t count) {
      map_broadcast_thread<kWide, M>(index, count, n, period, f, out.data, a.data, b.data);
    });
  else
    run_threads<1>(n, [&](int64_t index, int64_t count) {
      map_broadcast_thread<1, M>(index, count, n, period, f, out.data, a.data, b.data);
    });
  CHECK(bytes_of(out.data, n) == bytes_of(ref.data, n));
}

}  // namespace

TEST_CASE("cuda maps: vector maps on every thread of the grid match one element at a time",
          "[cuda-host]") {
  const auto f = [](auto x, auto y) { return x * 3 - y; };
  // f32: vectors of 4; bf16 with bf16: 8; a mix (autocast's casts, f32 and bf16 residual adds): 4.
  for (int64_t n : {1, 3, 4, 7, 9, 31, 1000, 1003, 70001}) {
    const int w32 = n >= 4 ? 4 : 1, w16 = n >= 8 ? 8 : 1;
    check_flat<float, float, float>(n, 0, false, f, w32);
    check_flat<float, float, float>(n, 0, true, f, w32);
    check_flat<bf16_t, bf16_t, bf16_t>(n, 0, false, f, w16);
    check_flat<bf16_t, bf16_t, bf16_t>(n, 0, true, f, w16);
    check_flat<float, bf16_t, float>(n, 0, false, f, w32);
    check_flat<bf16_t, float, bf16_t>(n, 0, false, f, w32);
    check_flat<double, double, double>(n, 0, false, f, n >= 2 ? 2 : 1);
    // An operand one element off its vector's alignment: one element at a time.
    check_flat<float, float, float>(n, 1, false, f, 1);
    check_flat<bf16_t, bf16_t, bf16_t>(n, 1, true, f, 1);
  }
}

TEST_CASE("cuda maps: broadcast maps on every thread of the grid match one element at a time",
          "[cuda-host]") {
  const auto f = [](auto x, auto y) { return x * y + x; };
  // A row repeated: ConvNeXt's layer scale over 48 channels, ViT-T's 192; a row of 6 is not a
  // multiple of 4 (one element at a time).
  for (int64_t rows : {1, 5, 333}) {
    check_broadcast<Bc::row, float, float, float>(rows * 48, 48, 0, f, 4);
    check_broadcast<Bc::row, bf16_t, bf16_t, bf16_t>(rows * 48, 48, 0, f, 8);
    check_broadcast<Bc::row, float, float, bf16_t>(rows * 192, 192, 0, f, 4);
    check_broadcast<Bc::row, float, float, float>(rows * 6, 6, 0, f, 1);
    check_broadcast<Bc::row, bf16_t, bf16_t, bf16_t>(rows * 12, 12, 0, f, 1);
    check_broadcast<Bc::row, float, float, float>(rows * 48, 48, 1, f, 1);
  }
  // A value per row: drop path's per-sample mask over rows of 197 x 192, 64 or 3 elements.
  for (int64_t images : {1, 2, 7}) {
    check_broadcast<Bc::row_value, float, float, float>(images * 197 * 192, 197 * 192, 0, f, 4);
    check_broadcast<Bc::row_value, bf16_t, bf16_t, bf16_t>(images * 64, 64, 0, f, 8);
    check_broadcast<Bc::row_value, float, float, float>(images * 3, 3, 0, f, 1);
    check_broadcast<Bc::row_value, bf16_t, bf16_t, float>(images * 64, 64, 0, f, 4);
  }
  // One value: tensor-scalar ops, any length.
  for (int64_t n : {1, 5, 1001, 4096}) {
    check_broadcast<Bc::scalar, float, float, float>(n, 1, 0, f, n >= 4 ? 4 : 1);
    check_broadcast<Bc::scalar, bf16_t, bf16_t, bf16_t>(n, 1, 0, f, n >= 8 ? 8 : 1);
    check_broadcast<Bc::scalar, bf16_t, bf16_t, bf16_t>(n, 1, 1, f, 1);
  }
}
