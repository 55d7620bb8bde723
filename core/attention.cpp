// Fused multi-head attention on timm's packed qkv projection, with its gradient (kernels: the
// input's backend; the CPU's is core/cpu/attention.cpp).
#include "core/autocast.h"
#include "core/autograd.h"
#include "core/backend.h"
#include "core/ops.h"

namespace scion {

Tensor attention(const Tensor& qkv_in, int64_t num_heads, double scale) {
  const Tensor qkv = autocast_low(qkv_in);
  SCION_CHECK(is_floating(qkv.dtype()), "attention: expected a floating tensor, got ",
              dtype_name(qkv.dtype()));
  SCION_CHECK(num_heads > 0 && qkv.dim() == 3 && qkv.size(2) % (3 * num_heads) == 0,
              "attention: expected qkv (B, N, 3 * num_heads * head_dim) with num_heads ", num_heads,
              ", got ", shape_str(qkv.shape()));
  const int64_t b = qkv.size(0), n = qkv.size(1), c = qkv.size(2) / 3;
  Backend& be = backend_for("attention", {&qkv});
  Tensor x = qkv.detach().contiguous();
  Tensor o = empty({b, n, c}, x.dtype(), x.device());
  Tensor lse =
      empty({b, num_heads, n}, x.dtype() == DType::f64 ? DType::f64 : DType::f32, x.device());
  be.attention_forward(x, num_heads, scale, o, lse);
  Tensor out = o.detach();
  if (any_requires_grad({&qkv})) {
    record(out, "attention", {qkv}, [=, &be](const Tensor& g) {
      Tensor dx = empty(x.shape(), x.dtype(), x.device());
      be.attention_backward(x, o, g.contiguous(), lse, num_heads, scale, dx);
      return std::vector<Tensor>{dx};
    });
  }
  return out;
}

}  // namespace scion
