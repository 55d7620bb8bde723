// The CUDA backend's layer norm row kernels (core/cuda/norm_rows.h) run on the host, against the
// CPU backend's layer norm: the same kernel bodies the GPU runs, each thread of a block on a host
// thread, with the warp's shuffle and the block's barrier emulated. So the groups of lanes, the
// masking of short rows and idle groups, the grid-stride loop, the block's column sums and the
// finishing sums are checked on any machine; on a GPU, test_backend_ops' [cuda] cases check the
// same kernels against the CPU.
#include <cmath>
#include <vector>

#include "core/backend.h"
#include "core/cuda/norm_rows.h"
#include "core/cuda/plan.h"
#include "tests/core/emulated_grid.h"
#include "tests/support.h"

using namespace scion;
using namespace scion::cuda;
using scion::test::HostEnv;
using scion::test::near;
using scion::test::rand_f64;

namespace {

// A grid of row-kernel blocks (kThreads each).
template <class Body>
void run_grid(int64_t blocks, int64_t smem_bytes, Body body) {
  scion::test::run_grid(rows::kThreads, blocks, 1, smem_bytes, body);
}

// A tensor of `dt` filled with NaN, so that any element a kernel should write and does not shows.
Tensor nan_tensor(const Shape& shape, DType dt) {
  return full(shape, NAN, dt);
}

template <class T>
T* data(const Tensor& t) {
  return t.defined() ? static_cast<T*>(t.raw_data()) : nullptr;
}

struct Case {
  int64_t rows, d;
  DType x, y;  // y: x's dtype, or bf16 for an f32 x (layer_norm_to)
  bool affine;
};

// The bodies' element types: float for f32, a bf16's 16 bits for bf16.
template <class T, class Y, int K>
void run_case(const Case& c, int64_t blocks) {
  const NormRowsPlan p = plan_norm_rows(c.d);
  const Tensor x = rand_f64({c.rows, c.d}, 11, -2, 2).to(c.x);
  const Tensor dy = rand_f64({c.rows, c.d}, 12, -1, 1).to(c.y);
  const Tensor w = c.affine ? rand_f64({c.d}, 13, 0.5, 1.5).to(c.x) : Tensor();
  const Tensor b = c.affine ? rand_f64({c.d}, 14, -0.5, 0.5).to(c.x) : Tensor();
  const double eps = 1e-6;
  Backend& cpu = backend(cpu_device());
  Tensor y, mean, rstd, dx, dw, db;
  cpu.layer_norm_forward(x, w, b, eps, c.d, c.y, y, mean, rstd);
  cpu.layer_norm_backward(dy, x, w, mean, rstd, c.d, dx, dw, db);

  Tensor y_e = nan_tensor(y.shape(), c.y), mean_e = nan_tensor({c.rows}, DType::f32),
         rstd_e = nan_tensor({c.rows}, DType::f32);
  rows::ForwardArgs<T, T, Y> fa;
  fa.x = data<T>(x), fa.w = data<T>(w), fa.b = data<T>(b), fa.eps = float(eps);
  fa.rows = c.rows, fa.d = c.d, fa.lanes = p.lanes, fa.y = data<Y>(y_e);
  fa.mean = data<float>(mean_e), fa.rstd = data<float>(rstd_e);
  run_grid(blocks, 0, [&](HostEnv& env) { rows::forward_rows<K>(env, fa); });
  const double tol = c.x == DType::bf16 || c.y == DType::bf16 ? 1.0 / 64 : 2e-5;
  CHECK(near(y_e, y, tol, "y"));
  CHECK(near(mean_e, mean, 2e-5, "mean"));
  CHECK(near(rstd_e, rstd, 2e-5, "rstd"));

  // The backward from the CPU's statistics (the same inputs the GPU's backward gets).
  Tensor dx_e = nan_tensor(x.shape(), c.x), dw_e = nan_tensor({c.d}, c.x),
         db_e = nan_tensor({c.d}, c.x), partials = nan_tensor({blocks * 2 * c.d}, DType::f32);
  rows::BackwardArgs<T, T, Y> ba;
  ba.dy = data<Y>(dy), ba.x = data<T>(x), ba.w = data<T>(w);
  ba.mean = data<float>(mean), ba.rstd = data<float>(rstd);
  ba.rows = c.rows, ba.d = c.d, ba.lanes = p.lanes, ba.dx = data<T>(dx_e);
  ba.partials = data<float>(partials);
  run_grid(blocks, rows::backward_smem_bytes(c.d, p.lanes),
           [&](HostEnv& env) { rows::backward_rows<K>(env, ba); });
  // The finish over a grid of two blocks: warps take columns in turn.
  run_grid(2, 0, [&](HostEnv& env) {
    T* const out[2] = {data<T>(dw_e), data<T>(db_e)};
    rows::finish_columns(env, data<float>(partials), blocks, c.d, 2, out);
  });
  CHECK(near(dx_e, dx, c.x == DType::bf16 ? 1.0 / 64 : 2e-5, "dx"));
  if (dw.defined()) {  // the CPU gives dw and db only with a weight and bias
    CHECK(near(dw_e, dw, c.x == DType::bf16 ? 1.0 / 64 : 2e-5, "dw"));
    CHECK(near(db_e, db, c.x == DType::bf16 ? 1.0 / 64 : 2e-5, "db"));
  }
}

template <class T, class Y>
void check_case(const Case& c, int64_t blocks) {
  const NormRowsPlan p = plan_norm_rows(c.d);
  INFO(c.rows << " rows of " << c.d << " (" << p.lanes << " lanes, " << p.slots << " slots), "
              << dtype_name(c.x) << " to " << dtype_name(c.y) << (c.affine ? ", affine" : "")
              << ", " << blocks << " blocks");
  REQUIRE(p.lanes > 0);
  if (p.slots == 2) run_case<T, Y, 2>(c, blocks);
  if (p.slots == 4) run_case<T, Y, 4>(c, blocks);
  if (p.slots == 8) run_case<T, Y, 8>(c, blocks);
}

void check_all_types(int64_t rows, int64_t d, int64_t blocks) {
  check_case<float, float>({rows, d, DType::f32, DType::f32, true}, blocks);
  check_case<float, uint16_t>({rows, d, DType::f32, DType::bf16, true}, blocks);
  check_case<uint16_t, uint16_t>({rows, d, DType::bf16, DType::bf16, true}, blocks);
}

}  // namespace

