// The residual add of a layer-scaled branch over rows of c contiguous elements, parallel over
// rows: out = x + t s with s (c) repeated along the rows (ConvNeXt's x + gamma * branch in its
// channels-last layout), and its backward: dt = g s, and ds = the column sums of g t. Each
// product is rounded to x's dtype before the sum (this file is compiled without FMA
// contraction), so out and dt are bit for bit add(x, mul(t, s)) and mul's gradient narrowed to
// t's dtype; ds sums the same products in another order: per thread in acc_t, then the threads'
// partial sums in thread order (fixed for a given thread count). t may be bf16 for an f32 x
// (autocast's bf16 branch, widened exactly as it is read).
#include <vector>

#include "core/cpu/kernels.h"
#include "core/cpu/parallel.h"
// clang-format off
#include "core/cpu/isa_begin.h"
// clang-format on

namespace scion::cpu::SCION_ISA_NS {

namespace {

// f(T tag, H tag) for x's dtype T and t's dtype H (T, or bf16 for an f32 x).
template <class F>
void with_types(DType x, DType t, const char* what, F&& f) {
  dispatch_floating(x, what, [&](auto xtag) {
    using T = decltype(xtag);
    if constexpr (std::is_same_v<T, float>) {
      if (t == DType::bf16) return f(xtag, BFloat16());
    }
    SCION_ASSERT(t == x, what, ": t of ", dtype_name(t), " with x of ", dtype_name(x));
    f(xtag, xtag);
  });
}

int64_t row_grain(int64_t c) {
  return std::max<int64_t>(1, 16384 / std::max<int64_t>(c, 1));
}

}  // namespace

void layer_scale_rows(const Tensor& x, const Tensor& t, const Tensor& s, const Tensor& out) {
  const int64_t c = s.numel(), rows = c == 0 ? 0 : x.numel() / c;
  with_types(x.dtype(), t.dtype(), "layer_scale_rows", [&](auto xtag, auto ttag) {
    using T = decltype(xtag);
    using H = decltype(ttag);
    using A = acc_t<T>;
    const T* xp = x.data<T>();
    const H* tp = t.data<H>();
    const T* sp = s.data<T>();
    T* op = out.data<T>();
    parallel_for(0, rows, row_grain(c), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const T* xr = xp + r * c;
        const H* tr = tp + r * c;
        T* o = op + r * c;
        for (int64_t j = 0; j < c; ++j) {
          const T product = T(A(tr[j]) * A(sp[j]));
          o[j] = T(A(xr[j]) + A(product));
        }
      }
    });
  });
}

void layer_scale_rows_backward(const Tensor& g, const Tensor& t, const Tensor& s, const Tensor& dt,
                               const Tensor& ds) {
  const int64_t c = s.numel(), rows = c == 0 ? 0 : g.numel() / c;
  const DType partner = t.defined() ? t.dtype() : dt.dtype();
  with_types(g.dtype(), partner, "layer_scale_rows_backward", [&](auto xtag, auto ttag) {
    using T = decltype(xtag);
    using H = decltype(ttag);
    using A = acc_t<T>;
    const T* gp = g.data<T>();
    const H* tp = t.defined() ? t.data<H>() : nullptr;
    const T* sp = s.data<T>();
    H* dp = dt.defined() ? dt.data<H>() : nullptr;
    const int nt = num_threads();
    // Per-thread column sums; thread t of the parallel_for owns row chunk t.
    std::vector<A> partial(ds.defined() ? size_t(nt) * size_t(c) : 0, A(0));
    parallel_for(0, rows, row_grain(c), [&](int64_t r0, int64_t r1) {
      A* sums = ds.defined() ? partial.data() +
                                   size_t(omp_in_parallel() ? omp_get_thread_num() : 0) * size_t(c)
                             : nullptr;
      for (int64_t r = r0; r < r1; ++r) {
        const T* gr = gp + r * c;
        if (dp) {
          H* d = dp + r * c;
          for (int64_t j = 0; j < c; ++j) d[j] = H(A(T(A(gr[j]) * A(sp[j]))));
        }
        if (sums) {
          const H* tr = tp + r * c;
          for (int64_t j = 0; j < c; ++j) sums[j] += A(T(A(gr[j]) * A(tr[j])));
        }
      }
    });
    if (!ds.defined()) return;
    T* out = ds.data<T>();
    for (int64_t j = 0; j < c; ++j) {
      A total = 0;
      for (int i = 0; i < nt; ++i) total += partial[size_t(i) * size_t(c) + size_t(j)];
      out[j] = T(total);
    }
  });
}

}  // namespace scion::cpu::SCION_ISA_NS

#include "core/cpu/isa_end.h"
