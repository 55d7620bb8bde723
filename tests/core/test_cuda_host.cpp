// The CUDA backend's host-side logic, tested on every machine (no GPU needed): how operands
// collapse into few strided dimensions, reduction plans, launch configurations, cuBLASLt layouts
// of matrix views, cuDNN descriptor parameters and the pinned pool's size classes (the device
// allocator's bookkeeping: test_block_pool.cpp); and the per-element math the CPU and GPU kernels
// share (core/kernel_math.h) against independent references and the CPU backend, bit for bit.
#include <algorithm>
#include <array>
#include <cstring>

#include "core/backend.h"
#include "core/cuda/mma_layout.h"
#include "core/cuda/plan.h"
#include "core/kernel_math.h"
#include "tests/support.h"

using namespace scion;
using namespace scion::cuda;

TEST_CASE("cuda plans: elementwise operands collapse and broadcast", "[cuda-host]") {
  // Contiguous (2, 3, 4) with a contiguous operand: one flat dimension.
  StridedPlan p = plan_elementwise({2, 3, 4}, {{{2, 3, 4}, {12, 4, 1}}, {{2, 3, 4}, {12, 4, 1}}});
  CHECK(p.ndim == 1);
  CHECK(p.sizes[0] == 24);
  CHECK(p.contiguous());
  // A bias (4) broadcast over (2, 3, 4): the leading dims merge, the operand has stride 0 there.
  p = plan_elementwise({2, 3, 4}, {{{2, 3, 4}, {12, 4, 1}}, {{4}, {1}}});
  REQUIRE(p.ndim == 2);
  CHECK(p.sizes[0] == 6);
  CHECK(p.sizes[1] == 4);
  CHECK(p.strides[0][0] == 4);
  CHECK(p.strides[1][0] == 0);
  CHECK(p.strides[1][1] == 1);
  CHECK_FALSE(p.contiguous());
  // A transposed (3, 2) view of a (2, 3) tensor into a contiguous output: no merge possible.
  p = plan_elementwise({3, 2}, {{{3, 2}, {2, 1}}, {{3, 2}, {1, 3}}});
  REQUIRE(p.ndim == 2);
  CHECK(p.strides[1][0] == 1);
  CHECK(p.strides[1][1] == 3);
  // Size-1 dims vanish; a (1,) operand broadcasts everywhere (stride 0).
  p = plan_elementwise({5, 1, 7}, {{{5, 1, 7}, {7, 7, 1}}, {{1}, {1}}});
  REQUIRE(p.ndim == 1);
  CHECK(p.sizes[0] == 35);
  CHECK(p.strides[1][0] == 0);
  // Every-other-row slice: (4, 6) with strides (12, 1) stays two dimensions.
  p = plan_elementwise({4, 6}, {{{4, 6}, {6, 1}}, {{4, 6}, {12, 1}}});
  CHECK(p.ndim == 2);
  // Channels-last (N, C, H, W) = (2, 8, 4, 4) with NHWC strides, output and input alike: the dims
  // are walked in memory order and collapse to one flat loop.
  const Dims nhwc{128, 1, 32, 8};
  p = plan_elementwise({2, 8, 4, 4}, {{{2, 8, 4, 4}, nhwc}, {{2, 8, 4, 4}, nhwc}});
  CHECK(p.ndim == 1);
  CHECK(p.contiguous());
  // A per-channel bias (8, 1, 1) onto that channels-last output: channels innermost, stride 1.
  p = plan_elementwise({2, 8, 4, 4}, {{{2, 8, 4, 4}, nhwc}, {{8, 1, 1}, {1, 1, 1}}});
  REQUIRE(p.ndim == 2);
  CHECK(p.sizes[1] == 8);
  CHECK(p.strides[0][1] == 1);
  CHECK(p.strides[1][1] == 1);
  CHECK(p.strides[1][0] == 0);
  CHECK(p.fits_int32());
  using Bc = StridedPlan::Broadcast;
  auto bc = [](const StridedPlan& q, int k) {
    return std::pair(q.broadcast_of(k).kind, q.broadcast_of(k).period);
  };
  CHECK(bc(p, 1) == std::pair(Bc::row, int64_t(8)));  // the bias repeats a row of 8
  CHECK(bc(p, 0).first == Bc::none);
  // ConvNeXt's layer scale, x (channels-last) * gamma (8): output, x dense, gamma one row.
  p = plan_elementwise({2, 8, 4, 4},
                       {{{2, 8, 4, 4}, nhwc}, {{2, 8, 4, 4}, nhwc}, {{8, 1, 1}, {1, 1, 1}}});
  CHECK(bc(p, 2) == std::pair(Bc::row, int64_t(8)));
  CHECK(bc(p, 1).first == Bc::none);
  // Drop path's per-sample mask (2, 1, 1) over (2, 5, 6): a value per row of 30.
  p = plan_elementwise({2, 5, 6},
                       {{{2, 5, 6}, {30, 6, 1}}, {{2, 5, 6}, {30, 6, 1}}, {{2, 1, 1}, {1, 1, 1}}});
  CHECK(bc(p, 2) == std::pair(Bc::row_value, int64_t(30)));
  // A 0-dim scalar over a dense tensor: one value.
  p = plan_elementwise({3, 4}, {{{3, 4}, {4, 1}}, {{3, 4}, {4, 1}}, {{}, {}}});
  CHECK(bc(p, 2).first == Bc::scalar);
  CHECK(bc(p, 1).first == Bc::none);
  // Neither: a column broadcast next to a strided dense operand, or two broadcast operands.
  CHECK(bc(plan_elementwise({4, 6}, {{{4, 6}, {6, 1}}, {{4, 6}, {12, 1}}, {{6}, {1}}}), 2).first ==
        Bc::none);
  CHECK(bc(plan_elementwise({4, 6}, {{{4, 6}, {6, 1}}, {{4, 1}, {1, 1}}, {{6}, {1}}}), 2).first ==
        Bc::none);
  // Offsets past 2^31 elements need the 64-bit kernels.
  p = plan_elementwise({3, 2}, {{{3, 2}, {int64_t(1) << 31, 1}}});
  CHECK_FALSE(p.fits_int32());
  // Empty tensors plan zero elements; shapes that do not broadcast and too many dims throw.
  CHECK(plan_elementwise({3, 0}, {{{3, 0}, {0, 1}}}).numel == 0);
  CHECK_THROWS_AS(plan_elementwise({2, 3}, {{{2, 3}, {3, 1}}, {{4}, {1}}}), std::invalid_argument);
  Dims big(9, 2), bigst(9);
  for (int d = 0; d < 9; ++d) bigst[size_t(d)] = int64_t(1) << (2 * (8 - d));  // no merges
  CHECK_THROWS_AS(plan_elementwise(big, {{big, bigst}}), std::invalid_argument);
}