TEST_CASE("cuda layer norm: the row kernels on an emulated block match the CPU", "[cuda-host]") {
  // ConvNeXt-F's 48 channels (12 vectors on groups of 8 lanes) over more rows than the grid's
  // groups: several turns of the grid-stride loop, idle groups in the last, two blocks' partials.
  check_all_types(1000, 48, 2);
  // 10 vectors on 8 lanes (6 lanes with one), a grid of one block.
  check_all_types(37, 40, 1);
  // ViT-T's 192 (32 lanes, 2 slots), ConvNeXt-F's 384 (3 of 4 slots), ViT-B's 768 (6 of 8) and
  // 1,024 (8 of 8); fewer rows than one block's groups.
  check_all_types(50, 192, 2);
  check_all_types(20, 384, 2);
  check_all_types(9, 768, 1);
  check_all_types(5, 1024, 1);
  // A row per lane (4 elements) and two lanes per row, more rows than the grid's threads.
  check_all_types(600, 4, 2);
  check_all_types(300, 8, 1);
  // No weight and bias.
  check_case<float, float>({100, 48, DType::f32, DType::f32, false}, 1);
}

TEST_CASE("cuda layer norm: the finishing column sums on an emulated grid", "[cuda-host]") {
  // 70 blocks' partials (each lane adds three) of 37 columns, over a grid of 2 blocks (16 warps,
  // so warps take a second and third column).
  const int64_t blocks = 70, d = 37;
  const Tensor partials = rand_f64({blocks * 2 * d}, 21, -1, 1).to(DType::f32);
  const std::vector<double> p = partials.to_vector();
  Tensor dw = nan_tensor({d}, DType::f32), db = nan_tensor({d}, DType::f32);
  run_grid(2, 0, [&](HostEnv& env) {
    float* const out[2] = {data<float>(dw), data<float>(db)};
    rows::finish_columns(env, data<float>(partials), blocks, d, 2, out);
  });
  std::vector<double> want_w(d), want_b(d);
  for (int64_t b = 0; b < blocks; ++b)
    for (int64_t j = 0; j < d; ++j) {
      want_w[size_t(j)] += p[size_t(b * 2 * d + j)];
      want_b[size_t(j)] += p[size_t((b * 2 + 1) * d + j)];
    }
  CHECK(near(dw, from_vector(want_w, {d}, DType::f32), 1e-6, "dw"));
  CHECK(near(db, from_vector(want_b, {d}, DType::f32), 1e-6, "db"));
}

