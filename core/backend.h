// Backends: the kernels of one device behind one interface. An op in core/ keeps its shape checks
// and its gradient, finds the backend of its inputs' device (backend_for, which rejects inputs on
// different devices) and calls the kernel; nothing outside core/<device>/ includes a device's
// kernels. A backend allocates every output itself (on its device) unless the caller passes one.
//
// Adding an op: declare it in core/ops.h, write the op with its gradient in core/<topic>.cpp, add
// its kernel here and in each backend (core/cpu/backend.cpp, core/reference/backend.cpp), and
// test it (tests/core/: golden, gradient check, a line in test_backend_ops.cpp).
#pragma once

#include <initializer_list>
#include <vector>

#include "core/rng.h"
#include "core/tensor.h"

namespace scion {

enum class BinaryOp { add, sub, mul, div, pow, maximum, minimum, eq, ne, lt, le, gt, ge };
enum class UnaryOp { neg, exp, log, sqrt, rsqrt, tanh, erf, relu, sigmoid, gelu_erf, gelu_tanh };

// One AdamW (torch.optim.AdamW) or SGD (torch.optim.SGD, coupled weight decay) update.
struct OptimStep {
  double lr = 0, weight_decay = 0;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;  // AdamW
  int64_t step = 1;                               // AdamW bias correction: 1-based step count
  double momentum = 0;                            // SGD
  bool nesterov = false;                          // SGD
};

// One parameter of a multi-tensor AdamW step (Backend::adamw_steps).
struct AdamWParam {
  Tensor p, g, m, v;
  double weight_decay = 0;
};

// Convolution geometry shared by the conv2d kernels.
struct ConvShape {
  int64_t stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups;
  bool channels_last;  // activations (x, y and their gradients) are NHWC in memory, else NCHW
};

// Whether Backend::binary takes these operand dtypes as they are: add, sub, mul or div of an f32
// and a bf16 operand, in either order (the result is f32).
inline bool mixed_float_operands(BinaryOp op, DType a, DType b) {
  const bool arith =
      op == BinaryOp::add || op == BinaryOp::sub || op == BinaryOp::mul || op == BinaryOp::div;
  return arith && ((a == DType::f32 && b == DType::bf16) || (a == DType::bf16 && b == DType::f32));
}

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;

  // Storage for this device's memory (Storage calls these; sizes in bytes).
  virtual void* allocate(size_t bytes) = 0;
  virtual void release(void* p, size_t bytes) = 0;

  // Memory: dst = src broadcast to dst's shape with dtype conversion; fill; dst += alpha * src;
  // dst *= value (dst any strided view, floating for the last two). copy also moves data between
  // this device and the CPU (one of dst, src on this device, the other on cpu).
  virtual void copy(const Tensor& dst, const Tensor& src) = 0;
  // copy(dsts[i], srcs[i]) for every i, all on this device, dsts dense and not overlapping any
  // src: autocast's casts of a model's parameters at once (to_all). This default copies one pair
  // at a time; a GPU backend casts the contiguous f32 -> bf16 pairs in one kernel (a cast per
  // parameter was ~100 launches per ViT-T step), with the same bits.
  virtual void copy_many(const std::vector<Tensor>& dsts, const std::vector<Tensor>& srcs);
  virtual void fill(const Tensor& dst, double value) = 0;
  virtual void add_scaled(const Tensor& dst, const Tensor& src, double alpha) = 0;
  virtual void scale(const Tensor& dst, double value) = 0;

  // Random fill of a contiguous floating tensor (see RandomFill in core/rng.h).
  virtual void random_fill(const Tensor& t, const RandomFill& r) = 0;