TEST_CASE("cuda plans: reductions split kept and reduced dims", "[cuda-host]") {
  // Sum over the last dim of a contiguous (6, 5): inner-contiguous rows of 5.
  ReducePlan r = plan_reduce({{6, 5}, {5, 1}}, {false, true});
  CHECK(r.kept.numel == 6);
  CHECK(r.red.numel == 5);
  CHECK(r.inner_contiguous());
  CHECK(r.kept.strides[0][0] == 5);
  // Over dims 0 and 2 of (2, 3, 4): kept dim 1 (stride 4), reduced (2, 4) with strides (12, 1).
  r = plan_reduce({{2, 3, 4}, {12, 4, 1}}, {true, false, true});
  CHECK(r.kept.numel == 3);
  REQUIRE(r.red.ndim == 2);
  CHECK(r.red.strides[0][0] == 12);
  CHECK(r.red.strides[0][1] == 1);
  CHECK_FALSE(r.inner_contiguous());
  // A bias gradient: (N, C) summed over N, reduced stride C.
  r = plan_reduce({{100, 8}, {8, 1}}, {true, false});
  CHECK(r.red.strides[0][0] == 8);
  CHECK(r.kept.strides[0][0] == 1);
  CHECK(r.columns());
  CHECK_FALSE(plan_reduce({{6, 5}, {5, 1}}, {false, true}).columns());
  // The column split: blocks of 32 outputs, chunks of the reduced range; every element covered.
  for (auto [n_out, n_red] : {std::pair<int64_t, int64_t>{192, 50432}, {8, 100}, {3000, 7}}) {
    const ColumnSplit c = column_split(n_out, n_red, 132);
    CHECK(c.column_blocks * 32 >= n_out);
    CHECK(c.chunks * c.chunk_len >= n_red);
    CHECK((c.chunks - 1) * c.chunk_len < n_red);
    CHECK(c.chunks <= 1024);
  }
  Around a = around({2, 3, 4, 5}, 2);
  CHECK(a.outer == 6);
  CHECK(a.n == 4);
  CHECK(a.inner == 5);
}

TEST_CASE("cuda plans: column sums with vector loads", "[cuda-host]") {
  alignas(64) static unsigned char buf[64];
  const unsigned char* p = buf;
  // (N, C) summed over N: C columns of stride 1, rows of stride C.
  auto bias = [](int64_t n, int64_t c) { return plan_reduce({{n, c}, {c, 1}}, {true, false}); };
  CHECK(column_width(bias(1000, 192), p, 4) == 4);  // f32: 16 bytes
  CHECK(column_width(bias(1000, 192), p, 2) == 8);  // bf16
  CHECK(column_width(bias(1000, 192), p, 8) == 2);  // f64
  CHECK(column_width(bias(1000, 20), p, 2) == 4);   // 20 columns: vectors of 4
  CHECK(column_width(bias(1000, 6), p, 2) == 2);
  CHECK(column_width(bias(1000, 5), p, 2) == 1);
  CHECK(column_width(bias(1000, 192), p + 8, 4) == 2);  // an address 8 bytes in
  CHECK(column_width(bias(1000, 192), p + 4, 4) == 1);
  CHECK(column_width(bias(1000, 192), p, 1) == 8);  // at most 8 per thread
  // Rows of stride 10 (a view of every other column block): 10 is not a multiple of 4.
  CHECK(column_width(plan_reduce({{1000, 8}, {10, 1}}, {true, false}), p, 4) == 2);
  // A channels-last (N, C, H, W) over N, H, W: the reduced dims collapse to stride C.
  const ReducePlan cl =
      plan_reduce({{4, 20, 30, 30}, {18000, 1, 600, 20}}, {true, false, true, true});
  CHECK(column_width(cl, p, 4) == 4);
  CHECK(column_width(plan_reduce({{6, 8}, {8, 1}}, {false, true}), p, 4) == 1);  // row sums
  // Splits: every column vector and every row covered; 256 threads per block.
  struct Want {
    int64_t n_out, n_red;
    int width;
    int64_t per_row, rows, column_blocks;
  };
  for (const Want& w :
       {Want{192, 50432, 4, 48, 5, 1}, Want{48, 802816, 4, 12, 21, 1},
        Want{1536, 12544, 8, 192, 1, 1}, Want{5000, 3, 8, 256, 1, 3}, Want{8, 100, 8, 1, 256, 1}}) {
    INFO(w.n_out << " columns, " << w.n_red << " rows");
    const ColumnVecSplit c = column_vec_split(w.n_out, w.n_red, w.width, 132);
    CHECK(c.vectors * c.width == w.n_out);
    CHECK(c.per_row == w.per_row);
    CHECK(c.rows == w.rows);
    CHECK(c.per_row * c.rows <= 256);
    CHECK(c.column_blocks == w.column_blocks);
    CHECK(c.column_blocks * c.per_row >= c.vectors);
    CHECK(c.chunks * c.chunk_len >= w.n_red);
    CHECK((c.chunks - 1) * c.chunk_len < w.n_red);
    CHECK(c.chunks <= 1024);
  }
}

