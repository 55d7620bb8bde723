// Tensor: a view (shape, strides, offset in elements, dtype) over a refcounted Storage, plus the
// autograd fields: requires_grad, the accumulated grad of a leaf, and grad_fn, the tape node that
// produced a non-leaf. Copying a Tensor copies the handle, not the data (like torch.Tensor).
//
// Views share storage: reshape/view/permute/transpose/narrow/expand/squeeze/unsqueeze never copy
// (reshape copies only when the strides cannot express the new shape), and all of them carry
// gradients back to the viewed tensor. Ops never write into their inputs; the only in-place writes
// are the explicit `*_` methods used by optimizers and initializers under NoGradGuard.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/dtype.h"
#include "core/storage.h"

namespace scion {

using Shape = std::vector<int64_t>;
class Node;
class Tensor;

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape shape;
  Shape strides;       // in elements
  int64_t offset = 0;  // in elements
  DType dtype = DType::f32;
  bool requires_grad = false;
  std::shared_ptr<TensorImpl> grad;  // accumulated gradient of a leaf
  std::shared_ptr<Node> grad_fn;     // the node that produced this tensor (null for leaves)
  // A leaf's hook, run by backward() once every gradient of that pass has reached .grad.
  std::shared_ptr<std::function<void(const Tensor&)>> post_accumulate_hook;
};

std::string shape_str(const Shape& s);  // "(2, 3)"
int64_t shape_numel(const Shape& s);
Shape contiguous_strides(const Shape& s);

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return impl_->shape; }
  const Shape& strides() const { return impl_->strides; }
  int64_t offset() const { return impl_->offset; }
  int64_t dim() const { return int64_t(impl_->shape.size()); }
  int64_t size(int64_t d) const;  // negative d counts from the end
  int64_t numel() const { return shape_numel(impl_->shape); }
  DType dtype() const { return impl_->dtype; }
  Device device() const { return impl_->storage->device(); }
  bool is_contiguous() const;
  const std::shared_ptr<Storage>& storage() const { return impl_->storage; }
  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }

  // Pointer to element 0 of this view. T must match dtype (checked).
  template <class T>
  T* data() const {
    SCION_ASSERT(dtype_of<T>::value == dtype(), "data<", dtype_name(dtype_of<T>::value), "> on a ",
                 dtype_name(dtype()), " tensor");
    return static_cast<T*>(impl_->storage->data()) + impl_->offset;
  }
  void* raw_data() const {
    return static_cast<char*>(impl_->storage->data()) + impl_->offset * dtype_size(dtype());
  }
  // The value of a one-element tensor, converted to double.
  double item() const;
  std::vector<double> to_vector() const;  // all elements in logical order, for tests and printing

  // Autograd.
  bool requires_grad() const { return impl_->requires_grad; }
  Tensor& requires_grad_(bool on = true);
  bool is_leaf() const { return impl_->grad_fn == nullptr; }
  const std::shared_ptr<Node>& grad_fn() const { return impl_->grad_fn; }
  Tensor grad() const { return Tensor(impl_->grad); }
  void set_grad(const Tensor& g) { impl_->grad = g.impl_; }
  void zero_grad() { impl_->grad.reset(); }
  // Back-propagates from this tensor; `grad` defaults to 1 for a one-element tensor.
  void backward(const Tensor& grad = Tensor()) const;
  // Runs `hook(leaf)` in each backward() that reaches this leaf, as soon as the last of that pass's
  // gradient contributions has been accumulated into .grad (torch's
  // register_post_accumulate_grad_hook): data-parallel training starts reducing a gradient bucket
  // while the rest of backward still runs. One hook per leaf; an empty function removes it.
  void register_post_accumulate_grad_hook(std::function<void(const Tensor&)> hook);
  // The same data with no history and requires_grad false.
  Tensor detach() const;

  // Views and copies (autograd-aware).
  Tensor view(const Shape& shape) const;     // strides must allow it; -1 infers one size
  Tensor reshape(const Shape& shape) const;  // view when possible, else copy
  Tensor permute(const Shape& dims) const;
  Tensor transpose(int64_t d0, int64_t d1) const;
  Tensor t() const { return transpose(0, 1); }
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  Tensor slice(int64_t dim, int64_t start, int64_t end, int64_t step = 1) const;
  Tensor select(int64_t dim, int64_t index) const;
  Tensor expand(const Shape& shape) const;  // -1 keeps a size; new leading dims allowed
  Tensor squeeze(int64_t dim) const;
  Tensor squeeze() const;
  Tensor unsqueeze(int64_t dim) const;
  Tensor flatten(int64_t start_dim = 0, int64_t end_dim = -1) const;
  Tensor contiguous() const;
  Tensor clone() const;
  Tensor to(DType dtype) const;
  // A copy on `device` (this tensor when already there); gradients flow back to this device.
  Tensor to(Device device) const;
  Tensor cpu() const { return to(cpu_device()); }
  // Points this tensor (and every handle sharing it) at src's data, keeping autograd fields, as
  // torch's `t.data = src`; shapes must match. Used to move parameters between devices.
  void set_data(const Tensor& src);

  // In-place writes, not recorded by autograd (for optimizers, initializers, accumulators).
  Tensor& copy_(const Tensor& src);  // broadcasts and converts dtype
  Tensor& fill_(double value);
  Tensor& add_(const Tensor& other, double alpha = 1.0);
  Tensor& mul_(double value);

  std::string str() const;  // "Tensor(f32, (2, 3))"

 private:
  std::shared_ptr<TensorImpl> impl_;
};

