// The knowledge-distillation loss (see distill.h).
#include "train/distill.h"

#include "core/ops.h"

namespace scion::train {

Tensor distillation_loss(const Tensor& task, const Tensor& student_logits,
                         const Tensor& teacher_logits, const DistillConfig& d) {
  const double t = d.temperature;
  Tensor pt = softmax(teacher_logits.detach().to(DType::f32) * (1.0 / t), 1);
  Tensor s = student_logits.to(DType::f32) * (1.0 / t);
  // KL(pt || ps) = CE(s, pt) - H(pt); H(pt) has no gradient but keeps the logged value a true KL.
  // It stays a tensor on the logits' device: reading it would make the host wait for the GPU.
  Tensor floor = scalar_tensor(1e-30, DType::f32, pt.device());
  Tensor entropy = sum(pt * log(maximum(pt, floor))) * (-1.0 / double(pt.size(0)));
  Tensor kl = cross_entropy(s, pt) - entropy;
  return task * (1.0 - d.alpha) + kl * (d.alpha * t * t);
}

}  // namespace scion::train
