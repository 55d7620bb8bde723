// Backend ops: every op of core/ops.h, forward and backward, run on the `cpu` backend and on the
// independent `reference` backend (plain f64 loops) over a grid of shapes, strides (transposed,
// stepped, expanded views), broadcasts, dtypes (f32, bf16, f64) and memory formats (NCHW and
// channels-last convolutions), and compared output by output and gradient by gradient, as ggml's
// test-backend-ops does. A CUDA backend will be compared against cpu by the same cases.
//
// Tolerances are relative to the scale of each compared tensor: |a - b| <= tol * (max|b| + |b|),
// tol = 2e-5 (f32: f32 accumulation against f64), 2^-6 (bf16: a couple of bf16 roundings in
// different places of a chain) and 1e-12 (f64). A wrong stride, broadcast or layout gives O(1)
// errors.
#include <fstream>
#include <regex>
#include <set>

#include "core/backend.h"
#include "core/cpu/isa.h"
#include "core/cuda/plan.h"
#include "tests/support.h"

using namespace scion;
using scion::test::rand_f64;

namespace {

using Ins = std::vector<Tensor>;
using Outs = std::vector<Tensor>;

// One input: f64 values in [lo, hi) drawn with `seed`, and a view applied on the device (the
// leaf is the tensor before the view, so gradients flow back through it).
struct Input {
  Shape shape;
  double lo = -1, hi = 1;
  std::function<Tensor(const Tensor&)> view;  // identity when empty
  bool grad = true;
  bool integral = false;  // i64 values (indices, labels) in [lo, hi), no gradient
};

struct Case {
  std::string op;  // the name in core/ops.h (coverage), and a variant for messages
  std::string variant;
  std::vector<Input> inputs;
  std::function<Outs(const Ins&)> f;
  bool f64_only_grad = false;  // backward compared in f64 only (ops with data-dependent branches)
};

Input in(Shape s, double lo = -1, double hi = 1) {
  Input i;
  i.shape = std::move(s);
  i.lo = lo;
  i.hi = hi;
  return i;
}
Input viewed(Shape s, std::function<Tensor(const Tensor&)> v, double lo = -1, double hi = 1) {
  Input i = in(std::move(s), lo, hi);
  i.view = std::move(v);
  return i;
}
Input indices(Shape s, int64_t n) {
  Input i = in(std::move(s), 0, double(n));
  i.grad = false;
  i.integral = true;
  return i;
}
Input constant(Shape s, double lo = -1, double hi = 1) {
  Input i = in(std::move(s), lo, hi);
  i.grad = false;
  return i;
}

Tensor transposed(const Tensor& t) {
  return t.transpose(0, 1);
}
Tensor stepped(const Tensor& t) {  // every other element along dim 0
  return t.slice(0, 0, t.size(0), 2);
}
Tensor channels_last(const Tensor& t) {  // NCHW values, NHWC memory
  return t.permute({0, 2, 3, 1}).contiguous().permute({0, 3, 1, 2});
}

std::vector<Case> cases() {
  std::vector<Case> c;
  auto add_case = [&](std::string op, std::string variant, std::vector<Input> ins,
                      std::function<Outs(const Ins&)> f) {
    c.push_back(Case{std::move(op), std::move(variant), std::move(ins), std::move(f)});
  };
  using BinFn = Tensor (*)(const Tensor&, const Tensor&);
  // Elementwise binary ops: same shape, broadcast, transposed and stepped operands.
  for (auto [name, op] :
       std::vector<std::pair<std::string, BinFn>>{{"add", add}, {"sub", sub}, {"mul", mul}}) {
    add_case(name, "same shape", {in({3, 5}), in({3, 5})},
             [op = op](const Ins& x) { return Outs{op(x[0], x[1])}; });
    add_case(name, "broadcast", {in({2, 1, 5}), in({4, 5})},
             [op = op](const Ins& x) { return Outs{op(x[0], x[1])}; });
    add_case(name, "strided", {viewed({5, 3}, transposed), viewed({6, 5}, stepped)},
             [op = op](const Ins& x) { return Outs{op(x[0], x[1])}; });
  }
  // Contiguous operands take whole vectors and a tail (CUDA's map_flat); a view one element in is
  // misaligned for vectors and goes one element at a time.
  add_case("add", "contiguous, whole vectors and a tail", {in({3, 347}), in({3, 347})},
           [](const Ins& x) { return Outs{add(x[0], x[1])}; });
  auto one_in = [](const Tensor& t) { return t.slice(0, 1, t.size(0)); };
  add_case("mul", "contiguous views one element in", {viewed({42}, one_in), viewed({42}, one_in)},
           [](const Ins& x) { return Outs{mul(x[0], x[1])}; });
  // A per-channel row against a dense operand (CUDA's map_rows), second and first.
  add_case("mul", "per-channel row over channels-last",
           {viewed({2, 8, 4, 4}, channels_last), in({8, 1, 1})},
           [](const Ins& x) { return Outs{mul(x[0], x[1])}; });
  // Autocast's casts of a model's parameters at once (CUDA's multi-tensor cast for contiguous f32,
  // one cast each for the strided view and every other dtype), then one of them back.
  add_case("to_all", "parameters of several sizes and a strided view",
           {in({5, 3}), in({9000}), viewed({4, 6}, transposed), in({1})}, [](const Ins& x) {
             std::vector<Tensor> low = to_all({x[0], x[1], x[2], x[3]}, DType::bf16);
             return Outs{low[0], low[1], low[2], low[3], to_all({x[0]}, DType::f32)[0]};
           });
  add_case("sub", "row minus matrix", {in({12}), in({7, 12})},
           [](const Ins& x) { return Outs{sub(x[0], x[1])}; });
  // A value per row (drop path's per-sample mask), second and first.
  add_case("mul", "per-sample value", {in({2, 5, 8}), in({2, 1, 1})},
           [](const Ins& x) { return Outs{mul(x[0], x[1])}; });
  // A residual add of a layer-scaled branch (ConvNeXt's x + h * gamma): channels-last x and t with
  // the (1, C, 1, 1) scale (Backend::layer_scale_rows; on CUDA the row kernels at 8 channels, the
  // mul and add kernels at 6), its gradient both in that layout and in NCHW order (the ops'
  // backward then); tokens with a (D) scale (a ViT layer scale); NCHW memory (add and mul). In the
  // f32 run t is bf16, as autocast's branch.
  for (int64_t ch : {8, 6})
    add_case("addcmul", ch == 8 ? "layer scale, 8 channels" : "layer scale, 6 channels",
             {viewed({2, ch, 3, 5}, channels_last), viewed({2, ch, 3, 5}, channels_last),
              in({1, ch, 1, 1}), in({3, 7, 12}), in({3, 7, 12}), in({12}), in({2, ch, 3, 5}),
              in({2, ch, 3, 5})},
             [](const Ins& x) {
               auto low = [&](const Tensor& t) {
                 return x[0].dtype() == DType::f32 ? t.to(DType::bf16) : t;
               };
               // The second's gradient arrives channels-last, the first's in NCHW order.
               return Outs{addcmul(x[0], low(x[1]), x[2]),
                           addcmul(x[0], low(x[1]), x[2]).permute({0, 2, 3, 1}),
                           addcmul(x[3], low(x[4]), x[5]), addcmul(x[6], low(x[7]), x[2])};
             });
  add_case("div", "per-sample value over a tensor", {in({2, 1, 1}), in({2, 5, 8}, 0.5, 2)},
           [](const Ins& x) { return Outs{div(x[0], x[1])}; });
  // An f32 and a bf16 operand (autocast's residual adds and layer scales) go to the backend as they
  // are (mixed_float_operands): contiguous, a per-channel row, a per-sample value, one value and a
  // transposed view, the bf16 one first and second. In the bf16 and f64 runs both share a dtype.
  add_case("add", "f32 with bf16 operands",
           {in({4, 6, 8}), in({4, 6, 8}), in({8}), in({4, 1, 1}, 0.5, 2), in({8, 6})},
           [](const Ins& x) {
             auto low = [&](const Tensor& t) {
               return x[0].dtype() == DType::f32 ? t.to(DType::bf16) : t;
             };
             return Outs{add(x[0], low(x[1])),
                         sub(low(x[1]), x[0]),
                         mul(x[0], low(x[2])),
                         mul(low(x[2]), x[0]),
                         div(x[0], low(x[3])),
                         div(low(x[1]), x[3]),
                         add(low(x[4]).t(), x[0].select(0, 0)),
                         mul(x[0], sum(low(x[3])))};
           });
  add_case("operator", "dtype casts (autocast's), contiguous", {in({5, 211})}, [](const Ins& x) {
    return Outs{x[0].to(DType::f32) * 2.0, x[0].to(DType::bf16).to(x[0].dtype())};
  });
  add_case("div", "broadcast", {in({2, 1, 5}), in({4, 5}, 0.5, 2)},
           [](const Ins& x) { return Outs{div(x[0], x[1])}; });
  add_case("pow", "tensor exponent", {in({3, 4}, 0.5, 2), in({4}, -1.5, 1.5)},
           [](const Ins& x) { return Outs{pow(x[0], x[1])}; });
  add_case("pow", "scalar exponent", {viewed({4, 3}, transposed, 0.5, 2)},
           [](const Ins& x) { return Outs{pow(x[0], 2.5)}; });
  add_case("maximum", "broadcast", {in({3, 4}), in({4})},
           [](const Ins& x) { return Outs{maximum(x[0], x[1])}; });
  add_case("minimum", "strided", {in({3, 4}), viewed({4, 3}, transposed)},
           [](const Ins& x) { return Outs{minimum(x[0], x[1])}; });
  add_case("where", "broadcast", {in({3, 4}), in({4})}, [](const Ins& x) {
    return Outs{where(gt(x[0], scalar_tensor(0.0, x[0].dtype(), x[0].device())), x[0], x[1])};
  });
  for (auto [name, op] : std::vector<std::pair<std::string, BinFn>>{
           {"eq", eq}, {"ne", ne}, {"lt", lt}, {"le", le}, {"gt", gt}, {"ge", ge}}) {
    add_case(name, "broadcast", {constant({3, 4}), constant({4})}, [op = op](const Ins& x) {
      Tensor a = x[0];
      return Outs{op(a, x[1]), op(a, a.select(1, 2).unsqueeze(1))};  // includes equal elements
    });
  }
  add_case("operator", "tensor-scalar arithmetic", {in({3, 4}, 0.5, 1.5)},
           [](const Ins& x) { return Outs{(2.0 - x[0] * 3.0) / 1.5 + 1.0 / x[0] - (-x[0])}; });

  using UnFn = Tensor (*)(const Tensor&);
  for (auto [name, op] : std::vector<std::pair<std::string, UnFn>>{
           {"neg", neg}, {"exp", exp}, {"tanh", tanh}, {"erf", erf}, {"sigmoid", sigmoid}}) {
    add_case(name, "contiguous", {in({4, 6}, -2, 2)},
             [op = op](const Ins& x) { return Outs{op(x[0])}; });
    add_case(name, "transposed", {viewed({6, 4}, transposed, -2, 2)},
             [op = op](const Ins& x) { return Outs{op(x[0])}; });
  }
  for (auto [name, op] :
       std::vector<std::pair<std::string, UnFn>>{{"log", log}, {"sqrt", sqrt}, {"rsqrt", rsqrt}})
    add_case(name, "stepped", {viewed({6, 4}, stepped, 0.3, 2)},
             [op = op](const Ins& x) { return Outs{op(x[0])}; });
  add_case("relu", "strided", {in({5, 4})}, [](const Ins& x) { return Outs{relu(x[0].t())}; });
  add_case("gelu", "exact", {in({3, 70}, -3, 3)}, [](const Ins& x) { return Outs{gelu(x[0])}; });
  add_case("gelu", "tanh, transposed", {viewed({70, 3}, transposed, -3, 3)},
           [](const Ins& x) { return Outs{gelu(x[0], "tanh")}; });

  // Reductions.
  add_case("sum", "all, dims, keepdim",
           {viewed({4, 3, 5},
                   [](const Tensor& t) {
                     return t.permute({2, 0, 1});
                   })},
           [](const Ins& x) {
             return Outs{sum(x[0]), sum(x[0], {0, 2}), sum(x[0], {1}, true), sum(x[0], {-1})};
           });
  // Column sums in place: several row chunks and 256-column blocks (with tails), a channels-last
  // tensor over N, H, W, and a wide one (one chunk, many blocks).
  add_case("sum", "leading dims, in place", {in({300, 600}), in({3, 5000})}, [](const Ins& x) {
    return Outs{sum(x[0], {0}), sum(x[1], {0}, true)};
  });
  add_case("sum", "channels-last over N, H, W", {viewed({4, 20, 30, 30}, channels_last)},
           [](const Ins& x) {
             return Outs{sum(x[0], {0, 2, 3}), sum(x[0], {0, 2, 3}, true)};
           });
  add_case("mean", "dims", {in({4, 3, 5})}, [](const Ins& x) {
    return Outs{mean(x[0], {1}), mean(x[0])};
  });
  add_case("var", "corrections", {in({4, 6})}, [](const Ins& x) {
    return Outs{var(x[0], {1}), var(x[0], {0}, 0, true)};
  });
  add_case("max", "along a dim, and over all", {in({4, 7})}, [](const Ins& x) {
    MaxResult m = max(x[0], 1), k = max(x[0].t(), 1, true);
    return Outs{m.values, m.indices, k.values, k.indices, max(x[0])};
  });
  add_case("argmax", "dims", {constant({5, 6})}, [](const Ins& x) {
    return Outs{argmax(x[0], 0), argmax(x[0], 1, true)};
  });
  add_case("sum_to", "broadcast dims", {in({2, 3, 4})}, [](const Ins& x) {
    return Outs{sum_to(x[0], {3, 1}), sum_to(x[0], {1, 4})};
  });

  // Joining, splitting, indexing.
  add_case("cat", "mixed strides", {in({2, 3}), viewed({3, 4}, transposed)}, [](const Ins& x) {
    return Outs{cat({x[0], x[1]}, 0), cat({x[0].t(), x[1].t()}, 1)};
  });
  // ViT's class token (the run's dtype) before bf16 patch tokens: promoted, gradients back.
  add_case("cat", "mixed dtypes", {in({2, 1, 6}), in({2, 5, 6})}, [](const Ins& x) {
    return Outs{cat({x[0], x[1].to(DType::bf16)}, 1)};
  });
  add_case("split", "sizes", {in({7, 3})}, [](const Ins& x) {
    Outs a = split(x[0], 3, 0), b = split(x[0], Shape{1, 2}, 1);
    a.insert(a.end(), b.begin(), b.end());
    return a;
  });
  add_case("chunk", "uneven", {in({3, 7})}, [](const Ins& x) { return chunk(x[0], 3, 1); });
  add_case("index_select", "repeated indices", {in({5, 4}), indices({7}, 5)}, [](const Ins& x) {
    return Outs{index_select(x[0], 0, x[1]), index_select(x[0].t(), 1, x[1])};
  });
  add_case("gather", "along dim 1", {in({4, 5}), indices({4, 3}, 5)},
           [](const Ins& x) { return Outs{gather(x[0], 1, x[1])}; });

  // Linear algebra.
  add_case("matmul", "2-d", {in({5, 7}), in({7, 3})},
           [](const Ins& x) { return Outs{matmul(x[0], x[1])}; });
  add_case("matmul", "transposed operands",
           {viewed({7, 5}, transposed), viewed({3, 7}, transposed)},
           [](const Ins& x) { return Outs{matmul(x[0], x[1])}; });
  add_case("matmul", "batched broadcast", {in({2, 1, 4, 6}), in({3, 6, 5})},
           [](const Ins& x) { return Outs{matmul(x[0], x[1])}; });
  add_case("matmul", "1-d operands", {in({6}), in({6, 4}), in({4})}, [](const Ins& x) {
    return Outs{matmul(x[0], x[1]), matmul(x[1], x[2]), matmul(x[0], x[0])};
  });
  add_case("linear", "3-d input, bias", {in({2, 3, 8}), in({5, 8}), in({5})}, [](const Ins& x) {
    return Outs{linear(x[0], x[1], x[2]), linear(x[0].select(0, 1), x[1])};
  });

  struct Conv {
    std::string variant;
    Shape x, w;
    Conv2dOptions opt;
    bool bias, nhwc;
  };
  for (const Conv& cv : std::vector<Conv>{
           {"3x3, bias", {2, 3, 7, 6}, {4, 3, 3, 3}, {{1, 1}, {1, 1}, {1, 1}, 1}, true, false},
           {"stride 2, dilation 2",
            {1, 2, 9, 9},
            {3, 2, 3, 3},
            {{2, 2}, {2, 1}, {2, 2}, 1},
            false,
            false},
           {"groups 2, channels-last",
            {2, 4, 6, 5},
            {6, 2, 3, 3},
            {{1, 1}, {1, 1}, {1, 1}, 2},
            true,
            true},
           {"depthwise 7x7, channels-last",
            {2, 6, 8, 8},
            {6, 1, 7, 7},
            {{1, 1}, {3, 3}, {1, 1}, 6},
            true,
            true},
           // 40 channels: two full 16-channel blocks of the direct weight-gradient loop and a tail;
           // 48x48 maps: images split into several groups of partial sums.
           {"depthwise 7x7, channels-last, 40 channels, 48x48",
            {3, 40, 48, 48},
            {40, 1, 7, 7},
            {{1, 1}, {3, 3}, {1, 1}, 40},
            true,
            true},
           // The direct weight-gradient loop's rows: outputs whose taps all land inside the row
           // run without bounds checks, the others with them; stride 2 moves that boundary, and a
           // 2x2 map (ConvNeXt-F's third stage at 32 px) has no such output at all.
           {"depthwise 7x7 stride 2, channels-last, 16 channels, 11x9",
            {2, 16, 11, 9},
            {16, 1, 7, 7},
            {{2, 2}, {3, 3}, {1, 1}, 16},
            true,
            true},
           {"depthwise 7x7 on a 2x2 map, channels-last, 32 channels",
            {2, 32, 2, 2},
            {32, 1, 7, 7},
            {{1, 1}, {3, 3}, {1, 1}, 32},
            true,
            true},
           // CUDA's register-blocked kernels (stride 1, 3x3/5x5/7x7, channels divisible by 4):
           // a padding below K/2 (the data gradient pads K - 1 - p), rows of 13 and 5 outputs
           // (runs of 4 with a remainder).
           {"depthwise 5x5 padding 1, channels-last, 12 channels",
            {2, 12, 9, 15},
            {12, 1, 5, 5},
            {{1, 1}, {1, 1}, {1, 1}, 12},
            true,
            true},
           {"depthwise 3x3, channels-last, 8 channels, no bias",
            {3, 8, 5, 5},
            {8, 1, 3, 3},
            {{1, 1}, {1, 1}, {1, 1}, 8},
            false,
            true},
           {"depthwise 3x3 stride 2 dilation 2, channels-last, 32 channels",
            {2, 32, 9, 8},
            {32, 1, 3, 3},
            {{2, 2}, {1, 2}, {2, 2}, 32},
            false,
            true},
           {"depthwise 7x7 on a 1x1 map (NCHW and NHWC alike)",
            {3, 6, 1, 1},
            {6, 1, 7, 7},
            {{1, 1}, {3, 3}, {1, 1}, 6},
            true,
            false},
           {"patchify 4x4 stride 4",
            {2, 3, 8, 8},
            {5, 3, 4, 4},
            {{4, 4}, {0, 0}, {1, 1}, 1},
            true,
            false},
           // The last row and two last columns fall outside every patch (zero gradient there).
           {"patchify 2x2 stride 2, channels-last, uncovered edges",
            {2, 4, 7, 10},
            {6, 4, 2, 2},
            {{2, 2}, {0, 0}, {1, 1}, 1},
            true,
            true}}) {
    std::vector<Input> ins{cv.nhwc ? viewed(cv.x, channels_last) : in(cv.x), in(cv.w, -0.5, 0.5)};
    if (cv.bias) ins.push_back(in({cv.w[0]}));
    add_case("conv2d", cv.variant, ins, [cv](const Ins& x) {
      return Outs{conv2d(x[0], x[1], cv.bias ? x[2] : Tensor(), cv.opt)};
    });
  }

  // Normalization, softmax, losses.
  add_case("layer_norm", "affine", {in({3, 4, 10}, -2, 2), in({10}), in({10})}, [](const Ins& x) {
    return Outs{layer_norm(x[0], {10}, x[1], x[2]), layer_norm(x[0], {4, 10})};
  });
  // 48 columns (ConvNeXt-F's first stage) over 1,000 rows: CUDA sums dw and db in vectors of
  // columns and several chunks of rows.
  add_case("layer_norm", "48 columns, 1000 rows", {in({1000, 48}, -2, 2), in({48}), in({48})},
           [](const Ins& x) { return Outs{layer_norm(x[0], {48}, x[1], x[2])}; });
  // The widths of CUDA's row kernels' other shapes (layer_norm.cu, norm_rows.h): ViT-T's 192
  // (2 vectors on each of 32 lanes), ConvNeXt-F's 384 (3) and ViT-B's 768 (6); and rows one
  // element past an aligned address (the warp-per-row kernels).
  add_case("layer_norm", "192, 384 and 768 columns",
           {in({40, 192}, -2, 2), in({192}), in({192}), in({12, 384}, -2, 2), in({384}), in({384}),
            in({5, 768}, -2, 2), in({768}), in({768})},
           [](const Ins& x) {
             return Outs{layer_norm(x[0], {192}, x[1], x[2]), layer_norm(x[3], {384}, x[4], x[5]),
                         layer_norm(x[6], {768}, x[7], x[8])};
           });
  add_case("layer_norm", "unaligned rows",
           {viewed(
                {97},
                [](const Tensor& t) {
                  return t.slice(0, 1, 97).reshape({2, 48});
                },
                -2, 2),
            in({48}), in({48})},
           [](const Ins& x) { return Outs{layer_norm(x[0], {48}, x[1], x[2])}; });
  add_case("layer_norm_to", "bf16 from f32, 48 and 192 columns",
           {in({300, 48}, -2, 2), in({48}), in({48}), in({20, 192}, -2, 2), in({192}), in({192})},
           [](const Ins& x) {
             const DType out = x[0].dtype() == DType::f32 ? DType::bf16 : x[0].dtype();
             return Outs{layer_norm_to(x[0], {48}, x[1], x[2], 1e-6, out),
                         layer_norm_to(x[3], {192}, x[4], x[5], 1e-6, out)};
           });
  // Rounded to bf16 from an f32 input (autocast's cast before a linear layer, fused; the
  // gradient arrives in bf16); x's own dtype from the others.
  add_case("layer_norm_to", "bf16 from f32", {in({3, 4, 10}, -2, 2), in({10}), in({10})},
           [](const Ins& x) {
             const DType out = x[0].dtype() == DType::f32 ? DType::bf16 : x[0].dtype();
             return Outs{layer_norm_to(x[0], {10}, x[1], x[2], 1e-6, out)};
           });
  add_case("layer_norm", "channels-last view", {viewed({2, 6, 3, 3}, channels_last)},
           [](const Ins& x) {
             return Outs{layer_norm(x[0].permute({0, 2, 3, 1}), {6})};
           });
  add_case("softmax", "last and middle dims", {in({3, 5, 4}, -3, 3)}, [](const Ins& x) {
    return Outs{softmax(x[0], -1), softmax(x[0], 1)};
  });
  auto tokens_strided = [](const Tensor& t) {
    return t.transpose(1, 2).contiguous().transpose(1, 2);
  };
  add_case("attention", "2 heads of 6, 19 tokens, strided",
           {viewed({2, 19, 36}, tokens_strided, -2, 2)},
           [](const Ins& x) { return Outs{attention(x[0], 2, 0.4)}; });
  // Head dims 64 and 32 take CUDA's fused bf16 kernels (flash.cu): 197 tokens are three full
  // tiles of 64 and a partial one, 70 tokens one full and one of 6.
  add_case("attention", "3 heads of 64, 197 tokens (ViT-T at 224 px)", {in({2, 197, 576}, -2, 2)},
           [](const Ins& x) { return Outs{attention(x[0], 3, 0.125)}; });
  add_case("attention", "2 heads of 32, 70 tokens", {in({3, 70, 192}, -2, 2)},
           [](const Ins& x) { return Outs{attention(x[0], 2, 0.17677669529663687)}; });
  add_case("log_softmax", "last and first dims", {viewed({5, 3}, transposed, -3, 3)},
           [](const Ins& x) {
             return Outs{log_softmax(x[0], 1), log_softmax(x[0], 0)};
           });
  add_case("cross_entropy", "class indices, smoothing", {in({6, 5}, -3, 3), indices({6}, 5)},
           [](const Ins& x) {
             return Outs{cross_entropy(x[0], x[1]), cross_entropy(x[0], x[1], 0.1)};
           });
  add_case("cross_entropy", "soft targets", {in({4, 7}, -3, 3), in({4, 7}, 0, 1)},
           [](const Ins& x) {
             Tensor q = x[1] / sum(x[1], {1}, true);
             return Outs{cross_entropy(x[0], q, 0.2)};
           });
  // Targets on the host with logits on the device, as the trainer passes the loader's.
  add_case("cross_entropy", "targets on the host",
           {in({6, 5}, -3, 3), indices({6}, 5), in({6, 5}, 0, 1)}, [](const Ins& x) {
             Tensor q = x[2] / sum(x[2], {1}, true);
             return Outs{cross_entropy(x[0], x[1].cpu(), 0.1), cross_entropy(x[0], q.cpu())};
           });
  add_case("dropout", "training", {in({8, 16})}, [](const Ins& x) {
    Generator g(7);
    return Outs{dropout(x[0], 0.3, true, g), dropout(x[0], 0.3, false, g)};
  });
  return c;
}

double tolerance(DType dt) {
  switch (dt) {
    case DType::bf16:
      return 1.0 / 64;
    case DType::f64:
      return 1e-12;
    default:
      return 2e-5;
  }
}

// |a - b| <= tol * (max|b| + |b|), exactly equal for non-floating tensors.
void check_close(const Tensor& a, const Tensor& b, double tol, const std::string& what) {
  INFO(what << ": " << a.str() << " on " << a.device().str() << " vs " << b.str() << " on "
            << b.device().str());
  CHECK(a.shape() == b.shape());
  CHECK(a.dtype() == b.dtype());
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return;
  std::vector<double> x = a.to_vector(), y = b.to_vector();
  if (!is_floating(a.dtype())) {
    CHECK(x == y);
    return;
  }
  double scale = 0, worst = 0, at = 0;
  for (double v : y) scale = std::max(scale, std::fabs(v));
  int64_t worst_i = -1;
  for (size_t i = 0; i < x.size(); ++i) {
    double excess = std::fabs(x[i] - y[i]) - tol * (scale + std::fabs(y[i]));
    if (std::isnan(x[i]) != std::isnan(y[i])) excess = INFINITY;
    if (excess > worst) worst = excess, worst_i = int64_t(i), at = x[i] - y[i];
  }
  INFO("worst element " << worst_i << " off by " << at << " (scale " << scale << ")");
  CHECK(worst <= 0);
}

struct Run {
  Outs outputs;
  Outs grads;  // one per input (undefined where none)
};

Run run(const Case& cs, DType dt, Device dev) {
  Ins leaves, args;
  uint64_t seed = 100;
  for (const Input& i : cs.inputs) {
    Tensor master = rand_f64(i.shape, seed++, i.lo, i.hi);
    Tensor leaf;
    if (i.integral) {
      leaf = master.to(DType::i64).to(dev);
    } else {
      leaf = master.to(dt).to(dev);
      if (i.grad) leaf.requires_grad_();
    }
    leaves.push_back(leaf);
    args.push_back(i.view ? i.view(leaf) : leaf);
  }
  Run r;
  r.outputs = cs.f(args);
  Tensor loss;
  uint64_t rseed = 900;
  for (const Tensor& y : r.outputs) {
    if (!y.requires_grad()) continue;
    Tensor w = rand_f64(y.shape(), rseed++, 0.5, 1.5).to(y.dtype()).to(dev);
    Tensor term = sum(y * w).to(DType::f64);
    loss = loss.defined() ? loss + term : term;
  }
  if (loss.defined()) loss.backward();
  for (const Tensor& l : leaves) r.grads.push_back(l.requires_grad() ? l.grad() : Tensor());
  return r;
}

// One case in one dtype on `dev` and `ref_dev`: outputs and gradients compared.
void compare_case(const Case& cs, DType dt, Device dev, Device ref_dev) {
  const Device cpu = cpu_device();
  INFO(cs.op << " (" << cs.variant << "), " << dtype_name(dt));
  // An error in one case (a kernel a backend lacks, a failed launch) is reported with the case
  // and the comparison goes on with the next, so one run shows every failing op.
  try {
    Run a = run(cs, dt, dev), b = run(cs, dt, ref_dev);
    CHECK(a.outputs.size() == b.outputs.size());
    for (size_t k = 0; k < std::min(a.outputs.size(), b.outputs.size()); ++k) {
      CHECK(a.outputs[k].device() == dev);
      check_close(a.outputs[k].to(cpu), b.outputs[k].to(cpu), tolerance(dt),
                  "output " + std::to_string(k));
    }
    CHECK(a.grads.size() == b.grads.size());
    for (size_t k = 0; k < std::min(a.grads.size(), b.grads.size()); ++k) {
      CHECK(a.grads[k].defined() == b.grads[k].defined());
      if (!a.grads[k].defined() || !b.grads[k].defined()) continue;
      check_close(a.grads[k].to(cpu), b.grads[k].to(cpu), tolerance(dt),
                  "gradient of input " + std::to_string(k));
    }
  } catch (const std::exception& e) {
    FAIL_CHECK("error: " << e.what());
  }
}

void compare_backends(Device dev, Device ref_dev) {
  for (DType dt : {DType::f32, DType::bf16, DType::f64})
    for (const Case& cs : cases()) compare_case(cs, dt, dev, ref_dev);
}

// The four random fills on the CPU and on `other` from the same generator state, compared with
// tol(dtype) (0: bit for bit).
void compare_random_fills(Device other, int64_t n, std::initializer_list<DType> dtypes,
                          const std::function<double(DType)>& tol) {
  for (DType dt : dtypes) {
    INFO(dtype_name(dt));
    for (int kind = 0; kind < 4; ++kind) {
      Tensor a = empty({n}, dt), b = empty({n}, dt, other);
      Generator ga(11), gb(11);
      if (kind == 0) uniform_(a, -2, 3, ga), uniform_(b, -2, 3, gb);
      if (kind == 1) normal_(a, 1, 2, ga), normal_(b, 1, 2, gb);
      if (kind == 2) trunc_normal_(a, 0, 1, -2, 2, ga), trunc_normal_(b, 0, 1, -2, 2, gb);
      if (kind == 3) a = bernoulli({n}, 0.3, dt, ga), b = bernoulli({n}, 0.3, dt, gb, other);
      check_close(b.cpu(), a, tol(dt), "random fill " + std::to_string(kind));
    }
  }
}

// fill_ through a transposed view, add_ with a broadcast operand, mul_ on a stepped view.
void compare_in_place(Device other) {
  for (DType dt : {DType::f32, DType::bf16}) {
    INFO(dtype_name(dt));
    Tensor x = rand_f64({6, 5}, 3).to(dt), y = x.to(other);
    x.t().fill_(0.5), y.t().fill_(0.5);
    check_close(y.cpu(), x, 0, "fill_");
    Tensor s = rand_f64({5}, 4).to(dt);
    x.add_(s, -2.0), y.add_(s.to(other), -2.0);
    x.slice(0, 0, 6, 2).mul_(3.0), y.slice(0, 0, 6, 2).mul_(3.0);
    check_close(y.cpu(), x, tolerance(dt), "add_ and mul_");
  }
}

// Exact gelu and its gradient in f32 and bf16 on the CPU and on `other`: core/kernel_math.h's
// steps on the GPU and in the CPU's AVX2 and AVX-512 builds, so the same bits (the x86-64 plain
// build, which has no FMA, rounds products and sums separately: then within f32 rounding).
void compare_gelu_bits(Device other) {
#if defined(__FP_FAST_FMAF)
  const bool exact = true;
#else
  const bool exact = cpu::active_isa() != cpu::Isa::plain;
#endif
  std::vector<double> xs = rand_f64({4096}, 11, -9, 9).to_vector();
  for (double e : {0.0, -0.0, 4.0, -5.656854, 14.5, -14.5, 1e-40, -3e38})  // clamps, denormal
    xs.push_back(e);
  const int64_t n = int64_t(xs.size());
  for (DType dt : {DType::f32, DType::bf16}) {
    INFO(dtype_name(dt) << (exact ? ", bit for bit" : ", within f32 rounding"));
    const double tol = exact ? 0.0 : 2e-6;
    Tensor x = from_vector(xs, {n}, dt), g = rand_f64({n}, 12, -2, 2).to(dt);
    Tensor xo = x.to(other), go = g.to(other);
    check_close(gelu(xo).cpu(), gelu(x), tol, "gelu");
    check_close(backend(other).gelu_backward(go, xo, false).cpu(),
                backend(x.device()).gelu_backward(g, x, false), tol, "gelu backward");
  }
}

// Three AdamW and three SGD (Nesterov) steps on the CPU and on `other` from the same state; the
// parameters and moments compared with `tol` (0: bit for bit), and sum_squares.
void compare_optimizer_steps(Device other, int64_t n, double tol) {
  for (bool adamw : {true, false}) {
    INFO((adamw ? "adamw" : "sgd"));
    OptimStep st;
    st.lr = 0.01;
    st.weight_decay = 0.05;
    st.momentum = 0.9;
    st.nesterov = !adamw;
    Tensor p = rand_f64({n}, 5).to(DType::f32), g = rand_f64({n}, 6).to(DType::f32);
    Tensor m = rand_f64({n}, 7, -0.1, 0.1).to(DType::f32),
           v = rand_f64({n}, 8, 0, 0.01).to(DType::f32);
    Tensor po = p.to(other), go = g.to(other), mo = m.to(other), vo = v.to(other);
    for (int64_t k = 1; k <= 3; ++k) {
      st.step = k;
      if (adamw)
        backend(p.device()).adamw_step(p, g, m, v, st),
            backend(other).adamw_step(po, go, mo, vo, st);
      else
        backend(p.device()).sgd_step(p, g, m, st), backend(other).sgd_step(po, go, mo, st);
    }
    check_close(po.cpu(), p, tol, "parameters");
    check_close(mo.cpu(), m, tol, "first moment / momentum");
    if (adamw) check_close(vo.cpu(), v, tol, "second moment");
    CHECK(backend(other).sum_squares(go) ==
          Approx(backend(g.device()).sum_squares(g)).epsilon(1e-12));
    // Gradient clipping's device-side pieces: sums of squares added into a 0-dim f64 total (twice:
    // it adds), and a factor read on the device (1 leaves the tensor as it is).
    Tensor total = zeros({}, DType::f64, g.device()), total_o = zeros({}, DType::f64, other);
    for (int k = 0; k < 2; ++k)
      backend(g.device()).add_sum_squares(g, total), backend(other).add_sum_squares(go, total_o);
    CHECK(total.item() == 2 * backend(g.device()).sum_squares(g));
    CHECK(total_o.item() == Approx(total.item()).epsilon(1e-12));
    for (double f : {0.75, 1.0}) {
      backend(g.device()).scale_by(g, full({}, f, DType::f64, g.device()));
      backend(other).scale_by(go, full({}, f, DType::f64, other));
    }
    check_close(go.cpu(), g, 0.0, "scale_by");  // one rounding of x * 0.75 on every device
    CHECK(g.to_vector() == (rand_f64({n}, 6).to(DType::f32) * 0.75).to_vector());
  }
}

// Three multi-tensor AdamW steps (Backend::adamw_steps) on `other` against adamw_step per tensor
// on the CPU: parameters of several sizes (one empty, one past a GPU block's 4,096 elements) in
// two weight-decay groups; compared with `tol` (0: bit for bit).
void compare_multi_adamw(Device other, double tol) {
  const std::vector<int64_t> sizes{5000, 0, 4097, 1, 300};
  std::vector<AdamWParam> cpu_params, other_params;
  for (size_t i = 0; i < sizes.size(); ++i) {
    const int64_t n = sizes[i];
    const uint64_t seed = 20 + 4 * i;
    AdamWParam a{rand_f64({n}, seed).to(DType::f32), rand_f64({n}, seed + 1).to(DType::f32),
                 rand_f64({n}, seed + 2, -0.1, 0.1).to(DType::f32),
                 rand_f64({n}, seed + 3, 0, 0.01).to(DType::f32), i % 2 ? 0.0 : 0.05};
    cpu_params.push_back(a);
    other_params.push_back(
        {a.p.to(other), a.g.to(other), a.m.to(other), a.v.to(other), a.weight_decay});
  }
  OptimStep st;
  st.lr = 0.01;
  for (int64_t k = 1; k <= 3; ++k) {
    st.step = k;
    for (const AdamWParam& a : cpu_params) {
      OptimStep one = st;
      one.weight_decay = a.weight_decay;
      backend(cpu_device()).adamw_step(a.p, a.g, a.m, a.v, one);
    }
    backend(other).adamw_steps(other_params, st);
  }
  for (size_t i = 0; i < sizes.size(); ++i) {
    INFO("parameter " << i << " of " << sizes[i] << " elements");
    check_close(other_params[i].p.cpu(), cpu_params[i].p, tol, "parameters");
    check_close(other_params[i].m.cpu(), cpu_params[i].m, tol, "first moment");
    check_close(other_params[i].v.cpu(), cpu_params[i].v, tol, "second moment");
  }
}

// Gradient clipping over several tensors at once (add_sums_of_squares, scale_all_by) on `other`
// against one tensor at a time on the CPU: sizes past a GPU chunk, an empty one, and for the
// scaling a bf16 and a transposed one (taken one at a time there). The total within 1e-12
// (grouped differently), the scaled tensors bit for bit.
void compare_multi_clip(Device other) {
  std::vector<Tensor> xs, xs_o;
  for (int64_t n : {5000, 0, 17000, 3}) {
    xs.push_back(rand_f64({n}, 40 + uint64_t(n)).to(DType::f32));
    xs_o.push_back(xs.back().to(other));
  }
  Tensor total = zeros({}, DType::f64), total_o = zeros({}, DType::f64, other);
  for (const Tensor& x : xs) backend(cpu_device()).add_sum_squares(x, total);
  backend(other).add_sums_of_squares(xs_o, total_o);
  CHECK(total_o.item() == Approx(total.item()).epsilon(1e-12));
  std::vector<Tensor> ds = xs, ds_o = xs_o;
  ds.push_back(rand_f64({100}, 50).to(DType::bf16));
  ds.push_back(rand_f64({6, 7}, 51).to(DType::f32).t());
  for (size_t k = xs.size(); k < ds.size(); ++k) ds_o.push_back(ds[k].to(other));
  for (double f : {0.75, 1.0}) {
    for (const Tensor& d : ds) backend(cpu_device()).scale_by(d, full({}, f, DType::f64));
    backend(other).scale_all_by(ds_o, full({}, f, DType::f64, other));
  }
  for (size_t k = 0; k < ds.size(); ++k) {
    INFO("tensor " << k);
    check_close(ds_o[k].cpu(), ds[k], 0.0, "scale_all_by");
  }
}

}  // namespace

