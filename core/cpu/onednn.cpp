// oneDNN engine, descriptors and the cached primitives for eltwise, matmul, softmax and conv.
// Convolutions are created with format_tag::any so oneDNN chooses its fast blocked layouts (the
// JIT depthwise kernels need them); user NCHW tensors are reordered in and out around the call.
#include "core/cpu/onednn.h"

#include <atomic>
#include <mutex>
#include <sstream>
#include <unordered_map>
#include <vector>

#include "core/cpu/isa.h"
#include "core/cpu/kernels.h"
#include "core/cpu/parallel.h"

namespace scion::cpu {

using dnnl::memory;
using tag = dnnl::memory::format_tag;

dnnl::engine& engine() {
  static dnnl::engine e = [] {
    configure_onednn();  // SCION_MAX_ISA's cap, before oneDNN generates any code
    return dnnl::engine(dnnl::engine::kind::cpu, 0);
  }();
  return e;
}

dnnl::stream& stream() {
  static dnnl::stream s(engine());
  return s;
}

memory::data_type dnnl_dtype(DType t) {
  switch (t) {
    case DType::f32:
      return memory::data_type::f32;
    case DType::bf16:
      return memory::data_type::bf16;
    case DType::i32:
      return memory::data_type::s32;
    case DType::u8:
      return memory::data_type::u8;
    default:
      break;
  }
  throw Error(detail::str_cat("oneDNN has no data type for ", dtype_name(t)));
}

bool dnnl_supports(DType t) {
  return t == DType::f32 || (t == DType::bf16 && onednn_has_bf16());
}

memory::desc memory_desc(const Tensor& t) {
  memory::dims dims(t.shape().begin(), t.shape().end()), st(t.strides().begin(), t.strides().end());
  if (dims.empty()) {
    dims = {1};
    st = {1};
  }
  return memory::desc(dims, dnnl_dtype(t.dtype()), st);
}

dnnl::memory make_memory(const Tensor& t) {
  return dnnl::memory(memory_desc(t), engine(), t.raw_data());
}

namespace {

std::string key_of(const Tensor& t) {
  std::ostringstream o;
  o << dtype_name(t.dtype()) << shape_str(t.shape()) << "/" << shape_str(t.strides()) << ";";
  return o.str();
}

template <class PD, class P>
class PdCache {
 public:
  template <class Make>
  std::pair<PD, dnnl::primitive> get(const std::string& shape_key, const Make& make) {
    // A primitive splits its work for the thread count it was made for (see adapt_threads).
    const std::string key = std::to_string(num_threads()) + "t" + shape_key;
    std::lock_guard<std::mutex> lock(mu_);
    auto it = map_.find(key);
    if (it != map_.end()) return it->second;
    PD pd = make();
    dnnl::primitive prim = P(pd);
    auto& slot = map_[key];
    slot = {pd, prim};
    return slot;
  }

