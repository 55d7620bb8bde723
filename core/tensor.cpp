// Tensor handles, creation, views with their gradients, copies and dtype conversion.
// A view op builds a TensorImpl sharing the storage and records a node whose backward maps the
// view's gradient back to the base's shape (reshape back, inverse permutation, scatter into zeros
// for narrow/select, sum over broadcast dims for expand).
#include "core/tensor.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <sstream>

#include "core/autograd.h"
#include "core/backend.h"
#include "core/ops.h"

namespace scion {

std::string shape_str(const Shape& s) {
  std::ostringstream o;
  o << "(";
  for (size_t i = 0; i < s.size(); ++i) o << (i ? ", " : "") << s[i];
  o << (s.size() == 1 ? ",)" : ")");
  return o.str();
}

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

Shape contiguous_strides(const Shape& s) {
  Shape st(s.size());
  int64_t acc = 1;
  for (int64_t i = int64_t(s.size()) - 1; i >= 0; --i) {
    st[i] = acc;
    SCION_CHECK(!__builtin_mul_overflow(acc, std::max<int64_t>(s[i], 1), &acc), "shape ",
                shape_str(s), ": more elements than fit in 64 bits");
  }
  return st;
}

namespace {

int64_t wrap_dim(int64_t d, int64_t ndim, const char* op) {
  int64_t n = std::max<int64_t>(ndim, 1);
  SCION_CHECK(d >= -n && d < n, op, ": dimension ", d, " out of range for a ", ndim, "-d tensor");
  return d < 0 ? d + n : d;
}

Tensor make_view(const Tensor& base, Shape shape, Shape strides, int64_t offset) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = base.storage();
  impl->shape = std::move(shape);
  impl->strides = std::move(strides);
  impl->offset = offset;
  impl->dtype = base.dtype();
  return Tensor(impl);
}

Shape infer_shape(Shape shape, int64_t numel, const char* op) {
  int64_t infer = -1, known = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      SCION_CHECK(infer < 0, op, ": only one dimension can be -1, got ", shape_str(shape));
      infer = int64_t(i);
    } else {
      SCION_CHECK(shape[i] >= 0, op, ": invalid size in ", shape_str(shape));
      known *= shape[i];
    }
  }
  if (infer >= 0) {
    SCION_CHECK(known > 0 && numel % known == 0, op, ": shape ", shape_str(shape),
                " is invalid for ", numel, " elements");
    shape[infer] = numel / known;
  }
  SCION_CHECK(shape_numel(shape) == numel, op, ": shape ", shape_str(shape), " is invalid for ",
              numel, " elements");
  return shape;
}