TEST_CASE("backend ops: cpu matches reference, forward and backward", "[backend]") {
  compare_backends(cpu_device(), Device{DeviceType::reference, 0});
}

TEST_CASE("backend ops: cuda matches cpu, forward and backward", "[cuda]") {
  if (!scion::test::cuda_or_skip("backend ops cuda vs cpu")) return;
  compare_backends(parse_device("cuda"), cpu_device());
}

// CUDA's fused bf16 attention backward keeps dS for a chunk of images at a time
// (attention_ds_images); the cases above fit in one chunk.
TEST_CASE("backend ops: cuda matches cpu: fused attention backward over several dS chunks",
          "[cuda]") {
  if (!scion::test::cuda_or_skip("fused attention over dS chunks")) return;
  // ViT-T's attention (3 heads of 64, 197 tokens, as the case above): 236,400 bytes of dS per
  // image, so 150 images take two chunks (141 and 9).
  REQUIRE(cuda::attention_ds_images(150, 3, 197, 200) == 141);
  const Case cs{"attention",
                "150 images of 197 tokens, two dS chunks",
                {in({150, 197, 576}, -2, 2)},
                [](const Ins& x) { return Outs{attention(x[0], 3, 0.125)}; }};
  compare_case(cs, DType::bf16, parse_device("cuda"), cpu_device());
}

