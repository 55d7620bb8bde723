// conv2d on oneDNN (f32, bf16) with an f64 reference path; OIHW weights, groups (depthwise when
// groups == C). Memory format follows the input, as with torch's channels_last: an input whose
// memory is NHWC (strides of x.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)) gives an
// NHWC output and NHWC gradients; anything else is computed as contiguous NCHW. The bias gradient
// is a plain sum of dy over (N, H, W).
#include "core/autocast.h"
#include "core/autograd.h"
#include "core/backend.h"
#include "core/ops.h"

namespace scion {

namespace {

bool is_channels_last(const Tensor& t) {
  const Shape& s = t.shape();
  const Shape& st = t.strides();
  return t.dim() == 4 && st[1] == 1 && st[3] == s[1] && st[2] == s[3] * s[1] &&
         st[0] == s[2] * s[3] * s[1];
}

// t (N, C, H, W) with NHWC memory; copies unless it already is.
Tensor to_channels_last(const Tensor& t) {
  if (is_channels_last(t)) return t;
  return t.permute({0, 2, 3, 1}).contiguous().permute({0, 3, 1, 2});
}

Tensor empty_like_layout(const Shape& s, DType dt, bool channels_last, Device dev) {
  if (!channels_last) return empty(s, dt, dev);
  return empty({s[0], s[2], s[3], s[1]}, dt, dev).permute({0, 3, 1, 2});
}

// Checks that x, w, b and the geometry fit one another; returns the output's shape (N, O, OH, OW).
Shape conv2d_output_shape(const Tensor& x, const Tensor& w, const Tensor& b, const ConvShape& cs) {
  SCION_CHECK(x.dim() == 4, "conv2d: input must be (N, C, H, W), got ", shape_str(x.shape()));
  SCION_CHECK(w.dim() == 4, "conv2d: weight must be (O, C/groups, KH, KW), got ",
              shape_str(w.shape()));
  SCION_CHECK(is_floating(x.dtype()) && x.dtype() == w.dtype(),
              "conv2d: input and weight must share a floating dtype, got ", dtype_name(x.dtype()),
              " and ", dtype_name(w.dtype()));
  const int64_t groups = cs.groups, c = x.size(1), o = w.size(0), kh = w.size(2), kw = w.size(3);
  SCION_CHECK(groups >= 1 && c % groups == 0 && o % groups == 0 && w.size(1) == c / groups,
              "conv2d: weight ", shape_str(w.shape()), " does not fit input ", shape_str(x.shape()),
              " with groups=", groups);
  SCION_CHECK(cs.stride_h > 0 && cs.stride_w > 0 && cs.dil_h > 0 && cs.dil_w > 0 && cs.pad_h >= 0 &&
                  cs.pad_w >= 0,
              "conv2d: stride and dilation must be positive, padding non-negative");
  if (b.defined())
    SCION_CHECK(b.dim() == 1 && b.size(0) == o, "conv2d: bias must be (", o, "), got ",
                shape_str(b.shape()));
  const int64_t oh = (x.size(2) + 2 * cs.pad_h - cs.dil_h * (kh - 1) - 1) / cs.stride_h + 1;
  const int64_t ow = (x.size(3) + 2 * cs.pad_w - cs.dil_w * (kw - 1) - 1) / cs.stride_w + 1;
  SCION_CHECK(oh > 0 && ow > 0, "conv2d: input ", shape_str(x.shape()), " is smaller than kernel ",
              kh, "x", kw, " (after padding and dilation)");
  return {x.size(0), o, oh, ow};
}

// The input backward keeps for the weight gradient: xc (the input as computed), except for a
// depthwise convolution computed in f32 under autocast, which keeps a bf16 copy of its input (as
// torch's graph does, which runs it in bf16), widened again in backward: half the bytes for the
// largest tensor of a ConvNeXt block.
Tensor input_kept_for_weights(const Tensor& x_in, const Tensor& xc, bool depthwise_in) {
  if (!depthwise_in || !autocast_enabled() || xc.dtype() == DType::f64) return xc;
  return x_in.dtype() == DType::bf16 ? x_in.detach() : xc.to(DType::bf16);
}

}  // namespace

bool is_depthwise(const Tensor& w, int64_t groups) {
  return w.dim() == 4 && groups > 1 && w.size(0) == groups && w.size(1) == 1;
}

Tensor conv2d(const Tensor& x_in, const Tensor& w_in, const Tensor& b_in,
              const Conv2dOptions& opt) {
  // Under autocast, depthwise convolutions stay in f32: scion computes them with f32 kernels in any
  // case (core/cpu/backend.cpp), so casting to bf16 would only add two roundings and copies. For
  // the weight gradient they keep a bf16 copy of the input (below), as torch's bf16 graph does.
  const bool depthwise_in = x_in.dim() == 4 && w_in.dim() == 4 && opt.groups == x_in.size(1) &&
                            is_depthwise(w_in, opt.groups);
  const Tensor x = depthwise_in ? autocast_f32(x_in) : autocast_low(x_in);
  const Tensor w = depthwise_in ? autocast_f32(w_in) : autocast_low(w_in);
  const Tensor b = depthwise_in ? autocast_f32(b_in) : autocast_low(b_in);
  // NHWC when the input is, unless it is also plain contiguous (C == 1 or H == W == 1).
  const bool cl = x.dtype() != DType::f64 && is_channels_last(x) && !x.is_contiguous();
  const ConvShape cs{opt.stride.first,   opt.stride.second,   opt.padding.first, opt.padding.second,
                     opt.dilation.first, opt.dilation.second, opt.groups,        cl};
  const Shape y_shape = conv2d_output_shape(x, w, b, cs);
  Tensor xc = cl ? x.detach() : x.detach().contiguous(), wc = w.detach().contiguous();
  Backend& be = backend_for("conv2d", {&x, &w, &b});
  Tensor y = empty_like_layout(y_shape, x.dtype(), cl, x.device());
  be.conv2d_forward(xc, wc, b.defined() ? b.detach() : Tensor(), y, cs);
  if (any_requires_grad({&x, &w, &b})) {
    bool nx = x.requires_grad(), nw = w.requires_grad(), nb = b.defined() && b.requires_grad();
    // What backward needs, and only that: the weight for the data gradient, the input for the
    // weight gradient.
    const Shape x_shape = xc.shape(), w_shape = wc.shape();
    const DType dt = xc.dtype();
    const Device dev = xc.device();
    Tensor w_kept = nx ? wc : Tensor();
    Tensor x_kept = nw ? input_kept_for_weights(x_in, xc, depthwise_in) : Tensor();
    record(y, "conv2d", {x, w, b}, [=, &be](const Tensor& gy) {
      Tensor g = cl ? to_channels_last(gy) : gy.contiguous();
      Tensor gx, gw, gb;
      if (nx) {
        gx = empty_like_layout(x_shape, dt, cl, dev);
        be.conv2d_backward_data(g, w_kept, gx, cs);
      }
      if (nw) {
        gw = empty(w_shape, dt, dev);
        Tensor xw = x_kept.to(dt);
        be.conv2d_backward_weights(cl ? to_channels_last(xw) : xw.contiguous(), g, gw, cs);
      }
      if (nb) gb = sum(g, {0, 2, 3});
      return std::vector<Tensor>{gx, gw, gb};
    });
  }
  return y;
}

}  // namespace scion
