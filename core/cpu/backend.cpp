// The CPU backend: oneDNN for matmul, convolution and softmax in f32/bf16, hand-vectorized kernels
// (per ISA, core/cpu/dispatch.cpp) where they beat it, and the reference backend's plain loops for
// f64 matmul, convolution and softmax (oneDNN has no f64). The choices of which kernel runs for
// which dtype and layout live here, not in the ops.
// bf16 below AVX-512: oneDNN 2.6 has no bf16 primitives there (nor under ONEDNN_MAX_CPU_ISA=AVX2),
// so bf16 matmuls, convolutions and softmaxes run the f32 primitives on widened copies (exact) and
// round the result to bf16 once: the numbers of a native bf16 primitive (bf16 operands, f32
// accumulation, one rounding), up to summation order, as PyTorch's autocast gives on AVX2 CPUs.
// A linear layer's products widen cache-sized blocks instead of whole tensors (matmul_widened.cpp).
#include "core/backend.h"

#include "core/cpu/isa.h"
#include "core/cpu/kernels.h"
#include "core/cpu/onednn.h"
#include "core/ops.h"

namespace scion {

namespace {

// An f32 copy of t in the same memory format (NCHW or NHWC).
Tensor widen(const Tensor& t) {
  Tensor out = empty_like(t, DType::f32);
  out.copy_(t);
  return out;
}

// Whether a bf16 op runs on oneDNN's f32 primitives (see the top of the file).
bool bf16_via_f32(DType dt) {
  return dt == DType::bf16 && !cpu::onednn_has_bf16();
}

// A convolution that runs on widened copies: any bf16 one without oneDNN bf16, and bf16 depthwise
// ones everywhere (oneDNN 2.6's bf16 depthwise kernels are 2-3x slower than its f32 ones).
bool conv_via_f32(const Tensor& w, const ConvShape& cs, DType dt) {
  return bf16_via_f32(dt) || (dt == DType::bf16 && cs.groups == w.size(0) && w.size(1) == 1);
}

class CpuBackend final : public Backend {
 public:
  const char* name() const override { return "cpu"; }

  void* allocate(size_t bytes) override { return CachingAllocator::cpu().allocate(bytes); }
  void release(void* p, size_t bytes) override { CachingAllocator::cpu().release(p, bytes); }

  void copy(const Tensor& dst, const Tensor& src) override { cpu::copy(dst, src); }
  void fill(const Tensor& dst, double value) override { cpu::fill(dst, value); }
  void add_scaled(const Tensor& dst, const Tensor& src, double alpha) override {
    cpu::add_scaled(dst, src, alpha);
  }
  void scale(const Tensor& dst, double value) override { cpu::scale(dst, value); }

  void random_fill(const Tensor& t, const RandomFill& r) override { cpu::random_fill(t, r); }

  Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b) override {
    return cpu::binary(op, a, b);
  }
  Tensor unary(UnaryOp op, const Tensor& x) override { return cpu::unary(op, x); }
  Tensor gelu_backward(const Tensor& g, const Tensor& x, bool tanh_form) override {
    return cpu::gelu_backward(g, x, tanh_form);
  }
  Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) override {
    return cpu::where(cond, a, b);
  }
  void layer_scale_rows(const Tensor& x, const Tensor& t, const Tensor& s,
                        const Tensor& out) override {
    cpu::layer_scale_rows(x, t, s, out);
  }
  void layer_scale_rows_backward(const Tensor& g, const Tensor& t, const Tensor& s,
                                 const Tensor& dt, const Tensor& ds) override {
    cpu::layer_scale_rows_backward(g, t, s, dt, ds);
  }
  Tensor index_select(const Tensor& src, int64_t dim, const std::vector<int64_t>& idx,
                      const Shape& out_shape) override {
    return cpu::index_select(src, dim, idx, out_shape);
  }
  Tensor index_add(const Tensor& src, int64_t dim, const std::vector<int64_t>& idx,
                   const Shape& out_shape) override {
    return cpu::index_add(src, dim, idx, out_shape);
  }
  Tensor gather(const Tensor& src, int64_t dim, const Tensor& index) override {
    return cpu::gather(src, dim, index);
  }
  Tensor scatter_add(const Tensor& src, int64_t dim, const Tensor& index,
                     const Shape& out_shape) override {
    return cpu::scatter_add(src, dim, index, out_shape);
  }
  Tensor reduce_sum(const Tensor& x, const Shape& dims, bool keepdim) override {
    return cpu::reduce_sum(x, dims, keepdim);
  }
  void reduce_max(const Tensor& x, int64_t dim, bool keepdim, Tensor& values,
                  Tensor& indices) override {
    cpu::reduce_max(x, dim, keepdim, values, indices);
  }