TEST_CASE("cuda plans: launch configurations", "[cuda-host]") {
  CHECK(launch_1d(1).blocks == 1);
  CHECK(launch_1d(0).blocks == 1);
  CHECK(launch_1d(257).blocks == 2);
  CHECK(launch_1d(int64_t(1) << 40, 132).blocks == 132 * 32);  // capped: grid-stride loops
  CHECK(launch_1d(1000, 132, 128).threads == 128);
}

TEST_CASE("cuda plans: SCION_CUDA_OP_TIMES=shapes keys", "[cuda-host]") {
  CHECK(op_time_key("matmul", {{"bf16", {256, 197, 192}}, {"bf16", {192, 576}}}) ==
        "matmul bf16[256,197,192] bf16[192,576]");
  CHECK(op_time_key("reduce_sum", {{"f32", {}}}) == "reduce_sum f32[]");
  CHECK(op_time_key("fill", {}) == "fill");
}

TEST_CASE("cuda plans: the fused attention backward's dS chunks", "[cuda-host]") {
  // ViT-T at 224 px: 3 heads, 197 tokens, rows of 200; 236,400 bytes per image.
  CHECK(attention_ds_images(256, 3, 197, 200) == kAttentionDsBytes / 236400);
  CHECK(attention_ds_images(64, 3, 197, 200) == 64);  // all fit: one chunk
  CHECK(attention_ds_images(8, 3, 65, 72) == 8);
  // An image larger than the cap still makes a chunk of one.
  CHECK(attention_ds_images(4, 16, 4096, 4096) == 1);
  CHECK(attention_ds_images(0, 3, 197, 200) == 1);
}

namespace {

// A warp's 32-bit registers of one operand, as element pairs: [lane][register][half].
using WarpRegs = std::array<std::array<std::array<float, 2>, 4>, 32>;

// ldmatrix.x4 (.trans or not) of the 16 x 16 block at `block` (row-major, ld columns), emulated
// from the PTX ISA's rule alone: lane 8 m + j gives the address of row j of matrix m, and
// register m of lane 4 j + w receives that matrix's (j, 2 w), (j, 2 w + 1), or with .trans its
// (2 w, j), (2 w + 1, j). Where each lane points is the kernels' choice under test.
WarpRegs emulate_ldmatrix(const float* block, int ld, mma::Quarters q, bool trans) {
  WarpRegs out{};
  auto element = [&](int m, int row, int col) {  // matrix m's (row, col), through the address
    const mma::At a = mma::ldmatrix_address(8 * m + row, q);
    return block[a.row * ld + a.col + col];
  };
  for (int lane = 0; lane < 32; ++lane)
    for (int m = 0; m < 4; ++m)
      for (int half = 0; half < 2; ++half) {
        const int j = lane / 4, w = lane % 4;
        out[lane][m][half] = trans ? element(m, 2 * w + half, j) : element(m, j, 2 * w + half);
      }
  return out;
}

// mma.m16n8k16 emulated from the documented fragment maps: c (lane, 4 elements) += A B, A from
// registers 0-3 of `a`, B from registers b0, b0 + 1 of `b`. Each operand element must come from
// exactly one lane's register, or the maps are not a layout.
void emulate_mma(std::array<std::array<float, 4>, 32>& c, const WarpRegs& a, const WarpRegs& b,
                 int b0) {
  float A[16][16], B[16][8];
  int seen_a[16][16] = {}, seen_b[16][8] = {};
  for (int lane = 0; lane < 32; ++lane)
    for (int half = 0; half < 2; ++half) {
      for (int r = 0; r < 4; ++r) {
        const mma::At e = mma::a_element(lane, r, half);
        A[e.row][e.col] = a[lane][r][half], ++seen_a[e.row][e.col];
      }
      for (int r = 0; r < 2; ++r) {
        const mma::At e = mma::b_element(lane, r, half);
        B[e.row][e.col] = b[lane][b0 + r][half], ++seen_b[e.row][e.col];
      }
    }
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 16; ++j) REQUIRE(seen_a[i][j] == 1);
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 8; ++j) REQUIRE(seen_b[i][j] == 1);
  for (int lane = 0; lane < 32; ++lane)
    for (int i = 0; i < 4; ++i) {
      const mma::At e = mma::c_element(lane, i);
      for (int k = 0; k < 16; ++k) c[lane][i] += A[e.row][k] * B[k][e.col];
    }
}

}  // namespace