// Both sets of fused attention kernels (cuda::FlashKernels) against the CPU in bf16, forward and
// backward: the mma.sync ones (the default, which the cases above run) and the WMMA ones of runs 7
// and 8, one test each (verify.sh falls back to the WMMA set when only the mma.sync one fails).
// Query and key counts below, at and across the 64-row tiles, head dims 64 and 32.
namespace {
void compare_flash_kernels(cuda::FlashKernels k) {
  struct Shape {
    int64_t images, tokens, heads, dim;
  };
  const Shape shapes[] = {
      {2, 197, 3, 64}, {3, 65, 3, 64}, {4, 10, 4, 32}, {3, 70, 2, 32}, {1, 128, 2, 64}};
  const cuda::FlashKernels before = cuda::flash_kernels();
  cuda::set_flash_kernels(k);
  for (const Shape& s : shapes) {
    INFO(s.images << " images of " << s.tokens << " tokens, " << s.heads << " heads of " << s.dim);
    const double scale = 1.0 / std::sqrt(double(s.dim));
    const Case cs{"attention",
                  "fused kernels",
                  {in({s.images, s.tokens, 3 * s.heads * s.dim}, -2, 2)},
                  [s, scale](const Ins& x) { return Outs{attention(x[0], s.heads, scale)}; }};
    compare_case(cs, DType::bf16, parse_device("cuda"), cpu_device());
  }
  cuda::set_flash_kernels(before);
}
}  // namespace

