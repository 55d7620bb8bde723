// The CUDA backend's column sums with vector loads (core/cuda/column_sums.h: bias gradients, a
// channels-last tensor summed over N, H, W) run on the host, on an emulated grid as reduce.cu
// launches it (the plan, the vector width and the split of plan.h), against the CPU's sum in f64:
// so the column vectors, the phases of a block and their fixed-order sums in shared memory, the
// idle threads, the chunks and the finishing pass are checked on any machine; on a GPU,
// test_backend_ops' [cuda] cases check the same kernels against the CPU.
#include <algorithm>
#include <cmath>
#include <functional>
#include <vector>

#include "core/backend.h"
#include "core/cuda/column_sums.h"
#include "core/cuda/plan.h"
#include "core/ops.h"
#include "tests/core/emulated_grid.h"
#include "tests/support.h"

using namespace scion;
using namespace scion::cuda;
using scion::test::HostEnv;
using scion::test::near;
using scion::test::rand_f64;

namespace {

// The element offset of logical index i of operand 0 of a plan (what the device's offsets<1>
// gives).
int64_t plan_offset(const StridedPlan& p, int64_t i) {
  int64_t off = 0;
  for (int d = p.ndim - 1; d >= 0; --d) {
    off += (i % p.sizes[size_t(d)]) * p.strides[0][size_t(d)];
    i /= p.sizes[size_t(d)];
  }
  return off;
}

// x summed over `dims` by the two passes on the grid reduce.cu launches for `multiprocessors`;
// the sums as f64 (their accumulation type's values), in the kept dimensions' row-major order.
template <class T, int W>
Tensor emulated_sum(const Tensor& x, const ReducePlan& rp, int multiprocessors) {
  using A = acc<T>;
  const int64_t n_out = rp.kept.numel, n_red = rp.red.numel;
  const ColumnVecSplit cs = column_vec_split(n_out, n_red, W, multiprocessors);
  INFO(cs.per_row << " vectors per block row, " << cs.rows << " rows, " << cs.column_blocks
                  << " column blocks, " << cs.chunks << " chunks of " << cs.chunk_len);
  // A guard of n_out more after the partial sums: no thread writes past them.
  std::vector<A> part(size_t((cs.chunks + 1) * n_out), A(NAN));
  const T* data = static_cast<const T*>(x.raw_data());
  const auto row_offset = [&rp](int64_t r) { return plan_offset(rp.red, r); };
  scion::test::run_grid(cols::kThreads, cs.column_blocks, cs.chunks,
                        int64_t(cols::kThreads * W * sizeof(A)), [&](HostEnv& env) {
                          A* tile = reinterpret_cast<A*>(env.smem());
                          cols::sum_columns_vec<W>(env, cs, n_red, row_offset, data, tile,
                                                   part.data());
                        });
  const bool guard_intact =
      std::all_of(part.begin() + cs.chunks * n_out, part.end(), [](A v) { return std::isnan(v); });
  CHECK(guard_intact);
  std::vector<double> out(static_cast<size_t>(n_out));
  for (int64_t o = 0; o < n_out; ++o)
    out[size_t(o)] = double(cols::chunk_total(part.data(), cs.chunks, n_out, o));
  return from_vector(out, {n_out}, DType::f64);
}

struct Case {
  const char* what;
  std::function<Tensor(DType)> make;  // the input in a dtype, in its layout
  Shape dims;
  int widths[3];  // the vector width reduce.cu picks for f32, bf16, f64
};

void check_case(const Case& c, DType dt, int width, int multiprocessors) {
  INFO(c.what << ", " << dtype_name(dt) << ", width " << width << ", " << multiprocessors
              << " multiprocessors");
  const Tensor x = c.make(dt);
  std::vector<bool> red(size_t(x.dim()), false);
  for (int64_t d : c.dims) red[size_t(d)] = true;
  const ReducePlan rp = plan_reduce(Operand{x.shape(), x.strides()}, red);
  REQUIRE(rp.columns());
  REQUIRE(column_width(rp, x.raw_data(), dtype_size(dt)) == width);
  Tensor got;
  if (dt == DType::f32 && width == 4) got = emulated_sum<float, 4>(x, rp, multiprocessors);
  if (dt == DType::f32 && width == 2) got = emulated_sum<float, 2>(x, rp, multiprocessors);
  if (dt == DType::bf16 && width == 8) got = emulated_sum<bf16_t, 8>(x, rp, multiprocessors);
  if (dt == DType::bf16 && width == 4) got = emulated_sum<bf16_t, 4>(x, rp, multiprocessors);
  if (dt == DType::bf16 && width == 2) got = emulated_sum<bf16_t, 2>(x, rp, multiprocessors);
  if (dt == DType::f64 && width == 2) got = emulated_sum<double, 2>(x, rp, multiprocessors);
  REQUIRE(got.defined());
  const Tensor want = sum(x.to(DType::f64), c.dims).reshape({rp.kept.numel});
  CHECK(near(got, want, dt == DType::f64 ? 1e-13 : 2e-6, "column sums"));
}

}  // namespace

TEST_CASE("cuda column sums: the vector kernel on an emulated grid matches the CPU",
          "[cuda-host]") {
  // Values of `shape` in dtype dt, then viewed by `view`.
  const auto make = [](Shape shape, uint64_t seed, std::function<Tensor(const Tensor&)> view) {
    return [=](DType dt) { return view(rand_f64(shape, seed, -1, 1).to(dt)); };
  };
  const auto as_is = [](const Tensor& t) { return t; };
  const std::vector<Case> cases = {
      {"ConvNeXt-F's 48 channels, bias gradient", make({1000, 48}, 32, as_is), {0}, {4, 8, 2}},
      {"ViT-T's 192, few rows", make({37, 192}, 33, as_is), {0}, {4, 8, 2}},
      {"2048 columns: several column blocks", make({70, 2048}, 34, as_is), {0}, {4, 8, 2}},
      {"2000 columns: idle column vectors in the last block",
       make({70, 2000}, 36, as_is),
       {0},
       {4, 8, 2}},
      {"channels-last over N, H, W",
       make({3, 7, 9, 20}, 31,
            [](const Tensor& t) {
              return t.permute({0, 3, 1, 2});
            }),
       {0, 2, 3},
       {4, 4, 2}},
      {"8 columns of rows of stride 10",
       make({300, 10}, 35, [](const Tensor& t) { return t.slice(1, 0, 8); }),
       {0},
       {2, 2, 2}},
  };
  for (const Case& c : cases)
    for (int sms : {132, 2}) {
      check_case(c, DType::f32, c.widths[0], sms);
      check_case(c, DType::bf16, c.widths[1], sms);
      check_case(c, DType::f64, c.widths[2], sms);
    }
}