TEST_CASE("cuda plans: tensor-core fragments of the fused attention", "[cuda-host]") {
  // One warp's step of flash_mma.cu on 16 x 16 blocks (small integers: every sum exact):
  // S = Q K^T with Q's A fragment and K's B fragments loaded by ldmatrix (rows_first, and
  // cols_first as K is n x k), then O = S V with S's accumulators reused as the A fragment and
  // V's B fragments loaded by ldmatrix.trans (rows_first; V is k x n).
  float q[16 * 16], k[16 * 16], v[16 * 16];
  uint32_t state = 12345;  // small pseudo-random integers: no block equals another one
  auto draw = [&] { return float((state = state * 1664525u + 1013904223u) >> 28) - 8.0f; };
  for (int i = 0; i < 256; ++i) q[i] = draw(), k[i] = draw(), v[i] = draw();
  const WarpRegs qa = emulate_ldmatrix(q, 16, mma::Quarters::rows_first, false);
  const WarpRegs kb = emulate_ldmatrix(k, 16, mma::Quarters::cols_first, false);
  std::array<std::array<float, 4>, 32> s[2] = {};
  emulate_mma(s[0], qa, kb, 0);  // keys 0-7
  emulate_mma(s[1], qa, kb, 2);  // keys 8-15
  float s_ref[16][16] = {};
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 16; ++j)
      for (int e = 0; e < 16; ++e) s_ref[i][j] += q[i * 16 + e] * k[j * 16 + e];
  for (int lane = 0; lane < 32; ++lane)
    for (int t = 0; t < 2; ++t)
      for (int i = 0; i < 4; ++i) {
        const mma::At e = mma::c_element(lane, i);
        CHECK(s[t][lane][i] == s_ref[e.row][8 * t + e.col]);
      }
  WarpRegs pa{};  // S's accumulators as an A fragment, as the kernels pack them
  for (int lane = 0; lane < 32; ++lane)
    for (int r = 0; r < 4; ++r)
      for (int half = 0; half < 2; ++half)
        pa[lane][r][half] = s[mma::a_from_c_tile(r)][lane][mma::a_from_c_first(r) + half];
  const WarpRegs vb = emulate_ldmatrix(v, 16, mma::Quarters::rows_first, true);
  std::array<std::array<float, 4>, 32> o[2] = {};
  emulate_mma(o[0], pa, vb, 0);  // columns 0-7 of V
  emulate_mma(o[1], pa, vb, 2);  // columns 8-15
  for (int lane = 0; lane < 32; ++lane)
    for (int t = 0; t < 2; ++t)
      for (int i = 0; i < 4; ++i) {
        const mma::At e = mma::c_element(lane, i);
        float ref = 0;
        for (int j = 0; j < 16; ++j) ref += s_ref[e.row][j] * v[j * 16 + 8 * t + e.col];
        CHECK(o[t][lane][i] == ref);
      }
  // Every row address is 16-byte aligned in a tile whose rows are (D + 8) bf16 and whose blocks
  // start at multiples of 8 columns.
  for (int lane = 0; lane < 32; ++lane) {
    CHECK(mma::ldmatrix_address(lane, mma::Quarters::rows_first).col % 8 == 0);
    CHECK(mma::ldmatrix_address(lane, mma::Quarters::cols_first).col % 8 == 0);
  }
}

TEST_CASE("cuda plans: multi-tensor chunks", "[cuda-host]") {
  const std::vector<TensorChunk> c = tensor_chunks({5000, 0, 4096, 1}, 4096);
  REQUIRE(c.size() == 4);  // 5000 in two, none for the empty one, 4096 in one, 1 in one
  CHECK((c[0].tensor == 0 && c[0].start == 0));
  CHECK((c[1].tensor == 0 && c[1].start == 4096));
  CHECK((c[2].tensor == 2 && c[2].start == 0));
  CHECK((c[3].tensor == 3 && c[3].start == 0));
  CHECK(tensor_chunks({}, 4096).empty());
}

TEST_CASE("cuda plans: layer norm rows in registers", "[cuda-host]") {
  struct Want {
    int64_t d;
    int lanes, slots;
  };
  // ConvNeXt-F's 48, 96, 192 and 384 channels, ViT-T's 192, ViT-B's 768; 40 leaves 6 of a group's
  // 8 lanes with one vector, 4 is a row per lane.
  for (const Want& w :
       {Want{48, 8, 2}, Want{96, 16, 2}, Want{192, 32, 2}, Want{384, 32, 4}, Want{768, 32, 8},
        Want{1024, 32, 8}, Want{40, 8, 2}, Want{4, 1, 2}, Want{8, 2, 2}, Want{260, 32, 4}}) {
    INFO("d = " << w.d);
    const NormRowsPlan p = plan_norm_rows(w.d);
    CHECK(p.lanes == w.lanes);
    CHECK(p.slots == w.slots);
    // Every vector of the row has a lane and slot; at least half of the group's first slots hold
    // one.
    CHECK(int64_t(p.lanes) * p.slots * 4 >= w.d);
    CHECK(int64_t(p.lanes) * 4 <= w.d);
  }
  for (int64_t d : {0, 6, 10, 1028, 4096}) CHECK(plan_norm_rows(d).lanes == 0);
  // A block holds 256 / lanes rows at a time; the grid stops at `resident` blocks per
  // multiprocessor.
  CHECK(norm_rows_blocks(1000, 8, 132, 4) == 32);  // 32 rows a block
  CHECK(norm_rows_blocks(802816, 8, 132, 4) == 528);
  CHECK(norm_rows_blocks(1, 32, 132, 2) == 1);
  CHECK(norm_rows_blocks(0, 32, 132, 2) == 1);
  CHECK(norm_rows_blocks(100, 32, 132, 0) == 13);  // an occupancy of 0 counts as 1
}