TEST_CASE("backend ops: cuda matches cpu: fused attention on mma.sync kernels", "[cuda]") {
  if (!scion::test::cuda_or_skip("fused attention on mma.sync kernels")) return;
  compare_flash_kernels(cuda::FlashKernels::mma);
}

TEST_CASE("backend ops: cuda matches cpu: fused attention on WMMA kernels", "[cuda]") {
  if (!scion::test::cuda_or_skip("fused attention on WMMA kernels")) return;
  compare_flash_kernels(cuda::FlashKernels::wmma);
}

// Both sets of kernels cuda::NormKernels selects against the CPU, f32 and bf16: the row kernels
// (the default, which the cases above run) and run 8's (a warp per layer norm row; mul and add
// kernels for addcmul), one test each (verify.sh falls back to run 8's when only the row ones
// fail). Every layer_norm, layer_norm_to and addcmul case above.
namespace {
void compare_norm_kernels(cuda::NormKernels k) {
  const cuda::NormKernels before = cuda::norm_kernels();
  cuda::set_norm_kernels(k);
  for (DType dt : {DType::f32, DType::bf16})
    for (const Case& cs : cases())
      if (cs.op.rfind("layer_norm", 0) == 0 || cs.op == "addcmul")
        compare_case(cs, dt, parse_device("cuda"), cpu_device());
  cuda::set_norm_kernels(before);
}
}  // namespace

