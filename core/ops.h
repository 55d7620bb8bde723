// The functional ops of scion's core, each differentiable one with its backward recorded on the
// tape (core/autograd.h). Names, argument order and semantics follow torch / torch.nn.functional:
// broadcasting as in NumPy, dims may be negative, reductions take a list of dims (empty = all).
//
// Dtypes: floating ops accept f32, bf16 and f64. bf16 ops compute in f32 and round the result once;
// matmul, linear and conv2d on bf16 use oneDNN with f32 accumulation (AMX where the CPU has it).
// f64 runs on reference loops and exists for finite-difference gradient checks.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "core/rng.h"
#include "core/tensor.h"

namespace scion {

// ---- elementwise, broadcasting ----------------------------------------------------------------
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor pow(const Tensor& a, const Tensor& b);  // a > 0 where b is not an integer
Tensor pow(const Tensor& a, double exponent);
Tensor maximum(const Tensor& a, const Tensor& b);  // ties split the gradient evenly, like torch
Tensor minimum(const Tensor& a, const Tensor& b);
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);  // cond: bool
// x + t * s, broadcasting as add(x, mul(t, s)) and giving its numbers (the product rounded, then
// the sum; t's gradient the product g s rounded to t's dtype; s's summed in another order). A
// residual stream x plus a branch t times a per-channel layer scale s (ConvNeXt's gamma) where t
// and x are dense in one layout with s's channel innermost in memory takes one pass forward and
// one back (Backend::layer_scale_rows); any other case is that add and mul.
Tensor addcmul(const Tensor& x, const Tensor& t, const Tensor& s);
// xs[i].to(dt) for every i (each floating x its own differentiable cast, as Tensor::to), the
// casts of each device in one Backend::copy_many: autocast's casts of a model's parameters
// (AutocastCache, core/autocast.h).
std::vector<Tensor> to_all(const std::vector<Tensor>& xs, DType dt);
// Comparisons return bool tensors and carry no gradient.
Tensor eq(const Tensor& a, const Tensor& b);
Tensor ne(const Tensor& a, const Tensor& b);
Tensor lt(const Tensor& a, const Tensor& b);
Tensor le(const Tensor& a, const Tensor& b);
Tensor gt(const Tensor& a, const Tensor& b);
Tensor ge(const Tensor& a, const Tensor& b);

Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor rsqrt(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor erf(const Tensor& x);
Tensor relu(const Tensor& x);
Tensor sigmoid(const Tensor& x);
// approximate: "none" (exact, erf) or "tanh", as torch.nn.functional.gelu.
Tensor gelu(const Tensor& x, const std::string& approximate = "none");

Tensor operator+(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a, const Tensor& b);
Tensor operator*(const Tensor& a, const Tensor& b);
Tensor operator/(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a);
Tensor operator+(const Tensor& a, double b);
Tensor operator-(const Tensor& a, double b);
Tensor operator*(const Tensor& a, double b);
Tensor operator/(const Tensor& a, double b);
Tensor operator+(double a, const Tensor& b);
Tensor operator-(double a, const Tensor& b);
Tensor operator*(double a, const Tensor& b);
Tensor operator/(double a, const Tensor& b);

// Shape two tensors broadcast to (NumPy rules); an error names both shapes when they cannot.
Shape broadcast_shapes(const Shape& a, const Shape& b);

// ---- reductions --------------------------------------------------------------------------------
Tensor sum(const Tensor& x, const Shape& dims = {}, bool keepdim = false);
Tensor mean(const Tensor& x, const Shape& dims = {}, bool keepdim = false);
// Variance with Bessel's correction by default (torch.var's correction=1).
Tensor var(const Tensor& x, const Shape& dims = {}, int64_t correction = 1, bool keepdim = false);
struct MaxResult {
  Tensor values;
  Tensor indices;  // i64; the first maximal index, like torch
};
MaxResult max(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor max(const Tensor& x);  // over all elements; gradient split evenly among ties, like torch
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim = false);
// Sums g over the dims along which `shape` was broadcast to g's shape (the gradient of expand).
Tensor sum_to(const Tensor& g, const Shape& shape);

// ---- joining, splitting, indexing -----------------------------------------------------------
// Mixed dtypes promote as torch.cat's (promote_types); each gradient comes back in its input's.
Tensor cat(const std::vector<Tensor>& xs, int64_t dim = 0);
std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t dim = 0);
std::vector<Tensor> split(const Tensor& x, const Shape& sizes, int64_t dim = 0);
std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim = 0);
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);  // index: 1-d i64/i32
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index);        // index: same ndim, i64

