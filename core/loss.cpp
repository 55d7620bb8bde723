// Cross-entropy (fused log-softmax + negative log-likelihood) and dropout.
// With target distribution q (one-hot, label-smoothed one-hot, or soft probabilities) the mean loss
// is -1/N sum_n sum_c q[n,c] log p[n,c] and its gradient wrt the logits is (p - q) / N. Label
// smoothing s mixes q with the uniform distribution: q' = (1 - s) q + s / C, as torch does for
// both hard and soft targets.
#include <cmath>

#include "core/autocast.h"
#include "core/autograd.h"
#include "core/backend.h"
#include "core/ops.h"

namespace scion {

namespace {

// Class indices (N) as i64 on `device`, each checked to be in [0, c).
Tensor checked_labels(const Tensor& target, int64_t n, int64_t c, Device device) {
  SCION_CHECK(target.dim() == 1 && target.size(0) == n,
              "cross_entropy: class-index target must be (", n, "), got ",
              shape_str(target.shape()));
  const std::vector<double> values = target.to_vector();
  for (int64_t i = 0; i < n; ++i)
    SCION_CHECK(values[size_t(i)] >= 0 && values[size_t(i)] < double(c), "cross_entropy: target ",
                int64_t(values[size_t(i)]), " at row ", i, " out of range for ", c, " classes");
  return target.to(device).to(DType::i64).contiguous();
}

// q as a dense (N, C) tensor in dtype dt: the one-hot of checked class indices (scattered by the
// backend) or the soft target, mixed with the uniform distribution when s > 0.
Tensor target_distribution(const Tensor& labels, const Tensor& soft, int64_t n, int64_t c, double s,
                           DType dt, Device device) {
  NoGradGuard ng;
  if (soft.defined()) {
    SCION_CHECK(soft.shape() == Shape({n, c}), "cross_entropy: soft target must be (", n, ", ", c,
                "), got ", shape_str(soft.shape()));
    Tensor q = soft.to(device).to(dt).contiguous();
    return s > 0 ? q * (1 - s) + s / double(c) : q;
  }
  Tensor on = full({n, 1}, 1.0 - s, dt, device);
  Tensor q = backend(device).scatter_add(on, 1, labels.view({n, 1}), {n, c});
  return s > 0 ? q + s / double(c) : q;
}

}  // namespace

Tensor cross_entropy(const Tensor& logits_in, const Tensor& target, double label_smoothing) {
  const Tensor logits = autocast_f32(logits_in);
  SCION_CHECK(logits.dim() == 2, "cross_entropy: logits must be (N, C), got ",
              shape_str(logits.shape()));
  SCION_CHECK(label_smoothing >= 0 && label_smoothing <= 1,
              "cross_entropy: label_smoothing must be in [0, 1], got ", label_smoothing);
  int64_t n = logits.size(0), c = logits.size(1);
  SCION_CHECK(n > 0, "cross_entropy: empty batch");
  // Losses are computed in f32 at least (f64 stays f64), as autocast does for bf16 logits.
  DType dt = logits.dtype() == DType::f64 ? DType::f64 : DType::f32;
  Backend& be = backend_for("cross_entropy", {&logits});
  const Device device = logits.device();
  // Soft targets get a gradient too (d loss / d q = -(1 - s) log p / N), as in torch.
  const Tensor soft = is_floating(target.dtype()) ? target : Tensor();
  const Tensor labels = soft.defined() ? Tensor() : checked_labels(target, n, c, device);
  Tensor q = target_distribution(labels, soft, n, c, label_smoothing, dt, device);
  Tensor x = logits.detach().to(dt).contiguous();
  Tensor lp = empty({n, c}, dt, device);
  Tensor loss = be.cross_entropy(x, q, lp);
  if (any_requires_grad({&logits, &soft})) {
    DType in_dt = logits.dtype();
    bool need_logits = logits.requires_grad(), need_target = soft.defined() && soft.requires_grad();
    DType t_dt = soft.defined() ? soft.dtype() : in_dt;
    // The graph keeps the log-probabilities and, for class indices, the indices, not their dense
    // (N, C) distribution (made again in backward), as torch keeps its target.
    const Tensor kept_q = soft.defined() ? q : Tensor();
    record(loss, "cross_entropy", {logits, soft}, [=](const Tensor& g) {
      Tensor scale = g * (1.0 / double(n));
      Tensor g_logits, g_target;
      const Tensor target_q = kept_q.defined() ? kept_q
                                               : target_distribution(labels, Tensor(), n, c,
                                                                     label_smoothing, dt, device);
      if (need_logits) g_logits = mul(sub(exp(lp), target_q), scale).to(in_dt);
      if (need_target) g_target = mul(lp, scale * -(1.0 - label_smoothing)).to(t_dt);
      return std::vector<Tensor>{g_logits, g_target};
    });
  }
  return loss;
}

Tensor dropout(const Tensor& x, double p, bool training, Generator& gen) {
  SCION_CHECK(p >= 0 && p <= 1, "dropout: p must be in [0, 1], got ", p);
  if (!training || p == 0) return x;
  if (p == 1) return x * 0.0;
  Tensor mask = bernoulli(x.shape(), 1.0 - p, is_floating(x.dtype()) ? x.dtype() : DType::f32, gen,
                          x.device());
  return x * (mask * (1.0 / (1.0 - p)));
}

}  // namespace scion
