// bf16 matmul on a CPU without bf16 GEMM primitives (oneDNN 2.6 has none below AVX-512): oneDNN's
// f32 sgemm on f32 copies of cache-sized blocks, so the widened operands and the f32 product stay
// in the core's L2 cache instead of going out to memory and back as whole-tensor copies would.
// Same numbers as a native bf16 GEMM (bf16 operands widened exactly, f32 accumulation, the bias
// added in f32, one rounding per element), up to summation order.
//
// Two ways to cut the work, by which dimension is long:
// - rows (M >= K: a linear layer's forward and its input gradient, M = tokens): b (the weight) is
//   widened once; each task widens a block of a's rows, multiplies it into an f32 block and
//   rounds that block into out, the bias added on the way;
// - reduction (K > M: the weight gradient, K = tokens): each thread sums the products of its
//   range of K blocks into its own f32 (M x N) partial (sgemm with beta 1), and the partials are
//   added in thread order, the bias added and the sum rounded. As with oneDNN's own K-split,
//   the summation order then depends on the thread count.
// Inside the parallel loop oneDNN's sgemm runs single-threaded.
#include <dnnl.h>
#include <omp.h>

#include <algorithm>
#include <vector>

#include "core/cpu/kernels.h"
#include "core/cpu/parallel.h"
#include "core/error.h"
#include "core/kernel_math.h"

// clang-format off
#include "core/cpu/isa_begin.h"
#include "core/cpu/vec.h"
// clang-format on

namespace scion::cpu::SCION_ISA_NS {

namespace {

// Floats of widened operands and f32 product per task: 256 KiB, within the per-core L2 cache of
// current x86 cores (256 KiB on older Intel desktop cores, 512 KiB on Zen 3, 1-2 MiB on others),
// but at least kMinBlock rows or reduction steps, so that sgemm's packing of the other operand,
// repeated at every call, stays a small part of the work.
constexpr int64_t kBlockFloats = 64 * 1024;
constexpr int64_t kMinBlock = 64;
// The operand every task reads whole (the widened b when cutting rows, a thread's f32 partial
// product when cutting the reduction) must stay in cache too: at most 1 MiB of floats. Larger
// products (a 2048^3 GEMM, a ViT-B MLP weight) keep the whole-tensor copies.
constexpr int64_t kMaxSharedFloats = 256 * 1024;

// A 2-D view of bf16 elements by element strides.
struct View {
  const BFloat16* p;
  int64_t rows, cols, row_stride, col_stride;
};

// How an operand block was widened: a row-major (rows x cols) copy, or its transpose (the copy is
// (cols x rows)), whichever keeps the source's unit stride as the copy's inner one.
struct Widened {
  bool transposed;
  int64_t ld;
};

// dst (n_runs x len) = src's runs: run r holds len elements from src + r * stride.
void widen_runs(const BFloat16* src, int64_t n_runs, int64_t len, int64_t stride, float* dst) {
  for (int64_t r = 0; r < n_runs; ++r) {
    const BFloat16* s = src + r * stride;
    float* d = dst + r * len;
    for (int64_t i = 0; i < len; i += vec::kLanes)
      vec::store(d + i, vec::load(s + i, len - i), len - i);
  }
}

// Widens rows [r0, r0 + nr) x cols [c0, c0 + nc) of v into dst.
Widened widen_block(const View& v, int64_t r0, int64_t nr, int64_t c0, int64_t nc, float* dst) {
  const BFloat16* base = v.p + r0 * v.row_stride + c0 * v.col_stride;
  if (v.col_stride == 1 && (v.row_stride != 1 || nc >= nr)) {
    widen_runs(base, nr, nc, v.row_stride, dst);
    return {false, nc};
  }
  widen_runs(base, nc, nr, v.col_stride, dst);
  return {true, nr};
}

// c (m x n, ldc) = op(a) op(b) + beta c, on the widened blocks.
void sgemm(Widened wa, const float* a, Widened wb, const float* b, int64_t m, int64_t n, int64_t k,
           float beta, float* c, int64_t ldc) {
  dnnl_status_t st = dnnl_sgemm(wa.transposed ? 'T' : 'N', wb.transposed ? 'T' : 'N', m, n, k, 1.0f,
                                a, wa.ld, b, wb.ld, beta, c, ldc);
  SCION_CHECK(st == dnnl_success, "matmul: oneDNN sgemm failed with status ", int(st));
}

// out rows (nr x n, ld n) = bf16(c + bias) for c (nr x n, contiguous); bias (n) may be null.
void round_rows(const float* c, const float* bias, int64_t nr, int64_t n, BFloat16* out) {
  for (int64_t r = 0; r < nr; ++r)
    for (int64_t j = 0; j < n; j += vec::kLanes) {
      vec::V x = vec::load(c + r * n + j, n - j);
      if (bias) x = x + vec::load(bias + j, n - j);
      vec::store(out + r * n + j, x, n - j);
    }
}

// The (M, K) or (K, N) matrix of a (1, M, K) / (1, K, N) operand, unit stride in one dim.
View view_of(const Tensor& t) {
  const View v{t.data<BFloat16>(), t.size(1), t.size(2), t.strides()[1], t.strides()[2]};
  SCION_CHECK(v.col_stride == 1 || v.row_stride == 1,
              "matmul_bf16_widened: an operand needs unit stride in one dim, got strides (",
              v.row_stride, ", ", v.col_stride, ")");
  return v;
}

void by_rows(const View& a, const View& b, const float* bias, BFloat16* out) {
  const int64_t m = a.rows, k = a.cols, n = b.cols;
  const int64_t block = std::clamp<int64_t>(kBlockFloats / (k + n), kMinBlock, 1024);
  const int64_t tasks = (m + block - 1) / block;
  const int64_t per_thread = block * (k + n);
  Tensor scratch = empty({k * n + num_threads() * per_thread}, DType::f32);
  float* bw = scratch.data<float>();
  const Widened wb = widen_block(b, 0, k, 0, n, bw);
  parallel_for(0, tasks, 1, [&](int64_t t0, int64_t t1) {
    float* aw = bw + k * n + (omp_in_parallel() ? omp_get_thread_num() : 0) * per_thread;
    float* c = aw + block * k;
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t r0 = t * block, nr = std::min(block, m - r0);
      const Widened wa = widen_block(a, r0, nr, 0, k, aw);
      sgemm(wa, aw, wb, bw, nr, n, k, 0.0f, c, n);
      round_rows(c, bias, nr, n, out + r0 * n);
    }
  });
}

void by_reduction(const View& a, const View& b, const float* bias, BFloat16* out) {
  const int64_t m = a.rows, k = a.cols, n = b.cols;
  const int64_t block = std::clamp<int64_t>(kBlockFloats / (m + n), kMinBlock, 1024);
  const int64_t tasks = (k + block - 1) / block;
  const int nt = num_threads();
  const int64_t per_thread = m * n + block * (m + n);
  Tensor scratch = empty({nt * per_thread}, DType::f32);
  std::vector<char> used(size_t(nt), 0);
  parallel_for(0, tasks, 1, [&](int64_t t0, int64_t t1) {
    const int tid = omp_in_parallel() ? omp_get_thread_num() : 0;
    float* c = scratch.data<float>() + tid * per_thread;
    float* aw = c + m * n;
    float* bw = aw + block * m;
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t k0 = t * block, nk = std::min(block, k - k0);
      const Widened wa = widen_block(a, 0, m, k0, nk, aw);
      const Widened wb = widen_block(b, k0, nk, 0, n, bw);
      sgemm(wa, aw, wb, bw, m, n, nk, t == t0 ? 0.0f : 1.0f, c, n);
    }
    used[size_t(tid)] = 1;
  });
  // The partials of the threads that ran, added in thread order into the first one's, then the
  // bias added and the sum rounded, row by row in one parallel pass.
  std::vector<float*> parts;
  for (int t = 0; t < nt; ++t)
    if (used[size_t(t)]) parts.push_back(scratch.data<float>() + t * per_thread);
  parallel_for(0, m, std::max<int64_t>(1, 16384 / n), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      float* sum = parts[0] + r * n;
      for (size_t p = 1; p < parts.size(); ++p)
        for (int64_t j = 0; j < n; j += vec::kLanes)
          vec::store(sum + j, vec::load(sum + j, n - j) + vec::load(parts[p] + r * n + j, n - j),
                     n - j);
      round_rows(sum, bias, 1, n, out + r * n);
    }
  });
}

}  // namespace