TEST_CASE("cuda plans: vector width of contiguous elementwise maps", "[cuda-host]") {
  alignas(64) static unsigned char buf[256];
  const unsigned char* p = buf;
  // One 16-byte access of the widest operand: 4 f32, 8 bf16, 2 f64 per step.
  CHECK(vector_width(1000, {{p, 4}, {p + 64, 4}}) == 4);
  CHECK(vector_width(1000, {{p, 2}, {p + 32, 2}, {p + 48, 2}}) == 8);
  CHECK(vector_width(1000, {{p, 2}, {p + 64, 4}}) == 4);  // bf16 <- f32: 8 + 16 bytes
  CHECK(vector_width(1000, {{p, 8}}) == 2);
  CHECK(vector_width(1000, {{p, 16}}) == 1);
  // Every operand aligned to its share: a bf16 operand beside f32 ones needs 8 bytes, not 16.
  CHECK(vector_width(1000, {{p + 8, 2}, {p + 64, 4}}) == 4);
  CHECK(vector_width(1000, {{p + 4, 2}, {p + 64, 4}}) == 1);
  CHECK(vector_width(1000, {{p, 4}, {p + 4, 4}}) == 1);  // a view one element in
  CHECK(vector_width(1000, {{p + 2, 2}}) == 1);
  // Fewer elements than one vector: one at a time.
  CHECK(vector_width(7, {{p, 2}}) == 1);
  CHECK(vector_width(8, {{p, 2}}) == 8);
  CHECK(vector_width(0, {{p, 4}}) == 1);
}

TEST_CASE("cuda plans: cuBLASLt layouts of matrix views", "[cuda-host]") {
  // Row-major (3, 4): ld 4, not transposed.
  MatrixLayout l = matrix_layout(3, 4, 4, 1, 12);
  CHECK(l.ok);
  CHECK_FALSE(l.transposed);
  CHECK(l.ld == 4);
  // A transposed view of a (4, 3) matrix: column-major, ld 3.
  l = matrix_layout(3, 4, 1, 3, 12);
  CHECK(l.ok);
  CHECK(l.transposed);
  CHECK(l.ld == 3);
  // A row-major slice with a wider row pitch keeps it as ld.
  l = matrix_layout(3, 4, 10, 1, 30);
  CHECK(l.ld == 10);
  // Neither stride 1 (a stepped view): needs a contiguous copy.
  CHECK_FALSE(matrix_layout(3, 4, 8, 2, 0).ok);
  // A broadcast row (stride 0 over rows) is not a valid leading dimension either.
  CHECK_FALSE(matrix_layout(3, 4, 0, 1, 0).ok);
  // Single rows/columns accept any stride of their unit dimension.
  CHECK(matrix_layout(1, 4, 0, 1, 0).ok);
  CHECK(matrix_layout(4, 1, 1, 0, 0).ok);

  // C (2x5) = A (2x3) B (3x5), both row-major: cuBLASLt computes C^T = B^T A^T with B first,
  // untransposed (B's row-major memory is B^T column-major), as (5x3) times (3x2).
  GemmPlan g =
      plan_gemm(1, 2, 5, 3, matrix_layout(2, 3, 3, 1, 0), matrix_layout(3, 5, 5, 1, 0), 5, 10);
  CHECK_FALSE(g.lt_trans_first);
  CHECK(g.lt_first_rows == 5);
  CHECK(g.lt_first_cols == 3);
  CHECK_FALSE(g.lt_trans_second);
  CHECK(g.lt_second_rows == 3);
  CHECK(g.lt_second_cols == 2);
  // A linear layer: x (2x3) @ W^T with W (5x3) row-major: B is a transposed view; transposed back.
  g = plan_gemm(1, 2, 5, 3, matrix_layout(2, 3, 3, 1, 0), matrix_layout(3, 5, 1, 3, 0), 5, 10);
  CHECK(g.lt_trans_first);
  CHECK(g.lt_first_rows == 3);
  CHECK(g.lt_first_cols == 5);
}

TEST_CASE("cuda plans: split-K for weight gradients", "[cuda-host]") {
  // ViT-T's MLP weight gradient at 224 px, batch 256: 768 x 192 summed over 50,432 rows.
  SplitK s = plan_split_k(768, 192, 50432, 132);
  CHECK(s.chunks == 22);
  CHECK(s.kc % 64 == 0);
  CHECK(s.chunks * s.kc + s.rest == 50432);
  CHECK(s.rest < s.kc + s.chunks * 64);
  // A forward product (many output tiles) and a short inner dimension are not split.
  CHECK(plan_split_k(50432, 768, 192, 132).chunks == 0);
  CHECK(plan_split_k(192, 192, 2048, 132).chunks == 0);
  // ConvNeXt-F's first MLP weight gradient at 224 px: 192 x 48 over 802,816 positions.
  s = plan_split_k(192, 48, 802816, 132);
  CHECK(s.chunks == 132);
  CHECK(s.chunks * s.kc + s.rest == 802816);
}

