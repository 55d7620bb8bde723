// Every core op against PyTorch: inputs, outputs and input gradients from
// tests/golden/ops.safetensors (made by tests/golden/make_golden.py). Tolerances are atol +
// rtol*|ref|: f32 1e-5 / 1e-5 (outputs and gradients); bf16 outputs are compared at 1e-2 / 2^-6 (4
// bf16 ulps: both sides round each stored bf16 result, and the rounding of near-tie values can
// differ by one).
#include "tests/support.h"

using namespace scion;
using scion::test::golden_ops;

namespace {

using Fn = std::function<Tensor(const std::vector<Tensor>&)>;

struct Tol {
  double atol, rtol;
};
constexpr Tol kF32{1e-5, 1e-5};
constexpr Tol kBf16{1e-2, 1.0 / 64};

void check_golden(const std::string& name, const Fn& fn, Tol tol = kF32, Tol grad_tol = kF32) {
  const SafetensorsFile& f = golden_ops();
  REQUIRE(f.contains(name + ".out"));
  std::vector<Tensor> ins;
  for (int i = 0; f.contains(name + ".in" + std::to_string(i)); ++i) {
    Tensor t = f.get(name + ".in" + std::to_string(i)).clone();
    if (f.contains(name + ".grad" + std::to_string(i))) t.requires_grad_();
    ins.push_back(t);
  }
  INFO("case " << name);
  Tensor out = fn(ins);
  Tensor ref = f.get(name + ".out");
  REQUIRE(out.shape() == ref.shape());
  REQUIRE(out.dtype() == ref.dtype());
  if (!is_floating(ref.dtype())) {
    CHECK(out.to_vector() == ref.to_vector());
    return;
  }
  CHECK_CLOSE(out, ref, tol.atol, tol.rtol);
  if (!f.contains(name + ".gout")) return;
  out.backward(f.get(name + ".gout"));
  for (size_t i = 0; i < ins.size(); ++i) {
    std::string g = name + ".grad" + std::to_string(i);
    if (!f.contains(g)) continue;
    INFO("gradient of input " << i);
    REQUIRE(ins[i].grad().defined());
    CHECK_CLOSE(ins[i].grad(), f.get(g), grad_tol.atol, grad_tol.rtol);
  }
}

Fn unary_fn(Tensor (*op)(const Tensor&)) {
  return [op](const std::vector<Tensor>& in) { return op(in[0]); };
}
Fn binary_fn(Tensor (*op)(const Tensor&, const Tensor&)) {
  return [op](const std::vector<Tensor>& in) { return op(in[0], in[1]); };
}

}  // namespace

TEST_CASE("golden: unary elementwise", "[golden]") {
  std::vector<std::pair<std::string, Tensor (*)(const Tensor&)>> ops = {
      {"neg", neg},   {"exp", exp}, {"log", log},   {"sqrt", sqrt},       {"rsqrt", rsqrt},
      {"tanh", tanh}, {"erf", erf}, {"relu", relu}, {"sigmoid", sigmoid},
  };
  for (auto& [name, op] : ops) {
    check_golden(name, unary_fn(op));
    check_golden(name + "_bf16", unary_fn(op), kBf16, kBf16);
  }
  auto gelu_erf = [](const std::vector<Tensor>& in) { return gelu(in[0]); };
  auto gelu_tanh = [](const std::vector<Tensor>& in) { return gelu(in[0], "tanh"); };
  check_golden("gelu", gelu_erf);
  check_golden("gelu_tanh", gelu_tanh);
  check_golden("gelu_bf16", gelu_erf, kBf16, kBf16);
  check_golden("gelu_tanh_bf16", gelu_tanh, kBf16, kBf16);
}

TEST_CASE("golden: binary elementwise with broadcasting", "[golden]") {
  check_golden("add", binary_fn(add));
  check_golden("sub", binary_fn(sub));
  check_golden("mul", binary_fn(mul));
  check_golden("div", binary_fn(div));
  check_golden("pow", binary_fn(pow));
  check_golden("pow_scalar", [](const std::vector<Tensor>& in) { return pow(in[0], 3.0); });
  check_golden("maximum", binary_fn(maximum));
  check_golden("minimum", binary_fn(minimum));
  check_golden("add_bf16", binary_fn(add), kBf16, kBf16);
  check_golden("mul_bf16", binary_fn(mul), kBf16, kBf16);
  check_golden("eq", binary_fn(eq));
  check_golden("ne", binary_fn(ne));
  check_golden("lt", binary_fn(lt));
  check_golden("le", binary_fn(le));
  check_golden("gt", binary_fn(gt));
  check_golden("ge", binary_fn(ge));
  check_golden("where", [](const std::vector<Tensor>& in) { return where(in[0], in[1], in[2]); });
}

