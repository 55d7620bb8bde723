// conv2d on oneDNN (f32, bf16) with an f64 reference path; NCHW activations, OIHW weights, groups
// (depthwise when groups == C). The bias gradient is a plain sum of dy over (N, H, W).
#include "core/autograd.h"
#include "core/cpu/kernels.h"
#include "core/cpu/onednn.h"
#include "core/ops.h"

namespace scion {

Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b, const Conv2dOptions& opt) {
  SCION_CHECK(x.dim() == 4, "conv2d: input must be (N, C, H, W), got ", shape_str(x.shape()));
  SCION_CHECK(w.dim() == 4, "conv2d: weight must be (O, C/groups, KH, KW), got ",
              shape_str(w.shape()));
  SCION_CHECK(is_floating(x.dtype()) && x.dtype() == w.dtype(), "conv2d: input and weight must "
              "share a floating dtype, got ", dtype_name(x.dtype()), " and ", dtype_name(w.dtype()));
  int64_t g = opt.groups, n = x.size(0), c = x.size(1), h = x.size(2), wd = x.size(3);
  int64_t o = w.size(0), kh = w.size(2), kw = w.size(3);
  SCION_CHECK(g >= 1 && c % g == 0 && o % g == 0 && w.size(1) == c / g, "conv2d: weight ",
              shape_str(w.shape()), " does not fit input ", shape_str(x.shape()), " with groups=", g);
  SCION_CHECK(opt.stride.first > 0 && opt.stride.second > 0 && opt.dilation.first > 0 &&
                  opt.dilation.second > 0 && opt.padding.first >= 0 && opt.padding.second >= 0,
              "conv2d: stride and dilation must be positive, padding non-negative");
  if (b.defined())
    SCION_CHECK(b.dim() == 1 && b.size(0) == o, "conv2d: bias must be (", o, "), got ",
                shape_str(b.shape()));
  cpu::ConvShape cs{opt.stride.first, opt.stride.second, opt.padding.first, opt.padding.second,
                    opt.dilation.first, opt.dilation.second, g};
  int64_t oh = (h + 2 * cs.pad_h - cs.dil_h * (kh - 1) - 1) / cs.stride_h + 1;
  int64_t ow = (wd + 2 * cs.pad_w - cs.dil_w * (kw - 1) - 1) / cs.stride_w + 1;
  SCION_CHECK(oh > 0 && ow > 0, "conv2d: input ", shape_str(x.shape()), " is smaller than kernel ",
              kh, "x", kw, " (after padding and dilation)");
  Tensor xc = x.detach().contiguous(), wc = w.detach().contiguous();
  Tensor y = empty({n, o, oh, ow}, x.dtype());
  if (x.dtype() == DType::f64) {
    cpu::conv2d_reference(xc, wc, y, cs);
    if (b.defined()) y.add_(b.detach().reshape({1, o, 1, 1}));
  } else {
    // oneDNN takes an f32 bias for bf16 convolutions.
    Tensor bias = b.defined() ? b.detach().to(DType::f32).contiguous() : Tensor();
    if (x.dtype() == DType::f32 || !b.defined()) {
      cpu::conv2d_forward(xc, wc, bias, y, cs);
    } else {
      cpu::conv2d_forward(xc, wc, Tensor(), y, cs);
      y.add_(b.detach().reshape({1, o, 1, 1}));
    }
  }
  if (any_requires_grad({&x, &w, &b})) {
    bool nx = x.requires_grad(), nw = w.requires_grad(), nb = b.defined() && b.requires_grad();
    record(y, "conv2d", {x, w, b}, [=](const Tensor& gy) {
      Tensor g = gy.contiguous();
      Tensor gx, gw, gb;
      if (nx) {
        gx = empty(xc.shape(), xc.dtype());
        if (xc.dtype() == DType::f64)
          cpu::conv2d_backward_data_reference(g, wc, gx, cs);
        else
          cpu::conv2d_backward_data(g, wc, gx, cs);
      }
      if (nw) {
        gw = empty(wc.shape(), wc.dtype());
        if (xc.dtype() == DType::f64)
          cpu::conv2d_backward_weights_reference(xc, g, gw, cs);
        else
          cpu::conv2d_backward_weights(xc, g, gw, Tensor(), cs);
      }
      if (nb) gb = sum(g, {0, 2, 3});
      return std::vector<Tensor>{gx, gw, gb};
    });
  }
  return y;
}

}  // namespace scion