TEST_CASE("backend ops: cuda matches cpu: row kernels for layer norm and layer scale", "[cuda]") {
  if (!scion::test::cuda_or_skip("row kernels")) return;
  compare_norm_kernels(cuda::NormKernels::rows);
}

TEST_CASE("backend ops: cuda matches cpu: run 8 kernels for layer norm and layer scale", "[cuda]") {
  if (!scion::test::cuda_or_skip("run 8 layer norm and layer scale kernels")) return;
  compare_norm_kernels(cuda::NormKernels::warp);
}

TEST_CASE(
    "backend ops: cuda fills, random fills, optimizer steps and exact gelu give the CPU's bits",
    "[cuda]") {
  if (!scion::test::cuda_or_skip("cuda fills and optimizer steps")) return;
  const Device gpu = parse_device("cuda");
  // Philox and the distributions are core/kernel_math.h on both devices; f64 transcendental
  // functions may differ by an ulp between glibc and CUDA, which f32/bf16 rounding absorbs.
  compare_random_fills(gpu, 1 << 12, {DType::f32, DType::bf16, DType::f64},
                       [](DType dt) { return dt == DType::f64 ? 1e-15 : 0.0; });
  compare_in_place(gpu);
  compare_optimizer_steps(gpu, 5000, 0.0);  // bit for bit
  compare_multi_adamw(gpu, 0.0);            // one kernel for every parameter, bit for bit
  compare_multi_clip(gpu);
  compare_gelu_bits(gpu);
}