// torch.addcmul(x, t, s): the first three cases take scion's one-pass layer-scale kernel (s per
// channel, innermost; the second a bf16 branch on an f32 stream), the last its add and mul. torch
// rounds a bf16 x + t * s once, scion the product then the sum (as add(x, mul(t, s))): within the
// bf16 tolerance.
TEST_CASE("golden: addcmul", "[golden]") {
  Fn fn = [](const std::vector<Tensor>& in) { return addcmul(in[0], in[1], in[2]); };
  check_golden("addcmul", fn);
  check_golden("addcmul_bf16_branch", fn);
  check_golden("addcmul_bf16", fn, kBf16, kBf16);
  check_golden("addcmul_outer", fn);
}

TEST_CASE("golden: reductions", "[golden]") {
  check_golden("sum_all", [](const std::vector<Tensor>& in) { return sum(in[0]); });
  check_golden("sum_dim1_keep",
               [](const std::vector<Tensor>& in) { return sum(in[0], {1}, true); });
  check_golden("sum_dims02", [](const std::vector<Tensor>& in) { return sum(in[0], {0, 2}); });
  check_golden("mean_dims02", [](const std::vector<Tensor>& in) { return mean(in[0], {0, -1}); });
  check_golden("mean_all", [](const std::vector<Tensor>& in) { return mean(in[0]); });
  check_golden("var_dim1", [](const std::vector<Tensor>& in) { return var(in[0], {1}); });
  check_golden("var_all", [](const std::vector<Tensor>& in) { return var(in[0]); });
  check_golden("max_dim2", [](const std::vector<Tensor>& in) {
    MaxResult r = max(in[0], 2);
    CHECK(r.indices.to_vector() == golden_ops().get("max_dim2.indices").to_vector());
    return r.values;
  });
  check_golden("argmax_dim1", [](const std::vector<Tensor>& in) { return argmax(in[0], 1); });
}

TEST_CASE("golden: matmul and linear", "[golden]") {
  for (std::string name : {"matmul_2d", "matmul_batched_broadcast", "matmul_matrix_batch",
                           "matmul_vec", "matmul_mat_vec"})
    check_golden(name, binary_fn(matmul));
  check_golden("matmul_transposed", [](const std::vector<Tensor>& in) {
    return matmul(in[0].transpose(-1, -2), in[1].transpose(-1, -2));
  });
  check_golden("linear", [](const std::vector<Tensor>& in) { return linear(in[0], in[1], in[2]); });
  check_golden("linear_nobias", [](const std::vector<Tensor>& in) { return linear(in[0], in[1]); });
  check_golden("matmul_bf16", binary_fn(matmul), kBf16, kBf16);
  check_golden(
      "linear_bf16", [](const std::vector<Tensor>& in) { return linear(in[0], in[1], in[2]); },
      kBf16, kBf16);
}

TEST_CASE("golden: conv2d", "[golden]") {
  auto conv = [](Conv2dOptions o, bool bias) {
    return [o, bias](const std::vector<Tensor>& in) {
      return conv2d(in[0], in[1], bias ? in[2] : Tensor(), o);
    };
  };
  Conv2dOptions s2p1;
  s2p1.stride = {2, 2};
  s2p1.padding = {1, 1};
  check_golden("conv2d_s2p1", conv(s2p1, true));
  check_golden("conv2d_s2p1_bf16", conv(s2p1, true), kBf16, kBf16);
  Conv2dOptions dil;
  dil.dilation = {2, 2};
  dil.padding = {2, 2};
  check_golden("conv2d_dil2", conv(dil, false));
  Conv2dOptions grp;
  grp.groups = 2;
  grp.padding = {1, 1};
  check_golden("conv2d_groups2", conv(grp, true));
  Conv2dOptions dw;
  dw.groups = 4;
  dw.padding = {3, 3};
  check_golden("conv2d_depthwise7", conv(dw, true));
  dw.groups = 8;
  check_golden("conv2d_depthwise7_bf16", conv(dw, true), kBf16, kBf16);
  Conv2dOptions patch;
  patch.stride = {4, 4};
  check_golden("conv2d_patch4", conv(patch, true));
}

