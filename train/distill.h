// Knowledge distillation (Hinton et al., 2015), the loss of `train.distill`:
//   (1 - alpha) * task + alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T))
// averaged over the batch (torch's kl_div(..., reduction="batchmean")). The teacher's logits carry
// no gradient; the T^2 factor keeps the soft term's gradient scale independent of T.
#pragma once

#include "core/tensor.h"
#include "train/config.h"

namespace scion::train {

// task: the student's task loss (scalar); logits: (B, classes), either dtype (computed in f32).
Tensor distillation_loss(const Tensor& task, const Tensor& student_logits,
                         const Tensor& teacher_logits, const DistillConfig& d);

}  // namespace scion::train