// The column-major product cuBLASLt is asked for, computed by hand from the plan, must equal the
// row-major product: checks the operand order and transpose flags end to end on small matrices.
TEST_CASE("cuda plans: the planned column-major GEMM equals the row-major product", "[cuda-host]") {
  const int64_t m = 3, n = 4, k = 5;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      INFO("a transposed " << ta << ", b transposed " << tb);
      std::vector<double> a(size_t(m * k)), b(size_t(k * n));
      for (size_t i = 0; i < a.size(); ++i) a[i] = double(i % 7) - 3;
      for (size_t i = 0; i < b.size(); ++i) b[i] = double(i % 5) - 2;
      // Logical A(i, p) and B(p, j) as stored: transposed storage keeps A^T row-major.
      auto A = [&](int64_t i, int64_t p) {
        return ta ? a[size_t(p * m + i)] : a[size_t(i * k + p)];
      };
      auto B = [&](int64_t p, int64_t j) {
        return tb ? b[size_t(j * k + p)] : b[size_t(p * n + j)];
      };
      const MatrixLayout la = ta ? matrix_layout(m, k, 1, m, 0) : matrix_layout(m, k, k, 1, 0);
      const MatrixLayout lb = tb ? matrix_layout(k, n, 1, k, 0) : matrix_layout(k, n, n, 1, 0);
      const GemmPlan g = plan_gemm(1, m, n, k, la, lb, n, 0);
      // Column-major operands as cuBLASLt reads them: element (r, c) at r + c * ld.
      auto first = [&](int64_t r, int64_t c) {  // op(first) is (n x k)
        return g.lt_trans_first ? b[size_t(c + r * lb.ld)] : b[size_t(r + c * lb.ld)];
      };
      auto second = [&](int64_t r, int64_t c) {  // op(second) is (k x m)
        return g.lt_trans_second ? a[size_t(c + r * la.ld)] : a[size_t(r + c * la.ld)];
      };
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) {
          double want = 0, got = 0;
          for (int64_t p = 0; p < k; ++p) {
            want += A(i, p) * B(p, j);
            got += first(j, p) * second(p, i);  // D^T(j, i) = C(i, j)
          }
          CHECK(got == want);
        }
    }
}

TEST_CASE("cuda plans: cuDNN descriptors of NCHW and NHWC convolutions", "[cuda-host]") {
  ConvDescriptors d =
      conv_descriptors({2, 3, 8, 8}, {16, 3, 4, 4}, {2, 16, 2, 2}, 4, 4, 0, 0, 1, 1, 1, false);
  CHECK(d.x_strides == std::array<int, 4>{192, 64, 8, 1});
  CHECK(d.y_strides == std::array<int, 4>{64, 4, 2, 1});
  CHECK_FALSE(d.w_nhwc);
  CHECK(d.stride == std::array<int, 2>{4, 4});
  // Channels-last depthwise 7x7: NHWC strides (n, c, h, w) = (HWC, 1, WC, C), KRSC filter.
  d = conv_descriptors({2, 48, 8, 8}, {48, 1, 7, 7}, {2, 48, 8, 8}, 1, 1, 3, 3, 1, 1, 48, true);
  CHECK(d.x_strides == std::array<int, 4>{8 * 8 * 48, 1, 8 * 48, 48});
  CHECK(d.w_nhwc);
  CHECK(d.groups == 48);
  CHECK(d.pad == std::array<int, 2>{3, 3});
  CHECK(d.w_dims == std::array<int, 4>{48, 1, 7, 7});
}

TEST_CASE("cuda plans: pinned host pool size classes", "[cuda-host]") {
  CHECK(pinned_round_size(0) == 512);
  CHECK(pinned_round_size(1) == 512);
  CHECK(pinned_round_size(512) == 512);
  CHECK(pinned_round_size(513) == 1024);
  CHECK(pinned_round_size(size_t(1) << 20) == size_t(1) << 20);
  CHECK(pinned_round_size((size_t(1) << 20) + 1) == size_t(2) << 20);
  CHECK(pinned_round_size(size_t(5) << 20) == size_t(6) << 20);
  for (size_t b : {size_t(3), size_t(70000), size_t(3) << 20, size_t(1) << 30}) {
    CHECK(pinned_round_size(b) >= b);
    CHECK(pinned_round_size(pinned_round_size(b)) ==
          pinned_round_size(b));  // classes are fixed points
  }
}

