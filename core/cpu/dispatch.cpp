// The kernels of kernel_api.inc as scion::cpu functions: each call runs the variant compiled for
// active_isa() (isa_plain, isa_avx2 or isa_avx512), picked once at its first call, as PyTorch's
// DispatchStub does for its CPU_CAPABILITY builds.
#include <cstdlib>
#include <string>

#include "core/cpu/isa.h"
#include "core/cpu/kernels.h"

namespace scion::cpu {

#if defined(__x86_64__)
namespace {

template <class F>
F pick(F plain, F avx2, F avx512) {
  switch (active_isa()) {
    case Isa::plain:
      return plain;
    case Isa::avx2:
      return avx2;
    default:
      return avx512;
  }
}

}  // namespace

#define SCION_KERNEL(name)   \
  static const auto kernel = \
      pick<decltype(&isa_plain::name)>(&isa_plain::name, &isa_avx2::name, &isa_avx512::name)
#else
// Other architectures have the plain level only (CMakeLists.txt compiles no other).
#define SCION_KERNEL(name) constexpr auto kernel = &isa_plain::name
#endif

void copy(const Tensor& dst, const Tensor& src) {
  SCION_KERNEL(copy);
  kernel(dst, src);
}
void fill(const Tensor& dst, double value) {
  SCION_KERNEL(fill);
  kernel(dst, value);
}
void add_scaled(const Tensor& dst, const Tensor& src, double alpha) {
  SCION_KERNEL(add_scaled);
  kernel(dst, src, alpha);
}
void scale(const Tensor& dst, double value) {
  SCION_KERNEL(scale);
  kernel(dst, value);
}
void random_fill(const Tensor& t, const RandomFill& r) {
  SCION_KERNEL(random_fill);
  kernel(t, r);
}
Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b) {
  SCION_KERNEL(binary);
  return kernel(op, a, b);
}
Tensor unary(UnaryOp op, const Tensor& x) {
  SCION_KERNEL(unary);
  return kernel(op, x);
}
void layer_scale_rows(const Tensor& x, const Tensor& t, const Tensor& s, const Tensor& out) {
  SCION_KERNEL(layer_scale_rows);
  kernel(x, t, s, out);
}
void layer_scale_rows_backward(const Tensor& g, const Tensor& t, const Tensor& s, const Tensor& dt,
                               const Tensor& ds) {
  SCION_KERNEL(layer_scale_rows_backward);
  kernel(g, t, s, dt, ds);
}
Tensor gelu_backward(const Tensor& g, const Tensor& x, bool tanh_form) {
  SCION_KERNEL(gelu_backward);
  return kernel(g, x, tanh_form);
}
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  SCION_KERNEL(where);
  return kernel(cond, a, b);
}
Tensor reduce_sum(const Tensor& x, const Shape& dims, bool keepdim) {
  SCION_KERNEL(reduce_sum);
  return kernel(x, dims, keepdim);
}
void reduce_max(const Tensor& x, int64_t dim, bool keepdim, Tensor& values, Tensor& indices) {
  SCION_KERNEL(reduce_max);
  kernel(x, dim, keepdim, values, indices);
}
void layer_norm_forward(const Tensor& x, const Tensor& w, const Tensor& b, double eps, int64_t d,
                        DType out, Tensor& y, Tensor& mean, Tensor& rstd) {
  SCION_KERNEL(layer_norm_forward);
  kernel(x, w, b, eps, d, out, y, mean, rstd);
}
void layer_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& w, const Tensor& mean,
                         const Tensor& rstd, int64_t d, Tensor& dx, Tensor& dw, Tensor& db) {
  SCION_KERNEL(layer_norm_backward);
  kernel(dy, x, w, mean, rstd, d, dx, dw, db);
}
void adamw_step(const Tensor& p, const Tensor& g, const Tensor& m, const Tensor& v,
                const OptimStep& s) {
  SCION_KERNEL(adamw_step);
  kernel(p, g, m, v, s);
}
void sgd_step(const Tensor& p, const Tensor& g, const Tensor& m, const OptimStep& s) {
  SCION_KERNEL(sgd_step);
  kernel(p, g, m, s);
}
double sum_squares(const Tensor& x) {
  SCION_KERNEL(sum_squares);
  return kernel(x);
}
void gelu_erf_forward(const Tensor& x, const Tensor& y) {
  SCION_KERNEL(gelu_erf_forward);
  kernel(x, y);
}
void gelu_erf_backward(const Tensor& g, const Tensor& x, const Tensor& dx) {
  SCION_KERNEL(gelu_erf_backward);
  kernel(g, x, dx);
}
void softmax_lastdim_forward(const Tensor& x, const Tensor& y) {
  SCION_KERNEL(softmax_lastdim_forward);
  kernel(x, y);
}
void softmax_lastdim_backward(const Tensor& y, const Tensor& dy, const Tensor& dx) {
  SCION_KERNEL(softmax_lastdim_backward);
  kernel(y, dy, dx);
}
void attention_forward(const Tensor& qkv, int64_t heads, double scale, const Tensor& out,
                       const Tensor& lse) {
  SCION_KERNEL(attention_forward);
  kernel(qkv, heads, scale, out, lse);
}
void attention_backward(const Tensor& qkv, const Tensor& out, const Tensor& dout, const Tensor& lse,
                        int64_t heads, double scale, const Tensor& dqkv) {
  SCION_KERNEL(attention_backward);
  kernel(qkv, out, dout, lse, heads, scale, dqkv);
}
bool matmul_bf16_widened(const Tensor& a, const Tensor& b, const Tensor& bias, const Tensor& out) {
  SCION_KERNEL(matmul_bf16_widened);
  return kernel(a, b, bias, out);
}
void depthwise_nhwc_forward(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& y,
                            const ConvShape& cs) {
  SCION_KERNEL(depthwise_nhwc_forward);
  kernel(x, w, b, y, cs);
}
void depthwise_nhwc_backward_weights(const Tensor& x, const Tensor& dy, const Tensor& dw,
                                     const ConvShape& cs) {
  SCION_KERNEL(depthwise_nhwc_backward_weights);
  kernel(x, dy, dw, cs);
}

bool bf16_widened_blocks_enabled() {
  static const bool on = [] {
    const char* v = std::getenv("SCION_BF16_WIDENED_BLOCKS");
    return !(v && std::string(v) == "0");
  }();
  return on;
}

bool attention_bf16_kernel_available() {
  return active_isa() >= Isa::avx512_bf16;
}

bool attention_amx_kernel_available() {
  return active_isa() >= Isa::amx && amx_tiles_permitted();
}

}  // namespace scion::cpu
