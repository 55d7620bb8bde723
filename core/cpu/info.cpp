// Which kernel each family runs, asked of oneDNN (a primitive descriptor for a representative
// shape: its impl_info_str is the kernel oneDNN would run) and of scion's dispatch (active_isa()).
#include "core/cpu/info.h"

#include <dnnl.hpp>

#include "core/cpu/isa.h"
#include "core/cpu/kernels.h"
#include "core/cpu/onednn.h"

namespace scion::cpu {

namespace {

using dnnl::memory;
using tag = memory::format_tag;

std::string matmul_impl(memory::data_type dt) {
  try {
    memory::desc a({256, 192}, dt, tag::ab), b({192, 576}, dt, tag::ab), c({256, 576}, dt, tag::ab);
    return dnnl::matmul::primitive_desc({a, b, c}, engine()).impl_info_str();
  } catch (const dnnl::error&) {
    return "";
  }
}

// A 3x3 convolution (groups 1) or a 7x7 depthwise one (ConvNeXt's), 64 channels on 16x16.
std::string conv_impl(memory::data_type dt, bool depthwise) {
  try {
    const memory::dim c = 64, k = depthwise ? 7 : 3, p = k / 2;
    memory::dims w = depthwise ? memory::dims{c, 1, 1, k, k} : memory::dims{c, c, k, k};
    memory::desc x({8, c, 16, 16}, dt, tag::any), y({8, c, 16, 16}, dt, tag::any),
        wd(w, dt, tag::any);
    return dnnl::convolution_forward::primitive_desc({dnnl::prop_kind::forward_training,
                                                      dnnl::algorithm::convolution_direct,
                                                      x,
                                                      wd,
                                                      y,
                                                      {1, 1},
                                                      {p, p},
                                                      {p, p}},
                                                     engine())
        .impl_info_str();
  } catch (const dnnl::error&) {
    return "";
  }
}

// `widened`: how bf16 runs without oneDNN bf16 primitives.
std::string onednn_row(const std::string& f32, const std::string& bf16,
                       const std::string& widened = "the f32 kernel on widened copies") {
  std::string out = "oneDNN " + (f32.empty() ? "(no kernel)" : f32) + " (f32); bf16: ";
  if (!onednn_has_bf16() || bf16.empty()) return out + widened;
  return out + "oneDNN " + bf16;
}

}  // namespace

std::vector<std::pair<std::string, std::string>> kernel_paths() {
  using dt = memory::data_type;
  const std::string own = std::string("scion ") + isa_name(std::min(active_isa(), Isa::avx512));
  const bool bf16 = onednn_has_bf16();
  std::string attention = own + " row softmax, tiles on oneDNN sgemm (f32); bf16: ";
  attention += attention_amx_kernel_available()    ? "scion amx tiles (tdpbf16ps)"
               : attention_bf16_kernel_available() ? "scion avx512_bf16 vdpbf16ps micro-kernel"
                                                   : "the f32 engine on widened tiles";
  return {
      {"GEMM (matmul, linear)",
       bf16_widened_blocks_enabled()
           ? onednn_row(matmul_impl(dt::f32), bf16 ? matmul_impl(dt::bf16) : "",
                        "oneDNN sgemm on widened cache-sized blocks (batched: the f32 kernel on "
                        "widened copies)")
           : onednn_row(matmul_impl(dt::f32), bf16 ? matmul_impl(dt::bf16) : "")},
      {"convolution",
       onednn_row(conv_impl(dt::f32, false), bf16 ? conv_impl(dt::bf16, false) : "")},
      {"depthwise convolution",
       onednn_row(conv_impl(dt::f32, true), "") + "; NHWC fallback and weight gradients: " + own},
      {"attention (fused)", attention},
      {"layer norm", own},
      {"softmax (last dim), gelu", own},
      {"elementwise, reductions, casts", own},
      {"optimizer (AdamW, SGD)", own},
  };
}

}  // namespace scion::cpu