 private:
  std::mutex mu_;
  std::unordered_map<std::string, std::pair<PD, dnnl::primitive>> map_;
};

// Runs f, turning oneDNN's exceptions into scion errors that name the primitive, its operands
// (dtype, shape / strides) and what this CPU offers; the backend routes around what oneDNN lacks
// (bf16 below AVX-512), so this is reached only by a case no path covers.
template <class F>
void checked(const char* what, const std::string& key, const F& f) {
  try {
    f();
  } catch (const dnnl::error& e) {
    throw Error(detail::str_cat(what, ": no oneDNN kernel for ", key, " on this CPU (", cpu_model(),
                                "; oneDNN ISA ", onednn_isa_name(), ", scion kernels ",
                                isa_name(active_isa()), "): ", e.what()));
  }
}

void run(const dnnl::primitive& p, const std::unordered_map<int, dnnl::memory>& args) {
  p.execute(stream(), args);
  stream().wait();
}

// Memory of layout `md` for one call, from scion's caching allocator; `keep` holds it until the
// call has run. (oneDNN's own allocation is a fresh malloc per call, and glibc serves a large one
// with mmap, so its pages fault in again every step: 54,000 page faults per ConvNeXt-F 224 px
// step at batch 64, whose stem and downsampling convolutions take blocked layouts, 1.5% of it.)
std::atomic<int64_t> layout_copy_bytes{0};

dnnl::memory temp_memory(const memory::desc& md, std::vector<Tensor>& keep) {
  layout_copy_bytes += int64_t(md.get_size());
  keep.push_back(empty({int64_t(md.get_size())}, DType::u8));
  return dnnl::memory(md, engine(), keep.back().raw_data());
}

// Copies between a user layout and the layout a primitive wants, when they differ.
dnnl::memory to_layout(const dnnl::memory& user, const memory::desc& want,
                       std::vector<Tensor>& keep) {
  if (user.get_desc() == want) return user;
  dnnl::memory m = temp_memory(want, keep), src = user;
  dnnl::reorder(src, m).execute(stream(), src, m);
  return m;
}

}  // namespace

int64_t onednn_layout_copy_bytes() {
  return layout_copy_bytes;
}

void eltwise_forward(dnnl::algorithm alg, float alpha, float beta, const Tensor& src,
                     const Tensor& dst) {
  std::string key = detail::str_cat(int(alg), ",", alpha, ",", beta, key_of(src));
  checked("eltwise_forward", key, [&] {
    static PdCache<dnnl::eltwise_forward::primitive_desc, dnnl::eltwise_forward> cache;
    auto [pd, prim] = cache.get(key, [&] {
      return dnnl::eltwise_forward::primitive_desc(
          {dnnl::prop_kind::forward_training, alg, memory_desc(src), alpha, beta}, engine());
    });
    run(prim, {{DNNL_ARG_SRC, make_memory(src)}, {DNNL_ARG_DST, make_memory(dst)}});
  });
}

void eltwise_backward(dnnl::algorithm alg, float alpha, float beta, const Tensor& diff_dst,
                      const Tensor& data, const Tensor& diff_src) {
  std::string key = detail::str_cat(int(alg), ",", alpha, ",", beta, key_of(data));
  checked("eltwise_backward", key, [&] {
    static PdCache<dnnl::eltwise_backward::primitive_desc, dnnl::eltwise_backward> cache;
    auto [pd, prim] = cache.get(key, [&] {
      auto md = memory_desc(data);
      dnnl::eltwise_forward::primitive_desc hint(
          {dnnl::prop_kind::forward_training, alg, md, alpha, beta}, engine());
      return dnnl::eltwise_backward::primitive_desc({alg, md, md, alpha, beta}, engine(), hint);
    });
    bool use_dst = alg == dnnl::algorithm::eltwise_exp_use_dst_for_bwd ||
                   alg == dnnl::algorithm::eltwise_tanh_use_dst_for_bwd ||
                   alg == dnnl::algorithm::eltwise_logistic_use_dst_for_bwd ||
                   alg == dnnl::algorithm::eltwise_sqrt_use_dst_for_bwd;
    run(prim, {{use_dst ? DNNL_ARG_DST : DNNL_ARG_SRC, make_memory(data)},
               {DNNL_ARG_DIFF_DST, make_memory(diff_dst)},
               {DNNL_ARG_DIFF_SRC, make_memory(diff_src)}});
  });
}

void matmul(const Tensor& src, const Tensor& wei, const Tensor& bias, const Tensor& dst) {
  std::string key = key_of(src) + key_of(wei) + (bias.defined() ? key_of(bias) : "-") + key_of(dst);
  checked("matmul", key, [&] {
    static PdCache<dnnl::matmul::primitive_desc, dnnl::matmul> cache;
    auto [pd, prim] = cache.get(key, [&] {
      memory::desc bmd = bias.defined() ? memory_desc(bias) : memory::desc();
      return dnnl::matmul::primitive_desc(
          {memory_desc(src), memory_desc(wei), bmd, memory_desc(dst)}, engine());
    });
    std::unordered_map<int, dnnl::memory> args{{DNNL_ARG_SRC, make_memory(src)},
                                               {DNNL_ARG_WEIGHTS, make_memory(wei)},
                                               {DNNL_ARG_DST, make_memory(dst)}};
    if (bias.defined()) args[DNNL_ARG_BIAS] = make_memory(bias);
    run(prim, args);
  });
}

void softmax_forward(bool log, int axis, const Tensor& src, const Tensor& dst) {
  std::string key = detail::str_cat(log, axis, key_of(src));
  checked(log ? "logsoftmax_forward" : "softmax_forward", key, [&] {
    auto args = std::unordered_map<int, dnnl::memory>{{DNNL_ARG_SRC, make_memory(src)},
                                                      {DNNL_ARG_DST, make_memory(dst)}};
    if (log) {
      static PdCache<dnnl::logsoftmax_forward::primitive_desc, dnnl::logsoftmax_forward> cache;
      auto [pd, prim] = cache.get(key, [&] {
        return dnnl::logsoftmax_forward::primitive_desc(
            {dnnl::prop_kind::forward_training, memory_desc(src), axis}, engine());
      });
      run(prim, args);
    } else {
      static PdCache<dnnl::softmax_forward::primitive_desc, dnnl::softmax_forward> cache;
      auto [pd, prim] = cache.get(key, [&] {
        return dnnl::softmax_forward::primitive_desc(
            {dnnl::prop_kind::forward_training, memory_desc(src), axis}, engine());
      });
      run(prim, args);
    }
  });
}

void softmax_backward(bool log, int axis, const Tensor& dst, const Tensor& diff_dst,
                      const Tensor& diff_src) {
  std::string key = detail::str_cat(log, axis, key_of(dst));
  checked(log ? "logsoftmax_backward" : "softmax_backward", key, [&] {
    auto md = memory_desc(dst);
    auto args = std::unordered_map<int, dnnl::memory>{{DNNL_ARG_DST, make_memory(dst)},
                                                      {DNNL_ARG_DIFF_DST, make_memory(diff_dst)},
                                                      {DNNL_ARG_DIFF_SRC, make_memory(diff_src)}};
    if (log) {
      static PdCache<dnnl::logsoftmax_backward::primitive_desc, dnnl::logsoftmax_backward> cache;
      auto [pd, prim] = cache.get(key, [&] {
        dnnl::logsoftmax_forward::primitive_desc hint({dnnl::prop_kind::forward_training, md, axis},
                                                      engine());
        return dnnl::logsoftmax_backward::primitive_desc({md, md, axis}, engine(), hint);
      });
      run(prim, args);
    } else {
      static PdCache<dnnl::softmax_backward::primitive_desc, dnnl::softmax_backward> cache;
      auto [pd, prim] = cache.get(key, [&] {
        dnnl::softmax_forward::primitive_desc hint({dnnl::prop_kind::forward_training, md, axis},
                                                   engine());
        return dnnl::softmax_backward::primitive_desc({md, md, axis}, engine(), hint);
      });
      run(prim, args);
    }
  });
}

namespace {

struct ConvDescs {
  memory::desc x, w, b, y;  // user layouts
  memory::desc xa, wa, ya;  // format any
  memory::dims strides, dilates, pad_l, pad_r;
};

// `nhwc_depthwise`: run a depthwise convolution in NHWC even for NCHW tensors (the backward-
// weights pass, where oneDNN 2.6 has no fast blocked kernel); otherwise depthwise convolutions run
// in NHWC for NHWC tensors and in oneDNN's choice of (blocked) layout for NCHW ones.
ConvDescs conv_descs(const Tensor& x, const Tensor& w, bool has_bias, const Tensor& y,
                     const ConvShape& cs, bool nhwc_depthwise = false) {
  ConvDescs d;
  auto dt = dnnl_dtype(x.dtype());
  memory::dims xd(x.shape().begin(), x.shape().end()), yd(y.shape().begin(), y.shape().end());
  memory::dims wd;
  const auto& ws = w.shape();
  if (cs.groups == 1) {
    wd = {ws[0], ws[1], ws[2], ws[3]};
    d.w = memory::desc(wd, dt, tag::oihw);
  } else {
    wd = {cs.groups, ws[0] / cs.groups, ws[1], ws[2], ws[3]};
    d.w = memory::desc(wd, dt, tag::goihw);
  }
  tag user = cs.channels_last ? tag::nhwc : tag::nchw;
  bool depthwise = cs.groups > 1 && cs.groups == xd[1] && cs.groups == yd[1];
  tag prim = depthwise && (cs.channels_last || nhwc_depthwise) ? tag::nhwc : tag::any;
  d.x = memory::desc(xd, dt, user);
  d.y = memory::desc(yd, dt, user);
  d.xa = memory::desc(xd, dt, prim);
  d.ya = memory::desc(yd, dt, prim);
  d.wa = memory::desc(wd, dt, tag::any);
  // Bias stays f32 for bf16 convolutions (oneDNN accumulates in f32).
  if (has_bias)
    d.b = memory::desc({ws[0]}, x.dtype() == DType::bf16 ? memory::data_type::f32 : dt, tag::x);
  d.strides = {cs.stride_h, cs.stride_w};
  d.dilates = {cs.dil_h - 1, cs.dil_w - 1};
  d.pad_l = {cs.pad_h, cs.pad_w};
  d.pad_r = {
      (yd[2] - 1) * cs.stride_h - xd[2] + (ws[2] - 1) * cs.dil_h + 1 - cs.pad_h,
      (yd[3] - 1) * cs.stride_w - xd[3] + (ws[3] - 1) * cs.dil_w + 1 - cs.pad_w,
  };
  return d;
}

std::string conv_key(const Tensor& x, const Tensor& w, const ConvShape& cs, bool bias) {
  return detail::str_cat(key_of(x), key_of(w), cs.stride_h, ",", cs.stride_w, ",", cs.pad_h, ",",
                         cs.pad_w, ",", cs.dil_h, ",", cs.dil_w, ",", cs.groups, ",", bias, ",",
                         cs.channels_last);
}

dnnl::convolution_forward::primitive_desc conv_fwd_pd(const ConvDescs& d, bool bias) {
  if (bias)
    return dnnl::convolution_forward::primitive_desc(
        {dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct, d.xa, d.wa, d.b,
         d.ya, d.strides, d.dilates, d.pad_l, d.pad_r},
        engine());
  return dnnl::convolution_forward::primitive_desc(
      {dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct, d.xa, d.wa, d.ya,
       d.strides, d.dilates, d.pad_l, d.pad_r},
      engine());
}

dnnl::memory user_mem(const memory::desc& md, const Tensor& t) {
  return dnnl::memory(md, engine(), t.raw_data());
}

// Runs `prim` writing into a primitive-layout buffer, then reorders into the user tensor.
void reorder_out(dnnl::memory prim_out, dnnl::memory user) {
  if (prim_out.get_data_handle() != user.get_data_handle())
    dnnl::reorder(prim_out, user).execute(stream(), prim_out, user);
}

dnnl::memory out_mem(const memory::desc& want, const dnnl::memory& user,
                     std::vector<Tensor>& keep) {
  return want == user.get_desc() ? user : temp_memory(want, keep);
}

}  // namespace

namespace {

// A depthwise convolution of f32 tensors whose memory is NHWC: cs.channels_last, or 1x1 maps
// (contiguous NCHW is then the same memory; ConvNeXt's last stage at 32 px input comes so).
bool nhwc_f32_depthwise(const Tensor& x, const Tensor& w, const Tensor& y, const ConvShape& cs) {
  bool nhwc_memory = cs.channels_last || (x.size(2) * x.size(3) == 1 && y.size(2) * y.size(3) == 1);
  return nhwc_memory && x.dtype() == DType::f32 && cs.groups == x.size(1) &&
         cs.groups == y.size(1) && w.size(1) == 1;
}

}  // namespace

void conv2d_forward(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& y,
                    const ConvShape& cs) {
  std::string key = conv_key(x, w, cs, b.defined());
  checked("convolution_forward", key, [&] {
    ConvDescs d = conv_descs(x, w, b.defined(), y, cs);
    static PdCache<dnnl::convolution_forward::primitive_desc, dnnl::convolution_forward> cache;
    auto [pd, prim] = cache.get(key, [&] { return conv_fwd_pd(d, b.defined()); });
    // oneDNN's fallbacks (im2col + gemm, reference) are far slower than a direct loop for depthwise
    // convolutions of NHWC f32 tensors; see depthwise.cpp.
    std::string impl = pd.impl_info_str();
    bool fallback = impl.find("gemm") != std::string::npos || impl.find("ref") != std::string::npos;
    if (fallback && nhwc_f32_depthwise(x, w, y, cs)) {
      depthwise_nhwc_forward(x, w, b, y, cs);
      return;
    }
    std::vector<Tensor> keep;  // the blocked-layout copies, until the call has run
    auto xm = to_layout(user_mem(d.x, x), pd.src_desc(), keep);
    auto wm = to_layout(user_mem(d.w, w), pd.weights_desc(), keep);
    auto yu = user_mem(d.y, y);
    auto ym = out_mem(pd.dst_desc(), yu, keep);
    std::unordered_map<int, dnnl::memory> args{
        {DNNL_ARG_SRC, xm}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_DST, ym}};
    if (b.defined()) args[DNNL_ARG_BIAS] = user_mem(d.b, b);
    prim.execute(stream(), args);
    reorder_out(ym, yu);
    stream().wait();
  });
}