TEST_CASE("shared kernel math: Philox known answers and bf16 rounding", "[cuda-host]") {
  // Random123's known-answer vectors for Philox-4x32-10 (kat_vectors): counter 0, key 0; and
  // counter all ones, key all ones.
  kmath::Words4 w = kmath::philox4x32(0, 0, 0);
  CHECK(w.w[0] == 0x6627e8d5u);
  CHECK(w.w[1] == 0xe169c58du);
  CHECK(w.w[2] == 0xbc57ac4cu);
  CHECK(w.w[3] == 0x9b00dbd8u);
  w = kmath::philox4x32(~uint64_t(0), ~uint64_t(0), ~uint64_t(0));
  CHECK(w.w[0] == 0x408f276du);
  CHECK(w.w[1] == 0x41c83b0eu);
  CHECK(w.w[2] == 0xa20bc7c6u);
  CHECK(w.w[3] == 0x6d5451fdu);
  // bf16: round to nearest, ties to even; NaN stays NaN (quiet); infinities exact.
  auto bits = [](float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
  };
  auto from = [](uint32_t u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  };
  CHECK(kmath::float_to_bf16(1.0f) == 0x3f80);
  CHECK(kmath::float_to_bf16(from(0x3f808000u)) == 0x3f80);  // tie, even below
  CHECK(kmath::float_to_bf16(from(0x3f818000u)) == 0x3f82);  // tie, even above
  CHECK(kmath::float_to_bf16(from(0x3f808001u)) == 0x3f81);  // above the tie
  CHECK(kmath::float_to_bf16(INFINITY) == 0x7f80);
  CHECK((kmath::float_to_bf16(NAN) & 0x7fc0) == 0x7fc0);
  for (float f : {0.1f, -3.75f, 1e-30f, 65504.f})
    CHECK(bits(kmath::bf16_to_float(kmath::float_to_bf16(f))) ==
          (bits(float(BFloat16(f))) & 0xffffffffu));
}

TEST_CASE("shared kernel math: AdamW and SGD updates are the CPU backend's, bit for bit",
          "[cuda-host]") {
  // The CPU backend's per-ISA optimizer kernels against a scalar loop over kernel_math.h (what
  // the CUDA kernels run): equal bits on every ISA build (the [isa] capped reruns cover them).
  const int64_t n = 4099;
  Tensor p = test::rand_f64({n}, 1).to(DType::f32), g = test::rand_f64({n}, 2).to(DType::f32),
         m = test::rand_f64({n}, 3, -0.1, 0.1).to(DType::f32),
         v = test::rand_f64({n}, 4, 0, 0.01).to(DType::f32);
  std::vector<float> ps(p.data<float>(), p.data<float>() + n),
      ms(m.data<float>(), m.data<float>() + n), vs(v.data<float>(), v.data<float>() + n);
  const float* gp = g.data<float>();
  OptimStep st;
  st.lr = 3e-3;
  st.weight_decay = 0.05;
  for (int64_t k = 1; k <= 3; ++k) {
    st.step = k;
    backend(cpu_device()).adamw_step(p, g, m, v, st);
    const kmath::AdamWConsts c =
        kmath::adamw_consts(st.lr, st.weight_decay, st.beta1, st.beta2, st.eps, st.step);
    for (int64_t i = 0; i < n; ++i)
      ps[size_t(i)] = kmath::adamw_update(ps[size_t(i)], gp[i], ms[size_t(i)], vs[size_t(i)], c);
  }
  CHECK(std::memcmp(ps.data(), p.data<float>(), size_t(n) * 4) == 0);
  CHECK(std::memcmp(ms.data(), m.data<float>(), size_t(n) * 4) == 0);
  CHECK(std::memcmp(vs.data(), v.data<float>(), size_t(n) * 4) == 0);
  // SGD with Nesterov momentum.
  st.momentum = 0.9;
  st.nesterov = true;
  for (int64_t k = 1; k <= 2; ++k) {
    st.step = k;
    backend(cpu_device()).sgd_step(p, g, m, st);
    const kmath::SgdConsts c{float(st.weight_decay), float(st.momentum), float(st.lr), k == 1,
                             true};
    for (int64_t i = 0; i < n; ++i)
      ps[size_t(i)] = kmath::sgd_update(ps[size_t(i)], gp[i], ms[size_t(i)], c);
  }
  CHECK(std::memcmp(ps.data(), p.data<float>(), size_t(n) * 4) == 0);
  CHECK(std::memcmp(ms.data(), m.data<float>(), size_t(n) * 4) == 0);
}

TEST_CASE("shared kernel math: random fills are RandomFill's draws", "[cuda-host]") {
  // The CPU backend's fill against kernel_math.h's sample per counter, bit for bit.
  Tensor t = empty({1000}, DType::f32);
  Generator gen(42);
  trunc_normal_(t, 0, 0.02, -0.04, 0.04, gen);
  auto cdf = [](double x) { return 0.5 * (1.0 + std::erf(x / std::sqrt(2.0))); };  // as rng.cpp
  const double cdf_lo = 2.0 * cdf(-2.0) - 1.0, cdf_hi = 2.0 * cdf(2.0) - 1.0;
  for (int64_t i = 0; i < 1000; ++i) {
    const double want = kmath::random_sample(2, 0, 0.02, -0.04, 0.04, cdf_lo, cdf_hi,
                                             kmath::philox4x32(42, uint64_t(i), 0));
    CHECK(t.data<float>()[i] == float(want));
  }
}