namespace {

// The layer-scale row bodies against the CPU backend's layer_scale_rows: out and dt bit for bit
// (each product rounded before the sum, as mul then add), ds within f32 summation error.
template <class T, class H, int K>
void run_scale(int64_t rows, int64_t d, DType xt, DType tt, int64_t blocks, bool want_ds) {
  const NormRowsPlan p = plan_norm_rows(d);
  const Tensor x = rand_f64({rows, d}, 31, -2, 2).to(xt), t = rand_f64({rows, d}, 32, -2, 2).to(tt);
  const Tensor s = rand_f64({d}, 33, 0.5, 1.5).to(xt), g = rand_f64({rows, d}, 34, -1, 1).to(xt);
  Backend& cpu = backend(cpu_device());
  Tensor out = empty({rows, d}, xt), dt = empty({rows, d}, tt), ds = empty({d}, xt);
  cpu.layer_scale_rows(x, t, s, out);
  cpu.layer_scale_rows_backward(g, t, s, dt, ds);

  Tensor out_e = nan_tensor({rows, d}, xt);
  rows::ScaleArgs<T, H> fa;
  fa.x = data<T>(x), fa.t = data<H>(t), fa.s = data<T>(s), fa.out = data<T>(out_e);
  fa.rows = rows, fa.d = d, fa.lanes = p.lanes;
  run_grid(blocks, 0, [&](HostEnv& env) { rows::layer_scale_rows<K>(env, fa); });
  CHECK(out_e.to_vector() == out.to_vector());

  Tensor dt_e = nan_tensor({rows, d}, tt), ds_e = nan_tensor({d}, xt),
         partials = nan_tensor({blocks * d}, DType::f32);
  rows::ScaleBackwardArgs<T, H> ba;
  ba.g = data<T>(g), ba.t = want_ds ? data<H>(t) : nullptr, ba.s = data<T>(s);
  ba.dt = data<H>(dt_e), ba.partials = want_ds ? data<float>(partials) : nullptr;
  ba.rows = rows, ba.d = d, ba.lanes = p.lanes;
  run_grid(blocks, rows::backward_smem_bytes(d, p.lanes),
           [&](HostEnv& env) { rows::layer_scale_rows_backward<K>(env, ba); });
  CHECK(dt_e.to_vector() == dt.to_vector());
  if (!want_ds) return;
  run_grid(1, 0, [&](HostEnv& env) {
    T* const out2[2] = {data<T>(ds_e), nullptr};
    rows::finish_columns(env, data<float>(partials), blocks, d, 1, out2);
  });
  CHECK(near(ds_e, ds, xt == DType::bf16 ? 1.0 / 128 : 2e-5, "ds"));
}

template <class T, class H>
void check_scale(int64_t rows, int64_t d, DType xt, DType tt, int64_t blocks, bool want_ds = true) {
  const NormRowsPlan p = plan_norm_rows(d);
  INFO(rows << " rows of " << d << " (" << p.lanes << " lanes, " << p.slots << " slots), x "
            << dtype_name(xt) << ", t " << dtype_name(tt) << ", " << blocks << " blocks");
  REQUIRE(p.lanes > 0);
  if (p.slots == 2) run_scale<T, H, 2>(rows, d, xt, tt, blocks, want_ds);
  if (p.slots == 4) run_scale<T, H, 4>(rows, d, xt, tt, blocks, want_ds);
  if (p.slots == 8) run_scale<T, H, 8>(rows, d, xt, tt, blocks, want_ds);
}

}  // namespace

TEST_CASE("cuda layer scale: the row kernels on an emulated block match the CPU", "[cuda-host]") {
  // ConvNeXt-F's 48 and 384 channels over more rows than the grid's groups; 40 (6 of 8 lanes with
  // one vector); f32 with an f32 or a bf16 branch (autocast), bf16; without ds (a frozen scale).
  for (int64_t d : {48, 40, 384}) {
    check_scale<float, float>(700, d, DType::f32, DType::f32, 2);
    check_scale<float, uint16_t>(700, d, DType::f32, DType::bf16, 2);
    check_scale<uint16_t, uint16_t>(300, d, DType::bf16, DType::bf16, 1);
  }
  check_scale<float, uint16_t>(50, 48, DType::f32, DType::bf16, 1, false);
}
