// The CUDA backend's register-blocked depthwise kernels (core/cuda/depthwise_rows.h) run on the
// host, against the CPU backend's convolution: the same bodies the GPU runs, each GPU thread one
// call (they share no memory and use no warp operation), on the launch geometry depthwise.cu
// plans. So the runs along a row and their short last run, the padding, the flipped filter and
// padding of the data gradient, the weight gradient's filter row per block, its chunks of row runs
// split across thread rows, the idle channel threads, and the finishing sums are checked on any
// machine; on a GPU, test_backend_ops' [cuda] cases check the same kernels against the CPU.
#include <cmath>
#include <vector>

#include "core/backend.h"
#include "core/cuda/depthwise_rows.h"
#include "core/cuda/plan.h"
#include "tests/support.h"

using namespace scion;
using namespace scion::cuda;
using scion::test::near;
using scion::test::rand_f64;

namespace {

struct Case {
  int n, c, h, w, k, ph, pw;
  bool bias;
};

Tensor nhwc(const Tensor& t) {  // NCHW values, NHWC memory
  return t.permute({0, 2, 3, 1}).contiguous().permute({0, 3, 1, 2});
}
Tensor nhwc_nan(int n, int c, int h, int w, DType dt) {  // every unwritten element shows
  return full({n, h, w, c}, NAN, dt).permute({0, 3, 1, 2});
}

template <class T>
T* data(const Tensor& t) {
  return t.defined() ? static_cast<T*>(t.raw_data()) : nullptr;
}

// The transposed (and for the data gradient flipped) f32 filter, element by element as
// dw_transpose_filter writes it.
template <class T>
std::vector<float> transposed(const Tensor& w, int c, int k, bool flip) {
  std::vector<float> wt(size_t(c) * k * k);
  for (int e = 0; e < int(wt.size()); ++e)
    wt[size_t(e)] = dw::transposed_tap(data<T>(w), c, k, flip, e);
  return wt;
}

// Every unit of the forward kernel (any order: units write disjoint outputs).
template <class T, int K>
void run_rows(const dw::Geo& g, const T* x, const std::vector<float>& wt, const T* b, T* y) {
  for (int64_t e = 0; e < dw::rows_units(g); ++e) dw::rows_unit<T, K>(g, x, wt.data(), b, y, e);
}

// The weight gradient's two passes on depthwise.cu's grid for `multiprocessors`.
template <class T, int K>
void run_weights(const dw::Geo& g, const T* x, const T* dy, int multiprocessors, T* dw_out) {
  const int columns = g.c / dw::kWgVec;
  const DepthwiseSplit split =
      depthwise_weights_split(columns, dw::weight_units(g), multiprocessors);
  REQUIRE(split.chunk_len >= dw::kWgThreadsY);
  REQUIRE(split.chunks * split.chunk_len >= dw::weight_units(g));
  const int64_t rows = split.chunks * dw::kWgThreadsY, n_out = int64_t(g.c) * K * K;
  std::vector<float> part(size_t(rows * n_out), NAN);
  const int blocks_x = (columns + dw::kWgThreadsX - 1) / dw::kWgThreadsX;
  for (int i = 0; i < K; ++i)                               // block.z
    for (int64_t chunk = 0; chunk < split.chunks; ++chunk)  // block.y
      for (int bx = 0; bx < blocks_x; ++bx)
        for (int ty = 0; ty < dw::kWgThreadsY; ++ty)
          for (int tx = 0; tx < dw::kWgThreadsX; ++tx)
            dw::weights_rows<T, K>(g, x, dy, split.chunk_len, part.data(),
                                   bx * dw::kWgThreadsX + tx, chunk, ty, i);
  for (int64_t o = 0; o < n_out; ++o) {
    float sums[dw::kFinishRows];
    for (int t = 0; t < dw::kFinishRows; ++t)
      sums[t] = dw::finish_partial(part.data(), rows, n_out, o, t);
    dw_out[o] = packed::from_float<T>(dw::finish_total(sums, 1));
  }
}

template <class T, int K>
void run_case(const Case& cs, DType dt, int multiprocessors) {
  const ConvShape shape{1, 1, cs.ph, cs.pw, 1, 1, cs.c, true};
  const int oh = cs.h + 2 * cs.ph - K + 1, ow = cs.w + 2 * cs.pw - K + 1;
  const Tensor x = nhwc(rand_f64({cs.n, cs.c, cs.h, cs.w}, 21, -2, 2).to(dt));
  const Tensor wgt = rand_f64({cs.c, 1, K, K}, 22, -0.5, 0.5).to(dt);
  const Tensor b = cs.bias ? rand_f64({cs.c}, 23, -0.5, 0.5).to(dt) : Tensor();
  const Tensor dy = nhwc(rand_f64({cs.n, cs.c, oh, ow}, 24, -1, 1).to(dt));
  Backend& cpu = backend(cpu_device());
  Tensor y = nhwc_nan(cs.n, cs.c, oh, ow, dt), dx = nhwc_nan(cs.n, cs.c, cs.h, cs.w, dt),
         dw_ref = full({cs.c, 1, K, K}, NAN, dt);
  cpu.conv2d_forward(x, wgt, b, y, shape);
  cpu.conv2d_backward_data(dy, wgt, dx, shape);
  cpu.conv2d_backward_weights(x, dy, dw_ref, shape);

  const dw::Geo g{cs.n, cs.c, cs.h, cs.w, oh, ow, K, K, 1, 1, cs.ph, cs.pw, 1, 1};
  REQUIRE(dw::rows_filter(g) == K);
  const double tol = dt == DType::bf16 ? 1.0 / 64 : 2e-5;

  Tensor y_e = nhwc_nan(cs.n, cs.c, oh, ow, dt);
  run_rows<T, K>(g, data<T>(x), transposed<T>(wgt, cs.c, K, false), data<T>(b), data<T>(y_e));
  CHECK(near(y_e, y, tol, "y"));

  // The data gradient: the forward unit on dy with the flipped filter, on depthwise.cu's geometry.
  const dw::Geo t = dw::data_gradient_geo(g);
  CHECK(t.oh == cs.h);
  CHECK(t.ow == cs.w);
  Tensor dx_e = nhwc_nan(cs.n, cs.c, cs.h, cs.w, dt);
  run_rows<T, K>(t, data<T>(dy), transposed<T>(wgt, cs.c, K, true), nullptr, data<T>(dx_e));
  CHECK(near(dx_e, dx, tol, "dx"));

  Tensor dw_e = full({cs.c, 1, K, K}, NAN, dt);
  run_weights<T, K>(g, data<T>(x), data<T>(dy), multiprocessors, data<T>(dw_e));
  CHECK(near(dw_e, dw_ref, tol, "dw"));
}

template <class T>
void check_case(const Case& cs, DType dt, int multiprocessors) {
  INFO("n " << cs.n << ", c " << cs.c << ", " << cs.h << "x" << cs.w << ", " << cs.k << "x" << cs.k
            << " filter, padding " << cs.ph << "/" << cs.pw << (cs.bias ? ", bias" : "") << ", "
            << dtype_name(dt) << ", " << multiprocessors << " multiprocessors");
  if (cs.k == 3) run_case<T, 3>(cs, dt, multiprocessors);
  if (cs.k == 5) run_case<T, 5>(cs, dt, multiprocessors);
  if (cs.k == 7) run_case<T, 7>(cs, dt, multiprocessors);
}

}  // namespace

