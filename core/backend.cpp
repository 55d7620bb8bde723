// The backend registry: one backend per device type, looked up by the ops.
#include "core/backend.h"

#include "core/cpu/parallel.h"
#include "core/error.h"

namespace scion {

namespace cpu {
Backend& backend();  // core/cpu/backend.cpp
}
namespace reference {
Backend& backend();  // core/reference/backend.cpp
}
#ifdef SCION_CUDA
namespace cuda {
Backend& backend(int index);  // core/cuda/backend.cu
}
#endif

void Backend::adamw_steps(const std::vector<AdamWParam>& params, const OptimStep& s) {
  OptimStep one = s;
  for (const AdamWParam& a : params) {
    one.weight_decay = a.weight_decay;
    adamw_step(a.p, a.g, a.m, a.v, one);
  }
}

void Backend::copy_many(const std::vector<Tensor>& dsts, const std::vector<Tensor>& srcs) {
  for (size_t i = 0; i < dsts.size(); ++i) copy(dsts[i], srcs[i]);
}

void Backend::add_sums_of_squares(const std::vector<Tensor>& xs, const Tensor& total) {
  for (const Tensor& x : xs) add_sum_squares(x, total);
}

void Backend::scale_all_by(const std::vector<Tensor>& dsts, const Tensor& s) {
  for (const Tensor& d : dsts) scale_by(d, s);
}

Backend& reference_backend() {
  return reference::backend();
}

void set_num_threads(int n) {
  cpu::set_num_threads(n);
}
int num_threads() {
  return cpu::num_threads();
}
void adapt_threads() {
  cpu::adapt_threads();
}

Backend& backend(Device device) {
  switch (device.type) {
    case DeviceType::cpu:
      return cpu::backend();
    case DeviceType::reference:
      return reference::backend();
#ifdef SCION_CUDA
    case DeviceType::cuda:
      return cuda::backend(device.index);
#endif
    default:
      throw Error("no backend for device " + device.str() + " in this build");
  }
}

Backend& backend_for(const char* op, std::initializer_list<const Tensor*> inputs) {
  const Tensor* first = nullptr;
  for (const Tensor* t : inputs) {
    if (t == nullptr || !t->defined()) continue;
    if (first == nullptr)
      first = t;
    else if (t->device() != first->device())
      throw InputError(std::string(op) + ": inputs on different devices (" + first->device().str() +
                       " and " + t->device().str() + ")");
  }
  return backend(first ? first->device() : Device{});
}

}  // namespace scion