void conv2d_backward_data(const Tensor& dy, const Tensor& w, const Tensor& dx,
                          const ConvShape& cs) {
  std::string key = conv_key(dx, w, cs, false);
  checked("convolution_backward_data", key, [&] {
    ConvDescs d = conv_descs(dx, w, false, dy, cs);
    static PdCache<dnnl::convolution_backward_data::primitive_desc, dnnl::convolution_backward_data>
        cache;
    auto [pd, prim] = cache.get(key, [&] {
      auto hint = conv_fwd_pd(d, false);
      return dnnl::convolution_backward_data::primitive_desc(
          {dnnl::algorithm::convolution_direct, d.xa, d.wa, d.ya, d.strides, d.dilates, d.pad_l,
           d.pad_r},
          engine(), hint);
    });
    std::vector<Tensor> keep;  // the blocked-layout copies, until the call has run
    auto dym = to_layout(user_mem(d.y, dy), pd.diff_dst_desc(), keep);
    auto wm = to_layout(user_mem(d.w, w), pd.weights_desc(), keep);
    auto dxu = user_mem(d.x, dx);
    auto dxm = out_mem(pd.diff_src_desc(), dxu, keep);
    prim.execute(stream(),
                 {{DNNL_ARG_DIFF_DST, dym}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_DIFF_SRC, dxm}});
    reorder_out(dxm, dxu);
    stream().wait();
  });
}