// Strides for viewing (shape, strides) as new_shape without copying, or empty if impossible
// (the algorithm of torch's computeStride: match groups of dims whose product agrees).
bool view_strides(const Shape& shape, const Shape& strides, const Shape& new_shape, Shape& out) {
  out.assign(new_shape.size(), 0);
  if (shape_numel(shape) == 0 || shape.empty()) {
    out = contiguous_strides(new_shape);
    return true;
  }
  int64_t view_d = int64_t(new_shape.size()) - 1;
  int64_t chunk_base_stride = strides.empty() ? 1 : strides.back();
  int64_t tensor_numel = 1, view_numel = 1;
  for (int64_t d = int64_t(shape.size()) - 1; d >= 0; --d) {
    tensor_numel *= shape[d];
    if (d == 0 || (shape[d - 1] != 1 && strides[d - 1] != tensor_numel * chunk_base_stride)) {
      while (view_d >= 0 && (view_numel < tensor_numel || new_shape[view_d] == 1)) {
        out[view_d] = view_numel * chunk_base_stride;
        view_numel *= new_shape[view_d];
        --view_d;
      }
      if (view_numel != tensor_numel) return false;
      if (d > 0) {
        chunk_base_stride = strides[d - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  return view_d == -1;
}

}  // namespace

int64_t Tensor::size(int64_t d) const {
  return shape()[wrap_dim(d, dim(), "size")];
}

bool Tensor::is_contiguous() const {
  int64_t expected = 1;
  for (int64_t i = dim() - 1; i >= 0; --i) {
    if (shape()[i] == 1) continue;
    if (strides()[i] != expected) return false;
    expected *= shape()[i];
  }
  return true;
}

double Tensor::item() const {
  SCION_CHECK(numel() == 1, "item(): expected a one-element tensor, got shape ",
              shape_str(shape()));
  if (!device().is_host()) return cpu().item();
  return dispatch_all(dtype(), [&](auto tag) {
    using T = decltype(tag);
    return double(acc_t<T>(*static_cast<const T*>(raw_data())));
  });
}

std::vector<double> Tensor::to_vector() const {
  NoGradGuard ng;
  Tensor c = device().is_host() ? contiguous() : cpu().contiguous();
  std::vector<double> v(size_t(c.numel()));
  dispatch_all(dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* p = static_cast<const T*>(c.raw_data());
    for (size_t i = 0; i < v.size(); ++i) v[i] = double(acc_t<T>(p[i]));
  });
  return v;
}

Tensor& Tensor::requires_grad_(bool on) {
  SCION_CHECK(!on || is_floating(dtype()),
              "requires_grad_: only floating tensors can require "
              "gradients, got ",
              dtype_name(dtype()));
  SCION_CHECK(is_leaf(), "requires_grad_ on a non-leaf tensor; use detach() first");
  impl_->requires_grad = on;
  return *this;
}

void Tensor::backward(const Tensor& grad) const {
  if (grad.defined()) {
    run_backward(*this, grad);
  } else {
    SCION_CHECK(numel() == 1, "backward() without a gradient needs a one-element tensor, got ",
                shape_str(shape()));
    run_backward(*this, ones(shape(), dtype(), device()));
  }
}

void Tensor::register_post_accumulate_grad_hook(std::function<void(const Tensor&)> hook) {
  SCION_CHECK(is_leaf() && requires_grad(),
              "register_post_accumulate_grad_hook: needs a leaf that requires grad");
  impl_->post_accumulate_hook =
      hook ? std::make_shared<std::function<void(const Tensor&)>>(std::move(hook)) : nullptr;
}

Tensor Tensor::detach() const {
  return make_view(*this, shape(), strides(), offset());
}

Tensor Tensor::view(const Shape& new_shape_in) const {
  Shape new_shape = infer_shape(new_shape_in, numel(), "view");
  Shape st;
  SCION_CHECK(view_strides(shape(), strides(), new_shape, st), "view: cannot view strides ",
              shape_str(strides()), " of shape ", shape_str(shape()), " as ", shape_str(new_shape),
              "; use reshape()");
  Tensor out = make_view(*this, new_shape, st, offset());
  Shape in_shape = shape();
  record(out, "view", {*this},
         [in_shape](const Tensor& g) { return std::vector<Tensor>{g.reshape(in_shape)}; });
  return out;
}

Tensor Tensor::reshape(const Shape& new_shape_in) const {
  Shape new_shape = infer_shape(new_shape_in, numel(), "reshape");
  Shape st;
  if (view_strides(shape(), strides(), new_shape, st)) return view(new_shape);
  return contiguous().view(new_shape);
}

Tensor Tensor::permute(const Shape& dims) const {
  SCION_CHECK(int64_t(dims.size()) == dim(), "permute: expected ", dim(), " dims, got ",
              shape_str(dims));
  Shape sh(dims.size()), st(dims.size()), inverse(dims.size());
  std::vector<bool> seen(dims.size(), false);
  for (size_t i = 0; i < dims.size(); ++i) {
    int64_t d = wrap_dim(dims[i], dim(), "permute");
    SCION_CHECK(!seen[d], "permute: repeated dimension in ", shape_str(dims));
    seen[d] = true;
    sh[i] = shape()[d];
    st[i] = strides()[d];
    inverse[d] = int64_t(i);
  }
  Tensor out = make_view(*this, sh, st, offset());
  record(out, "permute", {*this},
         [inverse](const Tensor& g) { return std::vector<Tensor>{g.permute(inverse)}; });
  return out;
}

Tensor Tensor::transpose(int64_t d0, int64_t d1) const {
  Shape dims(static_cast<size_t>(dim()));
  std::iota(dims.begin(), dims.end(), 0);
  std::swap(dims[wrap_dim(d0, dim(), "transpose")], dims[wrap_dim(d1, dim(), "transpose")]);
  return permute(dims);
}

Tensor Tensor::slice(int64_t d, int64_t start, int64_t end, int64_t step) const {
  d = wrap_dim(d, dim(), "slice");
  int64_t n = shape()[d];
  SCION_CHECK(step > 0, "slice: step must be positive, got ", step);
  if (start < 0) start += n;
  if (end < 0) end += n;
  start = std::clamp<int64_t>(start, 0, n);
  end = std::clamp<int64_t>(end, start, n);
  Shape sh = shape(), st = strides();
  sh[d] = (end - start + step - 1) / step;
  st[d] *= step;
  Tensor out = make_view(*this, sh, st, offset() + start * strides()[d]);
  Shape in_shape = shape();
  DType dt = dtype();
  Device dev = device();
  record(out, "slice", {*this}, [in_shape, dt, dev, d, start, end, step](const Tensor& g) {
    Tensor z = zeros(in_shape, dt, dev);
    z.slice(d, start, end, step).copy_(g);
    return std::vector<Tensor>{z};
  });
  return out;
}

Tensor Tensor::narrow(int64_t d, int64_t start, int64_t length) const {
  int64_t dd = wrap_dim(d, dim(), "narrow");
  SCION_CHECK(start >= 0 && length >= 0 && start + length <= shape()[dd], "narrow: range [", start,
              ", ", start + length, ") out of bounds for size ", shape()[dd], " of dim ", dd);
  return slice(dd, start, start + length);
}

Tensor Tensor::select(int64_t d, int64_t index) const {
  int64_t dd = wrap_dim(d, dim(), "select");
  int64_t n = shape()[dd];
  SCION_CHECK(index >= -n && index < n, "select: index ", index, " out of range for size ", n);
  if (index < 0) index += n;
  return narrow(dd, index, 1).squeeze(dd);
}

Tensor Tensor::expand(const Shape& new_shape) const {
  SCION_CHECK(int64_t(new_shape.size()) >= dim(), "expand: cannot expand ", shape_str(shape()),
              " to fewer dims ", shape_str(new_shape));
  int64_t lead = int64_t(new_shape.size()) - dim();
  Shape sh(new_shape.size()), st(new_shape.size(), 0);
  for (int64_t i = 0; i < int64_t(new_shape.size()); ++i) {
    if (i < lead) {
      SCION_CHECK(new_shape[i] >= 0, "expand: new leading dims need explicit sizes");
      sh[i] = new_shape[i];
      continue;
    }
    int64_t cur = shape()[i - lead];
    int64_t want = new_shape[i] == -1 ? cur : new_shape[i];
    SCION_CHECK(cur == want || cur == 1, "expand: size ", cur, " at dim ", i - lead,
                " cannot expand to ", want, " (", shape_str(shape()), " -> ", shape_str(new_shape),
                ")");
    sh[i] = want;
    st[i] = cur == want ? strides()[i - lead] : 0;
  }
  Tensor out = make_view(*this, sh, st, offset());
  Shape in_shape = shape();
  record(out, "expand", {*this},
         [in_shape](const Tensor& g) { return std::vector<Tensor>{sum_to(g, in_shape)}; });
  return out;
}

Tensor Tensor::squeeze(int64_t d) const {
  d = wrap_dim(d, dim(), "squeeze");
  if (dim() == 0 || shape()[d] != 1) return *this;
  Shape sh = shape();
  sh.erase(sh.begin() + d);
  return view(sh);
}

Tensor Tensor::squeeze() const {
  Shape sh;
  for (int64_t s : shape())
    if (s != 1) sh.push_back(s);
  return sh.size() == shape().size() ? *this : view(sh);
}

Tensor Tensor::unsqueeze(int64_t d) const {
  d = wrap_dim(d, dim() + 1, "unsqueeze");
  Shape sh = shape();
  sh.insert(sh.begin() + d, 1);
  return view(sh);
}

Tensor Tensor::flatten(int64_t start_dim, int64_t end_dim) const {
  if (dim() == 0) return reshape({1});
  start_dim = wrap_dim(start_dim, dim(), "flatten");
  end_dim = wrap_dim(end_dim, dim(), "flatten");
  Shape sh(shape().begin(), shape().begin() + start_dim);
  int64_t m = 1;
  for (int64_t i = start_dim; i <= end_dim; ++i) m *= shape()[i];
  sh.push_back(m);
  sh.insert(sh.end(), shape().begin() + end_dim + 1, shape().end());
  return reshape(sh);
}

namespace {
// A differentiable copy of t into `out` (same shape).
Tensor copy_into(const Tensor& t, Tensor out, const char* name) {
  {
    NoGradGuard ng;
    out.copy_(t);
  }
  record(out, name, {t}, [](const Tensor& g) { return std::vector<Tensor>{g}; });
  return out;
}
// out is x cast to another dtype: between floating dtypes its gradient is cast back.
void record_cast(Tensor& out, const Tensor& x) {
  if (!is_floating(out.dtype()) || !is_floating(x.dtype())) return;
  const DType src = x.dtype();
  record(out, "to", {x}, [src](const Tensor& g) { return std::vector<Tensor>{g.to(src)}; });
}
}  // namespace

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  return copy_into(*this, empty(shape(), dtype(), device()), "contiguous");
}

// Like torch's clone(): a dense tensor keeps its memory format.
Tensor Tensor::clone() const {
  return copy_into(*this, empty_like(*this), "clone");
}

Tensor Tensor::to(DType dt) const {
  if (dt == dtype()) return *this;
  Tensor out = empty_like(*this, dt);  // keeps a dense layout, as torch's .to()
  {
    NoGradGuard ng;
    out.copy_(*this);
  }
  record_cast(out, *this);
  return out;
}

std::vector<Tensor> to_all(const std::vector<Tensor>& xs, DType dt) {
  std::vector<Tensor> outs(xs.size());
  std::vector<Device> devices;
  for (size_t i = 0; i < xs.size(); ++i) {
    const Tensor& x = xs[i];
    if (!x.defined() || x.dtype() == dt) {
      outs[i] = x;
      continue;
    }
    outs[i] = empty_like(x, dt);
    if (std::find(devices.begin(), devices.end(), x.device()) == devices.end())
      devices.push_back(x.device());
  }
  for (const Device& d : devices) {
    std::vector<Tensor> dsts, srcs;
    for (size_t i = 0; i < xs.size(); ++i)
      if (outs[i].defined() && outs[i].dtype() != xs[i].dtype() && xs[i].device() == d) {
        dsts.push_back(outs[i]);
        srcs.push_back(xs[i].detach());
      }
    backend(d).copy_many(dsts, srcs);
  }
  for (size_t i = 0; i < xs.size(); ++i)
    if (outs[i].impl() != xs[i].impl()) record_cast(outs[i], xs[i]);
  return outs;
}

Tensor Tensor::to(Device dev) const {
  if (dev == device()) return *this;
  Tensor out = empty_like_on(*this, dtype(), dev);
  {
    NoGradGuard ng;
    out.copy_(*this);
  }
  Device src = device();
  record(out, "to", {*this}, [src](const Tensor& g) { return std::vector<Tensor>{g.to(src)}; });
  return out;
}

void Tensor::set_data(const Tensor& src) {
  SCION_CHECK(src.shape() == shape(), "set_data: shape ", shape_str(src.shape()),
              " for a tensor of ", shape_str(shape()));
  impl_->storage = src.impl_->storage;
  impl_->strides = src.impl_->strides;
  impl_->offset = src.impl_->offset;
  impl_->dtype = src.impl_->dtype;
  if (impl_->grad) impl_->grad.reset();
}

Tensor& Tensor::copy_(const Tensor& src) {
  SCION_CHECK(!requires_grad() || !grad_enabled(),
              "copy_ into a tensor that requires grad while grad mode is on");
  Tensor s = src.dim() <= dim() ? src : src.squeeze();
  SCION_CHECK(s.dim() <= dim(), "copy_: cannot broadcast ", shape_str(src.shape()), " to ",
              shape_str(shape()));
  for (int64_t i = 0; i < s.dim(); ++i) {
    int64_t a = s.shape()[s.dim() - 1 - i], b = shape()[dim() - 1 - i];
    SCION_CHECK(a == b || a == 1, "copy_: cannot broadcast ", shape_str(src.shape()), " to ",
                shape_str(shape()));
  }
  // Within a device, or a transfer to/from the CPU, which the other device's backend makes;
  // between two non-CPU devices the data goes through the CPU.
  if (s.device() == device() || s.device().type == DeviceType::cpu)
    backend(device()).copy(*this, s);
  else if (device().type == DeviceType::cpu)
    backend(s.device()).copy(*this, s);
  else
    copy_(s.cpu());
  return *this;
}

Tensor& Tensor::fill_(double value) {
  backend(device()).fill(*this, value);
  return *this;
}

Tensor& Tensor::add_(const Tensor& other, double alpha) {
  NoGradGuard ng;
  SCION_CHECK(is_floating(dtype()), "add_: expected a floating tensor, got ", dtype_name(dtype()));
  Tensor o = other.dtype() == dtype() ? other : other.to(dtype());
  backend_for("add_", {this, &o}).add_scaled(*this, o, alpha);
  return *this;
}

Tensor& Tensor::mul_(double value) {
  SCION_CHECK(is_floating(dtype()), "mul_: expected a floating tensor, got ", dtype_name(dtype()));
  backend(device()).scale(*this, value);
  return *this;
}

std::string Tensor::str() const {
  return detail::str_cat("Tensor(", dtype_name(dtype()), ", ", shape_str(shape()), ")");
}

Tensor empty(const Shape& shape, DType dtype, Device device) {
  for (int64_t s : shape) SCION_CHECK(s >= 0, "empty: negative size in ", shape_str(shape));
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(size_t(shape_numel(shape)) * dtype_size(dtype), device);
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(impl);
}

Tensor full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.fill_(value);
  return t;
}
Tensor zeros(const Shape& shape, DType dtype, Device device) {
  return full(shape, 0.0, dtype, device);
}
Tensor ones(const Shape& shape, DType dtype, Device device) {
  return full(shape, 1.0, dtype, device);
}
Tensor scalar_tensor(double value, DType dtype, Device device) {
  return full({}, value, dtype, device);
}
bool is_dense(const Tensor& t) {
  std::vector<std::pair<int64_t, int64_t>> dims;  // (stride, size)
  for (int64_t d = 0; d < t.dim(); ++d)
    if (t.shape()[d] != 1) dims.emplace_back(t.strides()[d], t.shape()[d]);
  std::sort(dims.begin(), dims.end());
  int64_t expected = 1;
  for (auto [stride, size] : dims) {
    if (stride != expected) return false;
    expected *= size;
  }
  return true;
}

