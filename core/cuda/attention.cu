// Multi-head attention on timm's packed qkv (B, N, 3, H, d): q, k and v are gathered per head
// into (B*H, N, d) buffers, the scores S = scale q k^T come from one batched cuBLASLt GEMM in f32
// (f64 for f64), a row kernel turns them into the log-sum-exp and the probabilities P, and
// P v is a second GEMM. The backward recomputes P from lse and runs four more GEMMs:
//   dP = dO v^T, dS = P o (dP - rowsum(dO o O)) scale, dq = dS k, dk = dS^T q, dv = P^T dO.
// Memory is O(B H N^2) for the scores. bf16 with head dims 32 and 64 (timm's ViTs) takes the
// fused kernels of flash.cu instead, which keep the scores on chip; this path serves f32 and f64
// (and other head dims).
#include "core/cuda/common.cuh"
#include "core/cuda/flash.h"
#include "core/ops.h"

namespace scion::cuda {

namespace {

struct Geo {
  int64_t b, n, h, d, c;
  Geo(const Tensor& qkv, int64_t heads)
      : b(qkv.size(0)), n(qkv.size(1)), h(heads), d(qkv.size(2) / 3 / heads), c(qkv.size(2) / 3) {}
  int64_t per_head() const { return b * h * n * d; }
};

// The score/probability dtype: f64 for f64 inputs, else f32.
DType score_type(DType dt) {
  return dt == DType::f64 ? DType::f64 : DType::f32;
}

// Batched row-major product on (batch, rows, cols) buffers with row pitches and batch strides;
// `ta`/`tb` use the transpose of a stored (k, m) / (n, k) matrix.
void bmm(DType in, DType out, int64_t batch, int64_t m, int64_t n, int64_t k, const void* a,
         bool ta, int64_t lda, int64_t sa, const void* b, bool tb, int64_t ldb, int64_t sb, void* c,
         int64_t ldc, int64_t sc, double alpha) {
  Gemm g;
  g.in = in;
  g.out = out;
  g.batch = batch;
  g.m = m;
  g.n = n;
  g.k = k;
  g.a = a;
  g.la = ta ? matrix_layout(m, k, 1, lda, sa) : matrix_layout(m, k, lda, 1, sa);
  g.b = b;
  g.lb = tb ? matrix_layout(k, n, 1, ldb, sb) : matrix_layout(k, n, ldb, 1, sb);
  g.c = c;
  g.ldc = ldc;
  g.stride_c = sc;
  g.alpha = alpha;
  gemm(g);
}

// Score rows are padded to a multiple of 8 elements, so every row and every batch element of
// the N x N matrices starts 16-byte aligned (cuBLASLt's vectorized kernels need that; N = 197 at
// 224 px).
int64_t padded(int64_t n) {
  return (n + 7) / 8 * 8;
}

// qkv (B, N, 3, H, d) -> q, k, v each (B*H, N, d); `back` scatters the other way.
template <class T>
void split_heads(const Geo& g, T* qkv, T* q, T* k, T* v, bool back) {
  const int64_t n = g.n, h = g.h, d = g.d;
  for_index(g.b * n * 3 * h * d, [=] __device__(int64_t e) {
    const int64_t ed = e % d, hh = (e / d) % h, which = (e / (d * h)) % 3,
                  i = (e / (d * h * 3)) % n, bb = e / (d * h * 3 * n);
    T* dst = which == 0 ? q : (which == 1 ? k : v);
    const int64_t o = ((bb * h + hh) * n + i) * d + ed;
    if (back)
      qkv[e] = dst[o];
    else
      dst[o] = qkv[e];
  });
}

// (B*H, N, d) <-> (B, N, H, d).
template <class T>
void merge_heads(const Geo& g, T* heads, T* merged, bool back) {
  const int64_t n = g.n, h = g.h, d = g.d;
  for_index(g.b * n * h * d, [=] __device__(int64_t e) {
    const int64_t ed = e % d, hh = (e / d) % h, i = (e / (d * h)) % n, bb = e / (d * h * n);
    const int64_t o = ((bb * h + hh) * n + i) * d + ed;
    if (back)
      heads[o] = merged[e];
    else
      merged[e] = heads[o];
  });
}

// Rows of S (rows x n): lse[r] = logsumexp(S[r]); p = ::exp(S - lse) as T (and kept in S when
// `keep`).
template <class T, class S>
__global__ void score_rows(S* s, int64_t rows, int64_t n, int64_t ld, S* lse, const S* given_lse,
                           T* p, bool keep) {
  __shared__ S shared[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    S* row = s + r * ld;
    S l;
    if (given_lse) {
      l = given_lse[r];
    } else {
      S mx = -INFINITY;
      for (int64_t j = threadIdx.x; j < n; j += blockDim.x) mx = fmax(mx, row[j]);
      mx = block_max(mx, shared);
      S sum = 0;
      for (int64_t j = threadIdx.x; j < n; j += blockDim.x) sum += ::exp(row[j] - mx);
      sum = block_sum(sum, shared);
      l = mx + ::log(sum);
      if (threadIdx.x == 0) lse[r] = l;
    }
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
      const S e = ::exp(row[j] - l);
      store(p + r * ld + j, e);
      if (keep) row[j] = e;
    }
  }
}

unsigned blocks_for(int64_t rows) {
  return unsigned(std::max<int64_t>(1, std::min<int64_t>(rows, 65535)));
}

}  // namespace