TEST_CASE("pinned host pool: blocks by address, reuse only when their copies are done",
          "[cuda-host]") {
  PinnedBlocks pool;
  // Fake addresses: the pool only compares them (backend.cu gives it cudaHostAlloc's).
  alignas(64) static char memory[64 + 3 * 4096];
  char* at = memory + 64;  // memory[0, 64) belongs to no block
  void *a = at, *b = at + 4096, *c = at + 8192;
  pool.add(a, 4096);
  pool.add(b, 4096);
  pool.add(c, 2048);
  CHECK(pool.find(at + 100) == pool.find(a));
  CHECK(pool.find(at + 4095)->base == a);
  CHECK(pool.find(at + 4096)->base == b);
  CHECK(pool.find(at + 8192 + 2047)->base == c);
  CHECK(pool.find(at + 8192 + 2048) == nullptr);  // past c's 2048 bytes
  CHECK(pool.find(memory + 63) == nullptr);       // before a
  // Two devices copied from a; a device copied from b.
  int e1 = 0, e2 = 0, e3 = 0;  // stand-ins for events; `done` below says which have completed
  pool.find(a)->events = {{0, &e1}, {1, &e2}};
  pool.find(b)->events = {{0, &e3}};
  pool.release(a);
  pool.release(b);
  CHECK(pool.find(a) == nullptr);
  CHECK(pool.live_blocks() == 1);
  CHECK(pool.free_blocks() == 2);
  CHECK_THROWS_AS(pool.release(a), std::invalid_argument);  // not live any more
  std::vector<void*> done_events;
  auto done = [&](void* e) {
    return std::find(done_events.begin(), done_events.end(), e) != done_events.end();
  };
  CHECK(pool.reuse(4096, done) == nullptr);  // no copy has run yet
  CHECK(pool.reuse(2048, done) == nullptr);  // no free block of that size
  done_events = {&e1};                       // a's copy to device 0 ran, not the one to device 1
  CHECK(pool.reuse(4096, done) == nullptr);
  done_events = {&e1, &e3};  // b's copy ran: b comes back, a stays free
  PinnedBlocks::Block* got = pool.reuse(4096, done);
  REQUIRE(got != nullptr);
  CHECK(got->base == b);
  CHECK(got->events.size() == 1);  // its event, re-recorded at the next copy
  CHECK(pool.find(at + 5000) == got);
  done_events = {&e1, &e2, &e3};
  got = pool.reuse(4096, done);
  REQUIRE(got != nullptr);
  CHECK(got->base == a);
  CHECK(pool.free_blocks() == 0);
  CHECK(pool.live_blocks() == 3);
}

TEST_CASE("empty_pinned: plain host memory without a CUDA device", "[cuda-host]") {
  Tensor t = empty_pinned({3, 4});
  CHECK(t.device().is_host());
  CHECK(t.shape() == Shape{3, 4});
  t.fill_(2.0);
  CHECK(sum(t).item() == 24.0);
  CHECK(is_pinned(t) == (cuda_device_count() > 0));
  CHECK_FALSE(is_pinned(empty({3})));
}

#ifdef SCION_CUDA
#include <cublasLt.h>
#include <dlfcn.h>

#include <fstream>
#include <string>

#include "core/cuda/cublaslt_loader.h"

namespace {
// Whether this process has a file whose path contains `name` mapped.
bool maps_library(const std::string& name) {
  std::ifstream in("/proc/self/maps");
  std::string line;
  while (std::getline(in, line))
    if (line.find(name) != std::string::npos) return true;
  return false;
}
}  // namespace

TEST_CASE("cuda: cuBLASLt is opened on first use, never mapped by a process that does not call it",
          "[cuda-host]") {
  // What a CPU-only run does: CPU ops and the device count.
  Tensor a = test::rand_f64({8, 8}, 3).to(DType::f32);
  CHECK(matmul(a, a).shape() == Shape{8, 8});
  (void)cuda_device_count();
  // ctest runs each case in a process of its own; a whole scion_tests run on a GPU machine may
  // have called cuBLASLt in an earlier case.
  if (!cuda::cublaslt_opened()) CHECK_FALSE(maps_library("libcublasLt"));
  REQUIRE(cuda::cublaslt_load_error() == "");  // the toolkit this was built with has it
  CHECK(cuda::cublaslt_opened());
  CHECK(maps_library("libcublasLt"));
  // The forwarding functions reach the library: descriptor calls run on the host, no GPU needed,
  // and the library refuses an attribute of the wrong size.
  cublasLtMatrixLayout_t layout = nullptr;
  REQUIRE(cublasLtMatrixLayoutCreate(&layout, CUDA_R_32F, 4, 3, 4) == CUBLAS_STATUS_SUCCESS);
  const int32_t batch = 5;
  CHECK(cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &batch,
                                         sizeof(batch)) == CUBLAS_STATUS_SUCCESS);
  CHECK(cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &batch, 1) ==
        CUBLAS_STATUS_INVALID_VALUE);
  CHECK(cublasLtMatrixLayoutDestroy(layout) == CUBLAS_STATUS_SUCCESS);
  // The search: every attempt's reason when none opens; the first that opens wins.
  std::string error;
  CHECK(cuda::open_first({"/nonexistent/libscion_none.so", "libscion_none_either.so"}, error) ==
        nullptr);
  CHECK(error.find("/nonexistent/libscion_none.so") != std::string::npos);
  CHECK(error.find("libscion_none_either.so") != std::string::npos);
  void* libc = cuda::open_first({"/nonexistent/libscion_none.so", "libc.so.6"}, error);
  CHECK(libc != nullptr);
  CHECK(error == "");
  if (libc) dlclose(libc);
}
#endif