TEST_CASE("golden: layer_norm, softmax, attention, cross_entropy", "[golden]") {
  check_golden("layer_norm", [](const std::vector<Tensor>& in) {
    return layer_norm(in[0], {8}, in[1], in[2], 1e-6);
  });
  check_golden("layer_norm_2d", [](const std::vector<Tensor>& in) {
    return layer_norm(in[0], {4, 8}, in[1], in[2]);
  });
  check_golden("layer_norm_noaffine",
               [](const std::vector<Tensor>& in) { return layer_norm(in[0], {8}); });
  check_golden(
      "layer_norm_bf16",
      [](const std::vector<Tensor>& in) { return layer_norm(in[0], {32}, in[1], in[2], 1e-6); },
      kBf16, kBf16);
  check_golden("softmax_last", [](const std::vector<Tensor>& in) { return softmax(in[0], -1); });
  check_golden("softmax_dim1", [](const std::vector<Tensor>& in) { return softmax(in[0], 1); });
  check_golden("log_softmax_last",
               [](const std::vector<Tensor>& in) { return log_softmax(in[0], -1); });
  check_golden("log_softmax_dim0",
               [](const std::vector<Tensor>& in) { return log_softmax(in[0], 0); });
  check_golden(
      "softmax_bf16", [](const std::vector<Tensor>& in) { return softmax(in[0], -1); }, kBf16,
      kBf16);
  auto attn = [](const std::vector<Tensor>& in) {
    return attention(in[0], 2, 1 / std::sqrt(12.0));
  };
  check_golden("attention", attn);
  check_golden("attention_bf16", attn, kBf16, kBf16);
  check_golden("cross_entropy",
               [](const std::vector<Tensor>& in) { return cross_entropy(in[0], in[1]); });
  check_golden("cross_entropy_smooth",
               [](const std::vector<Tensor>& in) { return cross_entropy(in[0], in[1], 0.1); });
  check_golden("cross_entropy_soft",
               [](const std::vector<Tensor>& in) { return cross_entropy(in[0], in[1]); });
  check_golden("cross_entropy_soft_smooth",
               [](const std::vector<Tensor>& in) { return cross_entropy(in[0], in[1], 0.1); });
}

TEST_CASE("golden: indexing, joining, views, conversion", "[golden]") {
  check_golden("index_select",
               [](const std::vector<Tensor>& in) { return index_select(in[0], 1, in[1]); });
  check_golden("gather", [](const std::vector<Tensor>& in) { return gather(in[0], 1, in[1]); });
  check_golden("cat", [](const std::vector<Tensor>& in) { return cat({in[0], in[1], in[2]}, 1); });
  // f32 and bf16 give f32, and each gradient comes back in its input's dtype (exact conversions).
  check_golden("cat_mixed", [](const std::vector<Tensor>& in) { return cat({in[0], in[1]}, 1); });
  check_golden("split_chunk", [](const std::vector<Tensor>& in) {
    std::vector<Tensor> parts;
    auto s = split(in[0], 2, 1);
    for (size_t k = 0; k < s.size(); ++k) parts.push_back(s[k] * double(k + 1));
    for (const Tensor& c : chunk(in[0], 3, 1)) parts.push_back(sum(c, {1}, true));
    return cat(parts, 1);
  });
  check_golden("views", [](const std::vector<Tensor>& in) {
    Tensor v = in[0].permute({2, 0, 1}).reshape({4, 6}).slice(0, 1, 3).slice(1, 0, 6, 2);
    return sum(v.unsqueeze(0).expand({3, 2, 3}) * in[1], {0});
  });
  check_golden("to_bf16", [](const std::vector<Tensor>& in) { return in[0].to(DType::bf16); });
}

TEST_CASE("golden: conv2d on channels-last (NHWC) memory gives NHWC results", "[golden]") {
  const SafetensorsFile& f = golden_ops();
  for (std::string name : {"conv2d_depthwise7", "conv2d_s2p1"}) {
    INFO(name);
    auto to_nhwc = [](const Tensor& t) {
      return t.permute({0, 2, 3, 1}).contiguous().permute({0, 3, 1, 2});
    };
    Tensor x = to_nhwc(f.get(name + ".in0")).requires_grad_();
    Tensor w = f.get(name + ".in1").clone().requires_grad_();
    Tensor b = f.get(name + ".in2").clone().requires_grad_();
    Conv2dOptions o;
    if (name == "conv2d_depthwise7") {
      o.padding = {3, 3};
      o.groups = 4;
    } else {
      o.stride = {2, 2};
      o.padding = {1, 1};
    }
    Tensor y = conv2d(x, w, b, o);
    CHECK(y.strides()[1] == 1);  // NHWC in memory
    CHECK_CLOSE(y, f.get(name + ".out"), 1e-5, 1e-5);
    y.backward(f.get(name + ".gout"));
    CHECK_CLOSE(x.grad(), f.get(name + ".grad0"), 1e-5, 1e-5);
    CHECK_CLOSE(w.grad(), f.get(name + ".grad1"), 1e-5, 1e-5);
    CHECK_CLOSE(b.grad(), f.get(name + ".grad2"), 1e-5, 1e-5);
  }
}