  // Elementwise: out = op(a, b) broadcast to a common shape; a and b share a dtype, or for add,
  // sub, mul and div one is f32 and the other bf16 (mixed_float_operands: the bf16 one widened as
  // it is read, into f32; autocast's residual adds and layer scales without a widened copy);
  // comparisons give bool. gelu_backward: d gelu(x)/dx * g.
  virtual Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b) = 0;
  virtual Tensor unary(UnaryOp op, const Tensor& x) = 0;
  virtual Tensor gelu_backward(const Tensor& g, const Tensor& x, bool tanh_form) = 0;
  virtual Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) = 0;
  // A residual add of a layer-scaled branch over rows of contiguous (rows, c) x, t and out and a
  // (c) scale s: out = x + t s, the product rounded to out's dtype before the sum, as add(x,
  // mul(t, s)). x, s and out share a dtype; t has it too, or is bf16 for f32 ones (autocast's
  // bf16 branch, read as it is). Backward from contiguous g (out's dtype): dt = g s rounded to
  // t's dtype, and ds = the column sums of g t (f32 products, as mul's) in s's dtype; either may
  // be undefined (not wanted), and t is undefined when ds is.
  virtual void layer_scale_rows(const Tensor& x, const Tensor& t, const Tensor& s,
                                const Tensor& out) = 0;
  virtual void layer_scale_rows_backward(const Tensor& g, const Tensor& t, const Tensor& s,
                                         const Tensor& dt, const Tensor& ds) = 0;

  // Indexing along `dim`: out[..., j, ...] = src[..., idx[j], ...] (out_shape given) and its
  // adjoint index_add into zeros of out_shape (repeated indices sum); gather: out[p] = src[p with
  // p[dim] = index[p]] (index i64 contiguous, same ndim, in range) and its adjoint scatter_add.
  virtual Tensor index_select(const Tensor& src, int64_t dim, const std::vector<int64_t>& idx,
                              const Shape& out_shape) = 0;
  virtual Tensor index_add(const Tensor& src, int64_t dim, const std::vector<int64_t>& idx,
                           const Shape& out_shape) = 0;
  virtual Tensor gather(const Tensor& src, int64_t dim, const Tensor& index) = 0;
  virtual Tensor scatter_add(const Tensor& src, int64_t dim, const Tensor& index,
                             const Shape& out_shape) = 0;

  // Reductions: sum over `dims` (all when empty); max along one dim with first indices.
  virtual Tensor reduce_sum(const Tensor& x, const Shape& dims, bool keepdim) = 0;
  virtual void reduce_max(const Tensor& x, int64_t dim, bool keepdim, Tensor& values,
                          Tensor& indices) = 0;

  // out (B, M, N) = a (B|1, M, K) @ b (B|1, K, N) (+ bias (1, N)); 2-d operands allowed (then all
  // are 2-d); a and b may be transposed views; out is contiguous and allocated by the caller.
  virtual void matmul(const Tensor& a, const Tensor& b, const Tensor& bias, const Tensor& out) = 0;

  // conv2d with activations contiguous NCHW or NHWC (ConvShape::channels_last), weights OIHW
  // contiguous; outputs allocated by the caller in the activation layout; bias may be undefined.
  virtual void conv2d_forward(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& y,
                              const ConvShape& cs) = 0;
  virtual void conv2d_backward_data(const Tensor& dy, const Tensor& w, const Tensor& dx,
                                    const ConvShape& cs) = 0;
  virtual void conv2d_backward_weights(const Tensor& x, const Tensor& dy, const Tensor& dw,
                                       const ConvShape& cs) = 0;

  // Layer norm over the last `d` elements of each row of contiguous x; mean and rstd per row. y
  // has dtype `out`: x's, or bf16 for an f32 x (the f32 result rounded once: layer_norm_to, the
  // cast autocast puts before a linear layer, fused). The backward's dy (contiguous) is in y's
  // dtype, a bf16 one widened exactly; dx, dw and db are in x's.
  virtual void layer_norm_forward(const Tensor& x, const Tensor& w, const Tensor& b, double eps,
                                  int64_t d, DType out, Tensor& y, Tensor& mean, Tensor& rstd) = 0;
  virtual void layer_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& w,
                                   const Tensor& mean, const Tensor& rstd, int64_t d, Tensor& dx,
                                   Tensor& dw, Tensor& db) = 0;

  // Softmax / log-softmax along `dim` of contiguous x into y (allocated by the caller), and the
  // gradient from y.
  virtual void softmax_forward(bool log, int64_t dim, const Tensor& x, const Tensor& y) = 0;
  virtual void softmax_backward(bool log, int64_t dim, const Tensor& y, const Tensor& dy,
                                const Tensor& dx) = 0;

  // Multi-head attention on the packed projection qkv (B, N, 3, H, d) contiguous, as timm's
  // Attention lays it out: out (B, N, H, d) = softmax(scale q k^T) v for each batch element and
  // head, and lse (B, H, N) the log-sum-exp of each row of scale q k^T (f64 for f64 inputs, else
  // f32); both allocated by the caller. The backward writes dqkv (qkv's shape) from dout
  // (contiguous), recomputing the probabilities from lse.
  virtual void attention_forward(const Tensor& qkv, int64_t heads, double scale, const Tensor& out,
                                 const Tensor& lse) = 0;
  virtual void attention_backward(const Tensor& qkv, const Tensor& out, const Tensor& dout,
                                  const Tensor& lse, int64_t heads, double scale,
                                  const Tensor& dqkv) = 0;

  // Cross-entropy of contiguous logits (N, C) against a target distribution q (N, C), both of one
  // floating dtype: lp = log_softmax(logits) (allocated by the caller) and the mean loss
  // -1/N sum q * lp as a scalar tensor of that dtype.
  virtual Tensor cross_entropy(const Tensor& logits, const Tensor& q, const Tensor& lp) = 0;

  // Optimizer updates on contiguous f32 parameters, in place: AdamW (m, v: its moments) and SGD
  // (m: the momentum buffer; `step` 1 starts it as torch does). g is contiguous f32.
  virtual void adamw_step(const Tensor& p, const Tensor& g, const Tensor& m, const Tensor& v,
                          const OptimStep& s) = 0;
  virtual void sgd_step(const Tensor& p, const Tensor& g, const Tensor& m, const OptimStep& s) = 0;
  // AdamW on several parameters at once (torch.optim.AdamW(fused=True)): each as adamw_step with
  // its own weight decay and s's other settings. This default steps them one at a time; a GPU
  // backend runs one kernel for all of them (a parameter per kernel was ~150 launches per ViT-T
  // step), with the same numbers.
  virtual void adamw_steps(const std::vector<AdamWParam>& params, const OptimStep& s);
  // sum x^2 over a contiguous f32 tensor, accumulated in f64 (gradient-norm clipping): returned,
  // or added to `total`, a 0-dim f64 tensor on this device, without the host waiting for it.
  virtual double sum_squares(const Tensor& x) = 0;
  virtual void add_sum_squares(const Tensor& x, const Tensor& total) = 0;
  // dst *= s (dst floating, any strided view, as scale()) for s a 0-dim f64 tensor on this device,
  // read there: a factor computed on the device (gradient clipping's) needs no host wait.
  virtual void scale_by(const Tensor& dst, const Tensor& s) = 0;
  // The two over many tensors at once (clip_grad_norm over every gradient): add_sum_squares of
  // each x (contiguous f32) into total, and scale_by of each dst. These defaults take one tensor
  // at a time; a GPU backend runs one kernel over all of them (two launches per gradient were
  // ~450 per ViT-T step). The total may differ from one tensor at a time in the last bits (its
  // terms are grouped differently), the scaled tensors do not.
  virtual void add_sums_of_squares(const std::vector<Tensor>& xs, const Tensor& total);
  virtual void scale_all_by(const std::vector<Tensor>& dsts, const Tensor& s);
};

// The backend of a device (an Error for a device this build has no backend for); the reference
// backend is also reachable by name for the CPU backend's f64 kernels.
Backend& backend(Device device);
Backend& reference_backend();

// The backend of the inputs' common device; `op` names the op when defined inputs sit on
// different devices (an InputError naming both).
Backend& backend_for(const char* op, std::initializer_list<const Tensor*> inputs);

// Threads for the CPU kernels; set by `threads:` in a config or `--threads`. 0 = all cores this
// process may run on, fewer while other processes keep some busy: adapt_threads(), called between
// batches, re-reads the load (core/cpu/parallel.h). A count > 0 is used as given.
void set_num_threads(int n);
int num_threads();
void adapt_threads();

}  // namespace scion