Tensor empty_like(const Tensor& t, DType dtype) {
  return empty_like_on(t, dtype, t.device());
}

Tensor empty_like_on(const Tensor& t, DType dtype, Device device) {
  if (t.is_contiguous() || !is_dense(t)) return empty(t.shape(), dtype, device);
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(size_t(t.numel()) * dtype_size(dtype), device);
  impl->shape = t.shape();
  impl->strides = t.strides();
  impl->dtype = dtype;
  return Tensor(impl);
}

Tensor empty_like(const Tensor& t) {
  return empty_like(t, t.dtype());
}

Tensor zeros_like(const Tensor& t) {
  return empty_like(t).fill_(0.0);
}

Tensor arange(double start, double end, double step, DType dtype) {
  SCION_CHECK(step != 0, "arange: step must be non-zero");
  int64_t n = std::max<int64_t>(0, int64_t(std::ceil((end - start) / step)));
  Tensor t = empty({n}, dtype);
  dispatch_all(dtype, [&](auto tag) {
    using T = decltype(tag);
    T* p = t.data<T>();
    for (int64_t i = 0; i < n; ++i) p[i] = T(acc_t<T>(start + double(i) * step));
  });
  return t;
}

Tensor empty_pinned(const Shape& shape, DType dtype) {
  const size_t bytes = size_t(shape_numel(shape)) * dtype_size(dtype);
  void* p = bytes > 0 ? cuda_pinned_allocate(bytes) : nullptr;
  if (!p) return empty(shape, dtype);
  return from_blob(p, shape, dtype,
                   std::shared_ptr<void>(p, [](void* q) { cuda_pinned_release(q); }));
}

bool is_pinned(const Tensor& t) {
  return t.defined() && t.device().is_host() && cuda_is_pinned(t.raw_data());
}

Tensor from_blob(void* data, const Shape& shape, DType dtype, std::shared_ptr<void> owner) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(data, size_t(shape_numel(shape)) * dtype_size(dtype),
                                            Device{}, std::move(owner));
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(impl);
}

Tensor from_vector(const std::vector<double>& values, const Shape& shape, DType dtype,
                   Device device) {
  SCION_CHECK(int64_t(values.size()) == shape_numel(shape), "from_vector: ", values.size(),
              " values for shape ", shape_str(shape));
  Tensor src = from_blob(const_cast<double*>(values.data()), shape, DType::f64);
  Tensor t = empty(shape, dtype, device);
  t.copy_(src);
  return t;
}

Tensor as_strided(const Tensor& t, const Shape& shape, const Shape& strides, int64_t offset) {
  return make_view(t, shape, strides, offset);
}

}  // namespace scion