bool matmul_bf16_widened(const Tensor& a, const Tensor& b, const Tensor& bias, const Tensor& out) {
  if (a.dtype() != DType::bf16 || b.dtype() != DType::bf16 || out.dtype() != DType::bf16 ||
      a.dim() != 3 || b.dim() != 3 || a.size(0) != 1 || b.size(0) != 1 || !out.is_contiguous() ||
      (bias.defined() && (bias.dtype() != DType::bf16 || !bias.is_contiguous())))
    return false;
  const int64_t m = a.size(1), k = a.size(2), n = b.size(2);
  // A wide output (n the longest dim) would want column blocks, and a large shared operand does
  // not stay in cache: both are left to the whole-tensor path.
  if (m == 0 || n == 0 || k == 0 || std::max(m, k) < n) return false;
  if ((k > m ? m * n : k * n) > kMaxSharedFloats) return false;
  SCION_CHECK(b.size(1) == k && out.numel() == m * n && (!bias.defined() || bias.numel() == n),
              "matmul_bf16_widened: shapes do not fit");
  const View va = view_of(a), vb = view_of(b);
  BFloat16* o = out.data<BFloat16>();
  std::vector<float> bias32;
  if (bias.defined()) {
    bias32.resize(size_t(n));
    widen_runs(bias.data<BFloat16>(), 1, n, n, bias32.data());
  }
  const float* bp = bias32.empty() ? nullptr : bias32.data();
  if (k > m)
    by_reduction(va, vb, bp, o);
  else
    by_rows(va, vb, bp, o);
  return true;
}

}  // namespace scion::cpu::SCION_ISA_NS

#include "core/cpu/isa_end.h"