void attention_forward_kernel(const Tensor& qkv, int64_t heads, double scale, const Tensor& out,
                              const Tensor& lse) {
  const Geo g(qkv, heads);
  if (qkv.numel() == 0) return;
  if (flash_attention_fits(qkv, heads, {out}))
    return flash_attention_forward(qkv, heads, scale, out, lse);
  const DType dt = qkv.dtype(), st = score_type(dt);
  Tensor q = dev_empty({g.b * g.h, g.n, g.d}, dt), k = dev_empty({g.b * g.h, g.n, g.d}, dt),
         v = dev_empty({g.b * g.h, g.n, g.d}, dt);
  const int64_t bh = g.b * g.h, rows = bh * g.n, n = g.n, d = g.d, np = padded(g.n);
  Tensor s = dev_empty({bh, n, np}, st), p = dev_empty({bh, n, np}, dt);
  Tensor o = dev_empty({bh, n, d}, dt);
  SCION_DISPATCH_FLOATING(dt, "attention", T, {
    using S = acc<T>;
    split_heads<T>(g, static_cast<T*>(qkv.raw_data()), static_cast<T*>(q.raw_data()),
                   static_cast<T*>(k.raw_data()), static_cast<T*>(v.raw_data()), false);
    bmm(dt, st, bh, n, n, d, q.raw_data(), false, d, n * d, k.raw_data(), true, d, n * d,
        s.raw_data(), np, n * np, scale);
    score_rows<T, S><<<blocks_for(rows), 128, 0, stream()>>>(
        static_cast<S*>(s.raw_data()), rows, n, np, static_cast<S*>(lse.raw_data()), nullptr,
        static_cast<T*>(p.raw_data()), false);
    SCION_CUDA_LAUNCHED("attention scores");
    bmm(dt, dt, bh, n, d, n, p.raw_data(), false, np, n * np, v.raw_data(), false, d, n * d,
        o.raw_data(), d, n * d, 1.0);
    merge_heads<T>(g, static_cast<T*>(o.raw_data()), static_cast<T*>(out.raw_data()), false);
  });
}

namespace {

// D[r] = sum_e dO[r, e] O[r, e] over the merged (B, N, H, d) layout, row r = (b H + h) N + i.
template <class T, class S>
void row_dot(const Geo& g, const T* dout, const T* out, S* dvec) {
  const int64_t n = g.n, h = g.h, d = g.d;
  for_index(g.b * h * n, [=] __device__(int64_t r) {
    const int64_t i = r % n, hh = (r / n) % h, bb = r / (n * h);
    const int64_t base = ((bb * n + i) * h + hh) * d;
    S acc_v = 0;
    for (int64_t e = 0; e < d; ++e) acc_v += S(load(dout + base + e)) * S(load(out + base + e));
    dvec[r] = acc_v;
  });
}

}  // namespace