// addcmul's fused path (Backend::layer_scale_rows, recorded as "addcmul") gives add(x, mul(t,
// s))'s bits: the output and t's gradient exactly (each product rounded before the sum, as mul
// then add), x's gradient exactly, s's within f32 summation error (another order). Channels-last
// x and t with a (1, C, 1, 1) scale, the gradient arriving channels-last; f32, f32 with a bf16 t
// (autocast), bf16 and f64.
TEST_CASE("backend ops: addcmul's layer-scale rows give add and mul's numbers", "[backend]") {
  struct Types {
    DType x, t;
  };
  for (const Types& ty : {Types{DType::f32, DType::f32}, Types{DType::f32, DType::bf16},
                          Types{DType::bf16, DType::bf16}, Types{DType::f64, DType::f64}}) {
    INFO("x " << dtype_name(ty.x) << ", t " << dtype_name(ty.t));
    const int64_t c = 24;
    auto nhwc = [&](uint64_t seed, DType dt) {
      return rand_f64({3, 5, 7, c}, seed, -2, 2).to(dt).permute({0, 3, 1, 2}).detach();
    };
    struct Run {
      Tensor y, dx, dt, ds;
      std::string node;
    };
    auto run = [&](bool fused) {
      Tensor x = nhwc(60, ty.x).requires_grad_(), t = nhwc(61, ty.t).requires_grad_();
      Tensor s = rand_f64({1, c, 1, 1}, 62, 0.5, 1.5).to(ty.x).requires_grad_();
      Tensor y = fused ? addcmul(x, t, s) : add(x, mul(t, s));
      const Tensor w = rand_f64({3, 5, 7, c}, 63, -1, 1).to(ty.x);
      sum(y.permute({0, 2, 3, 1}) * w).backward();
      return Run{y.detach(), x.grad(), t.grad(), s.grad(), y.grad_fn()->name()};
    };
    const Run f = run(true), r = run(false);
    CHECK(f.node == std::string("addcmul"));  // the fused path ran
    CHECK(f.y.to_vector() == r.y.to_vector());
    CHECK(f.dx.to_vector() == r.dx.to_vector());
    CHECK(f.dt.dtype() == ty.t);
    CHECK(f.dt.to_vector() == r.dt.to_vector());
    check_close(f.ds, r.ds, ty.x == DType::bf16 ? 1.0 / 128 : 1e-5, "gradient of s");
  }
}