  void matmul(const Tensor& a, const Tensor& b, const Tensor& bias, const Tensor& out) override {
    if (a.dtype() == DType::f64) return reference_backend().matmul(a, b, bias, out);
    if (bf16_via_f32(a.dtype())) {
      // Cache-sized blocks where the kernel takes the shapes (one matrix each, as linear layers
      // have), else whole widened copies.
      if (cpu::bf16_widened_blocks_enabled() &&
          cpu::matmul_bf16_widened(a, b, bias.defined() ? bias.reshape({-1}) : Tensor(), out))
        return;
      Tensor out32 = empty_like(out, DType::f32);
      cpu::matmul(widen(a), widen(b), bias.defined() ? widen(bias) : Tensor(), out32);
      Tensor(out).copy_(out32);
      return;
    }
    cpu::matmul(a, b, bias, out);
  }

  void conv2d_forward(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& y,
                      const ConvShape& cs) override {
    const int64_t o = w.size(0);
    if (x.dtype() == DType::f64) {
      reference_backend().conv2d_forward(x, w, b, y, cs);
    } else if (conv_via_f32(w, cs, x.dtype())) {
      Tensor y32 = empty_like(y, DType::f32);
      cpu::conv2d_forward(widen(x), w.to(DType::f32),
                          b.defined() ? b.to(DType::f32).contiguous() : Tensor(), y32, cs);
      Tensor(y).copy_(y32);
    } else if (x.dtype() == DType::f32 || !b.defined()) {
      cpu::conv2d_forward(x, w, b.defined() ? b.contiguous() : Tensor(), y, cs);
    } else {  // bf16 with a bias: oneDNN wants an f32 bias; adding it after rounds once more
      cpu::conv2d_forward(x, w, Tensor(), y, cs);
      Tensor(y).add_(b.reshape({1, o, 1, 1}));
    }
  }
  void conv2d_backward_data(const Tensor& dy, const Tensor& w, const Tensor& dx,
                            const ConvShape& cs) override {
    if (dy.dtype() == DType::f64) {
      reference_backend().conv2d_backward_data(dy, w, dx, cs);
    } else if (conv_via_f32(w, cs, dy.dtype())) {
      Tensor dx32 = empty_like(dx, DType::f32);
      cpu::conv2d_backward_data(widen(dy), w.to(DType::f32), dx32, cs);
      Tensor(dx).copy_(dx32);
    } else {
      cpu::conv2d_backward_data(dy, w, dx, cs);
    }
  }
  void conv2d_backward_weights(const Tensor& x, const Tensor& dy, const Tensor& dw,
                               const ConvShape& cs) override {
    if (x.dtype() == DType::f64) {
      reference_backend().conv2d_backward_weights(x, dy, dw, cs);
    } else if (conv_via_f32(dw, cs, x.dtype())) {
      Tensor dw32 = empty(dw.shape(), DType::f32);
      cpu::conv2d_backward_weights(widen(x), widen(dy), dw32, Tensor(), cs);
      Tensor(dw).copy_(dw32);
    } else {
      cpu::conv2d_backward_weights(x, dy, dw, Tensor(), cs);
    }
  }