void conv2d_backward_weights(const Tensor& x, const Tensor& dy, const Tensor& dw, const Tensor& db,
                             const ConvShape& cs) {
  // NHWC depthwise weight gradients run scion's direct loop (depthwise.cpp): oneDNN 2.6 has only
  // its generic kernel for them, several times slower.
  if (!db.defined() && nhwc_f32_depthwise(x, dw, dy, cs)) {
    depthwise_nhwc_backward_weights(x, dy, dw, cs);
    return;
  }
  std::string key = conv_key(x, dw, cs, db.defined());
  checked("convolution_backward_weights", key, [&] {
    ConvDescs d = conv_descs(x, dw, db.defined(), dy, cs, /*nhwc_depthwise=*/true);
    static PdCache<dnnl::convolution_backward_weights::primitive_desc,
                   dnnl::convolution_backward_weights>
        cache;
    auto [pd, prim] = cache.get(key, [&] {
      auto hint = conv_fwd_pd(d, db.defined());
      if (db.defined())
        return dnnl::convolution_backward_weights::primitive_desc(
            {dnnl::algorithm::convolution_direct, d.xa, d.wa, d.b, d.ya, d.strides, d.dilates,
             d.pad_l, d.pad_r},
            engine(), hint);
      return dnnl::convolution_backward_weights::primitive_desc(
          {dnnl::algorithm::convolution_direct, d.xa, d.wa, d.ya, d.strides, d.dilates, d.pad_l,
           d.pad_r},
          engine(), hint);
    });
    std::vector<Tensor> keep;  // the blocked-layout copies, until the call has run
    auto xm = to_layout(user_mem(d.x, x), pd.src_desc(), keep);
    auto dym = to_layout(user_mem(d.y, dy), pd.diff_dst_desc(), keep);
    auto dwu = user_mem(d.w, dw);
    auto dwm = out_mem(pd.diff_weights_desc(), dwu, keep);
    std::unordered_map<int, dnnl::memory> args{
        {DNNL_ARG_SRC, xm}, {DNNL_ARG_DIFF_DST, dym}, {DNNL_ARG_DIFF_WEIGHTS, dwm}};
    if (db.defined()) args[DNNL_ARG_DIFF_BIAS] = user_mem(d.b, db);
    prim.execute(stream(), args);
    reorder_out(dwm, dwu);
    stream().wait();
  });
}

}  // namespace scion::cpu