TEST_CASE("backend ops: every op in core/ops.h has a case", "[backend]") {
  std::ifstream f(std::string(SCION_GOLDEN_DIR) + "/../../core/ops.h");
  REQUIRE(f.good());
  std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::regex decl(R"((?:^|\n)(?:Tensor|MaxResult|std::vector<Tensor>) (\w+)\()");
  std::set<std::string> declared, covered;
  for (auto it = std::sregex_iterator(text.begin(), text.end(), decl); it != std::sregex_iterator();
       ++it)
    declared.insert((*it)[1]);
  for (const Case& cs : cases()) covered.insert(cs.op);
  REQUIRE(declared.size() > 40);
  for (const std::string& op : declared) {
    INFO("op " << op << " is declared in core/ops.h");
    CHECK(covered.count(op) == 1);
  }
}

TEST_CASE("backend ops: the remaining kernels (fills, random fills, optimizer steps)",
          "[backend]") {
  const Device ref{DeviceType::reference, 0};
  compare_random_fills(ref, 257, {DType::f32, DType::bf16}, [](DType) { return 1e-7; });
  compare_in_place(ref);
  compare_optimizer_steps(ref, 1000, 1e-6);
  compare_multi_adamw(ref, 1e-6);
  compare_multi_adamw(cpu_device(), 0.0);  // the default: adamw_step per parameter
  compare_multi_clip(ref);
}