  void layer_norm_forward(const Tensor& x, const Tensor& w, const Tensor& b, double eps, int64_t d,
                          DType out, Tensor& y, Tensor& mean, Tensor& rstd) override {
    cpu::layer_norm_forward(x, w, b, eps, d, out, y, mean, rstd);
  }
  void layer_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& w, const Tensor& mean,
                           const Tensor& rstd, int64_t d, Tensor& dx, Tensor& dw,
                           Tensor& db) override {
    cpu::layer_norm_backward(dy, x, w, mean, rstd, d, dx, dw, db);
  }

  // Plain softmax over the last dim runs on scion's kernel (faster than oneDNN 2.6 on short rows),
  // other f32/bf16 cases on oneDNN (any axis), f64 on reference loops over the last dim.
  void softmax_forward(bool log, int64_t dim, const Tensor& x, const Tensor& y) override {
    if (x.numel() == 0) return;
    if (x.dtype() == DType::f64) {
      reference_backend().softmax_forward(log, dim, x, y);
    } else if (!log && dim == x.dim() - 1) {
      cpu::softmax_lastdim_forward(x, y);
    } else if (bf16_via_f32(x.dtype())) {
      Tensor y32 = empty_like(y, DType::f32);
      cpu::softmax_forward(log, int(dim), widen(x), y32);
      Tensor(y).copy_(y32);
    } else {
      cpu::softmax_forward(log, int(dim), x, y);
    }
  }
  void softmax_backward(bool log, int64_t dim, const Tensor& y, const Tensor& dy,
                        const Tensor& dx) override {
    if (y.numel() == 0) return;
    if (y.dtype() == DType::f64) {
      reference_backend().softmax_backward(log, dim, y, dy, dx);
    } else if (!log && dim == y.dim() - 1) {
      cpu::softmax_lastdim_backward(y, dy, dx);
    } else if (bf16_via_f32(y.dtype())) {
      Tensor dx32 = empty_like(dx, DType::f32);
      cpu::softmax_backward(log, int(dim), widen(y), widen(dy), dx32);
      Tensor(dx).copy_(dx32);
    } else {
      cpu::softmax_backward(log, int(dim), y, dy, dx);
    }
  }

  void attention_forward(const Tensor& qkv, int64_t heads, double scale, const Tensor& out,
                         const Tensor& lse) override {
    if (qkv.numel() == 0) return;
    if (qkv.dtype() == DType::f64)
      return reference_backend().attention_forward(qkv, heads, scale, out, lse);
    cpu::attention_forward(qkv, heads, scale, out, lse);
  }
  void attention_backward(const Tensor& qkv, const Tensor& out, const Tensor& dout,
                          const Tensor& lse, int64_t heads, double scale,
                          const Tensor& dqkv) override {
    if (qkv.numel() == 0) return;
    if (qkv.dtype() == DType::f64)
      return reference_backend().attention_backward(qkv, out, dout, lse, heads, scale, dqkv);
    cpu::attention_backward(qkv, out, dout, lse, heads, scale, dqkv);
  }

  // log_softmax on the kernels above, then the mean of -q * lp.
  Tensor cross_entropy(const Tensor& logits, const Tensor& q, const Tensor& lp) override {
    softmax_forward(true, 1, logits, lp);
    return cpu::reduce_sum(cpu::binary(BinaryOp::mul, q, lp), {}, false) *
           (-1.0 / double(logits.size(0)));
  }

  void adamw_step(const Tensor& p, const Tensor& g, const Tensor& m, const Tensor& v,
                  const OptimStep& s) override {
    cpu::adamw_step(p, g, m, v, s);
  }
  void sgd_step(const Tensor& p, const Tensor& g, const Tensor& m, const OptimStep& s) override {
    cpu::sgd_step(p, g, m, s);
  }
  double sum_squares(const Tensor& x) override { return cpu::sum_squares(x); }
  void add_sum_squares(const Tensor& x, const Tensor& total) override {
    *total.data<double>() += cpu::sum_squares(x);
  }
  void scale_by(const Tensor& dst, const Tensor& s) override {
    const double v = *s.data<double>();
    if (v != 1.0) cpu::scale(dst, v);  // x * 1 is x: no pass over dst
  }
};

}  // namespace

namespace cpu {
Backend& backend() {
  static CpuBackend b;
  return b;
}
}  // namespace cpu

}  // namespace scion