TEST_CASE("cuda depthwise: the register-blocked kernels on emulated threads match the CPU",
          "[cuda-host]") {
  const std::vector<Case> cases = {
      {2, 8, 9, 9, 7, 3, 3, true},     // ConvNeXt's 7x7, a short last run along each row
      {1, 12, 5, 6, 3, 1, 1, false},   // 6 channel pairs: most weight-gradient threads idle
      {2, 4, 7, 10, 5, 2, 2, true},    // non-square input
      {1, 8, 6, 8, 3, 0, 0, true},     // no padding (the output is smaller)
      {1, 4, 8, 7, 5, 1, 2, false},    // padding differs between the dimensions
      {4, 8, 16, 16, 7, 3, 3, false},  // 256 row runs: several chunks on a large GPU
      {2, 8, 2, 2, 7, 3, 3, true},     // a 2x2 map: every tap past the edge but the middle ones
  };
  for (const Case& cs : cases)
    for (int sms : {132, 1}) {
      check_case<float>(cs, DType::f32, sms);
      check_case<uint16_t>(cs, DType::bf16, sms);
    }
}

TEST_CASE("cuda depthwise: which convolutions the register-blocked kernels take", "[cuda-host]") {
  const dw::Geo convnext{2, 96, 56, 56, 56, 56, 7, 7, 1, 1, 3, 3, 1, 1};
  CHECK(dw::rows_filter(convnext) == 7);
  dw::Geo g = convnext;
  g.c = 94;  // not a multiple of 4 channels
  CHECK(dw::rows_filter(g) == 0);
  g = convnext, g.sh = g.sw = 2;
  CHECK(dw::rows_filter(g) == 0);
  g = convnext, g.dh = g.dw = 2;
  CHECK(dw::rows_filter(g) == 0);
  g = convnext, g.kw = 5;
  CHECK(dw::rows_filter(g) == 0);
  g = convnext, g.kh = g.kw = 9;
  CHECK(dw::rows_filter(g) == 0);
  g = convnext, g.kh = g.kw = 3;
  CHECK(dw::rows_filter(g) == 3);

  // The split: chunks of at least 8 units cover every unit, more of them for a larger GPU.
  const int64_t units = dw::weight_units(convnext);
  CHECK(units == 2 * 56 * 14);
  const DepthwiseSplit big = depthwise_weights_split(48, units, 132),
                       small = depthwise_weights_split(48, units, 1);
  CHECK(big.chunks > small.chunks);
  for (const DepthwiseSplit& s : {big, small}) {
    CHECK(s.chunk_len >= 8);
    CHECK(s.chunks * s.chunk_len >= units);
    CHECK((s.chunks - 1) * s.chunk_len < units);
  }
  CHECK(depthwise_weights_split(48, 3, 132).chunk_len == 8);
  CHECK(depthwise_weights_split(48, 3, 132).chunks == 1);
}