TEST_CASE("devices: transfers carry gradients, mixing devices is an error naming both",
          "[backend]") {
  const Device ref{DeviceType::reference, 0};
  Tensor x = rand_f64({3, 4}, 1).requires_grad_();
  Tensor y = (x.to(ref) * 2.0).t();
  CHECK(y.device() == ref);
  CHECK(y.cpu().device() == cpu_device());
  sum(y.cpu() * y.cpu()).backward();
  CHECK(scion::test::compare(x.grad(), x.detach() * 8.0, 1e-12, 0).ok());
  CHECK(x.grad().device() == cpu_device());
  try {
    add(x, x.to(ref));
    FAIL("expected an error");
  } catch (const InputError& e) {
    CHECK(std::string(e.what()) == "add: inputs on different devices (cpu and reference)");
  }
  CHECK_THROWS_WITH(parse_device("tpu"), Catch::Contains("unknown device 'tpu'"));
  CHECK(parse_device("cuda:1") == Device{DeviceType::cuda, 1});
  if (cuda_device_count() == 0)
    CHECK_THROWS_WITH(check_device_available(parse_device("cuda"), "config.yaml: device"),
                      Catch::Contains("config.yaml: device: 'cuda:0' is not available"));
  CHECK_THROWS_WITH(check_device_available(parse_device("cuda:7"), "config.yaml: device"),
                    Catch::Contains("config.yaml: device: 'cuda:7' is not available"));
}