// Creation. Shapes are row-major contiguous; memory is uninitialized for empty().
Tensor empty(const Shape& shape, DType dtype = DType::f32, Device device = Device{});
Tensor zeros(const Shape& shape, DType dtype = DType::f32, Device device = Device{});
Tensor ones(const Shape& shape, DType dtype = DType::f32, Device device = Device{});
Tensor full(const Shape& shape, double value, DType dtype = DType::f32, Device device = Device{});
Tensor scalar_tensor(double value, DType dtype = DType::f32, Device device = Device{});
Tensor arange(double start, double end, double step = 1.0, DType dtype = DType::i64);
// Like torch's empty_like(preserve_format): on t's device; a dense tensor (e.g. channels-last)
// keeps its strides, anything else gets contiguous ones.
Tensor empty_like(const Tensor& t, DType dtype);
Tensor empty_like(const Tensor& t);
// The same on another device.
Tensor empty_like_on(const Tensor& t, DType dtype, Device device);
// True when t's elements fill one gap-free block of memory in some dimension order (contiguous,
// or a permutation of a contiguous tensor such as a channels-last view).
bool is_dense(const Tensor& t);
Tensor zeros_like(const Tensor& t);
// Host memory from which copies to a GPU are queued without the host waiting (page-locked, as
// torch's pin_memory): the data loader's batches when training on CUDA; plain host memory without
// a CUDA device. Such a copy returns before the GPU has read the data: change the tensor only
// after the device work that follows has run (dropping it is always safe).
Tensor empty_pinned(const Shape& shape, DType dtype = DType::f32);
bool is_pinned(const Tensor& t);
// Wraps existing memory without copying; `owner` (optional) keeps it alive.
Tensor from_blob(void* data, const Shape& shape, DType dtype,
                 std::shared_ptr<void> owner = nullptr);
// Copies values (converted to dtype) into a new tensor of the given shape.
Tensor from_vector(const std::vector<double>& values, const Shape& shape, DType dtype = DType::f32,
                   Device device = Device{});
// A view with explicit strides over t's storage (no autograd); used by kernels and tests.
Tensor as_strided(const Tensor& t, const Shape& shape, const Shape& strides, int64_t offset);

}  // namespace scion