void attention_backward_kernel(const Tensor& qkv, const Tensor& out, const Tensor& dout,
                               const Tensor& lse, int64_t heads, double scale, const Tensor& dqkv) {
  const Geo g(qkv, heads);
  if (qkv.numel() == 0) return;
  const Tensor gout = dout.is_contiguous() ? dout : dout.contiguous();
  if (flash_attention_fits(qkv, heads, {out, gout, dqkv}))
    return flash_attention_backward(qkv, out, gout, lse, heads, scale, dqkv);
  const DType dt = qkv.dtype(), st = score_type(dt);
  const int64_t bh = g.b * g.h, rows = bh * g.n, n = g.n, d = g.d, np = padded(g.n);
  const Shape hs{bh, n, d}, ss{bh, n, np};
  Tensor q = dev_empty(hs, dt), k = dev_empty(hs, dt), v = dev_empty(hs, dt),
         dO = dev_empty(hs, dt);
  Tensor s = dev_empty(ss, st), p = dev_empty(ss, dt), dp = dev_empty(ss, st),
         ds = dev_empty(ss, dt);
  Tensor dvec = dev_empty({rows}, st);
  Tensor dq = dev_empty(hs, dt), dk = dev_empty(hs, dt), dv = dev_empty(hs, dt);
  SCION_DISPATCH_FLOATING(dt, "attention", T, {
    using S = acc<T>;
    split_heads<T>(g, static_cast<T*>(qkv.raw_data()), static_cast<T*>(q.raw_data()),
                   static_cast<T*>(k.raw_data()), static_cast<T*>(v.raw_data()), false);
    merge_heads<T>(g, static_cast<T*>(dO.raw_data()), static_cast<T*>(gout.raw_data()), true);
    bmm(dt, st, bh, n, n, d, q.raw_data(), false, d, n * d, k.raw_data(), true, d, n * d,
        s.raw_data(), np, n * np, scale);
    score_rows<T, S><<<blocks_for(rows), 128, 0, stream()>>>(
        static_cast<S*>(s.raw_data()), rows, n, np, nullptr, static_cast<const S*>(lse.raw_data()),
        static_cast<T*>(p.raw_data()), true);
    SCION_CUDA_LAUNCHED("attention scores");
    bmm(dt, st, bh, n, n, d, dO.raw_data(), false, d, n * d, v.raw_data(), true, d, n * d,
        dp.raw_data(), np, n * np, 1.0);
    row_dot<T, S>(g, static_cast<const T*>(gout.raw_data()), static_cast<const T*>(out.raw_data()),
                  static_cast<S*>(dvec.raw_data()));
    {
      const S* pp = static_cast<const S*>(s.raw_data());  // P in the score dtype
      const S* dpp = static_cast<const S*>(dp.raw_data());
      const S* dvp = static_cast<const S*>(dvec.raw_data());
      T* dsp = static_cast<T*>(ds.raw_data());
      const S sc = S(scale);
      for_index(rows * n, [=] __device__(int64_t e) {
        const int64_t r = e / n, at = r * np + e % n;
        store(dsp + at, pp[at] * (dpp[at] - dvp[r]) * sc);
      });
    }
    bmm(dt, dt, bh, n, d, n, ds.raw_data(), false, np, n * np, k.raw_data(), false, d, n * d,
        dq.raw_data(), d, n * d, 1.0);
    bmm(dt, dt, bh, n, d, n, ds.raw_data(), true, np, n * np, q.raw_data(), false, d, n * d,
        dk.raw_data(), d, n * d, 1.0);
    bmm(dt, dt, bh, n, d, n, p.raw_data(), true, np, n * np, dO.raw_data(), false, d, n * d,
        dv.raw_data(), d, n * d, 1.0);
    split_heads<T>(g, static_cast<T*>(dqkv.raw_data()), static_cast<T*>(dq.raw_data()),
                   static_cast<T*>(dk.raw_data()), static_cast<T*>(dv.raw_data()), true);
  });
}

}  // namespace scion::cuda