// ---- linear algebra ---------------------------------------------------------------------------
// torch.matmul: 1-d and 2-d operands, and batched (..., M, K) @ (..., K, N) with broadcast batch
// dims. Transposed operands are passed to oneDNN by their strides, without copies.
Tensor matmul(const Tensor& a, const Tensor& b);
// y = x @ w^T + b with x: (..., in), w: (out, in), b: (out) or undefined.
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b = Tensor());

struct Conv2dOptions {
  std::pair<int64_t, int64_t> stride{1, 1};
  std::pair<int64_t, int64_t> padding{0, 0};
  std::pair<int64_t, int64_t> dilation{1, 1};
  int64_t groups = 1;
};
// x: (N, C, H, W), w: (O, C/groups, KH, KW), b: (O) or undefined.
Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b = Tensor(),
              const Conv2dOptions& opt = {});
// Whether weight w (4-d) with `groups` makes a depthwise convolution (one filter per channel,
// groups > 1): conv2d runs those in f32 under autocast.
bool is_depthwise(const Tensor& w, int64_t groups);

// ---- normalization, softmax, losses -------------------------------------------------------
// Normalizes over the last normalized_shape.size() dims; weight/bias of normalized_shape or
// undefined.
Tensor layer_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight = Tensor(),
                  const Tensor& bias = Tensor(), double eps = 1e-5);
// layer_norm(...).to(out) in one pass each way: the result rounded once to `out` (x's dtype, or
// bf16 for an f32 x), and in backward the gradient taken in `out` and widened in the same pass, bit
// for bit the two ops. Under autocast x is taken in f32, as by layer_norm: a layer norm that feeds
// a linear layer under autocast (LayerNorm::forward_low) gives it the bf16 input it would cast to.
Tensor layer_norm_to(const Tensor& x, const Shape& normalized_shape, const Tensor& weight,
                     const Tensor& bias, double eps, DType out);
Tensor softmax(const Tensor& x, int64_t dim);
Tensor log_softmax(const Tensor& x, int64_t dim);
// Multi-head self-attention on a packed projection, fused: qkv (B, N, 3 * C) laid out as
// (B, N, 3, num_heads, C / num_heads) like timm's Attention.qkv output; returns (B, N, C), each
// head's softmax(scale q k^T) v with the heads side by side (timm's F.scaled_dot_product_attention
// path followed by transpose(1, 2).reshape(B, N, C)). No N x N matrix is kept for the backward.
Tensor attention(const Tensor& qkv, int64_t num_heads, double scale);
// Mean cross-entropy of logits (N, C). target: i64 class indices (N) with optional label
// smoothing (torch's: (1 - s) * onehot + s / C), or floating probabilities (N, C) (soft targets).
// Either may be on the host with logits on a device: it is checked there and copied to the device
// without waiting for it. Class indices already on a device are read back to be checked, which
// waits for the device's queued work (the forward that made the logits).
Tensor cross_entropy(const Tensor& logits, const Tensor& target, double label_smoothing = 0.0);
// Zeroes each element with probability p and scales the rest by 1/(1-p) when training.
Tensor dropout(const Tensor& x, double p, bool training, Generator& gen = default_generator());

}  // namespace scion
