// Where the elements of a warp-wide tensor-core product live, for the fused attention kernels
// (flash_mma.cu): the register fragments of PTX's mma.sync.m16n8k16 with bf16 operands and f32
// accumulators, and the matrices ldmatrix.m8n8 hands to each lane. Plain constexpr functions (the
// CUDA build calls them from device code through --expt-relaxed-constexpr), so the choices the
// kernels make on top of these maps are unit-tested on any machine (tests/core/test_cuda_host.cpp).
//
// The maps, from the PTX ISA ("Matrix Fragments for mma.m16n8k16 with floating point type" and
// "ldmatrix"), with g = lane / 4 (the lane's group) and t = lane % 4 (its place in the group):
//   A (16 x 16, row-major): 32-bit register r holds the pair (row g + 8 (r % 2), cols
//       k, k + 1) with k = 2 t + 8 (r / 2), the lower column in the low half;
//   B (16 x 8, k x n): register r holds (rows k, k + 1 with k = 2 t + 8 r; column g);
//   C (16 x 8, f32): element i is (row g + 8 (i / 2), column 2 t + i % 2).
//   ldmatrix.x4: lane 8 m + j gives the address of row j of matrix m (16 bytes); register m of
//       lane 4 j + w receives matrix m's elements (j, 2 w) and (j, 2 w + 1), or with .trans its
//       elements (2 w, j) and (2 w + 1, j).
#pragma once

namespace scion::cuda::mma {

struct At {
  int row, col;
};
constexpr bool operator==(At a, At b) {
  return a.row == b.row && a.col == b.col;
}

// Element `half` (0 low, 1 high) of register r of lane's A fragment.
constexpr At a_element(int lane, int r, int half) {
  return {lane / 4 + 8 * (r % 2), 2 * (lane % 4) + 8 * (r / 2) + half};
}
// Element `half` of register r of lane's B fragment, as (k, n).
constexpr At b_element(int lane, int r, int half) {
  return {2 * (lane % 4) + 8 * r + half, lane / 4};
}
// Element i of lane's C (accumulator) fragment.
constexpr At c_element(int lane, int i) {
  return {lane / 4 + 8 * (i / 2), 2 * (lane % 4) + i % 2};
}
// The kernels' choices. Every ldmatrix.x4 reads a 16 x 16 block of a row-major bf16 tile as its
// four 8 x 8 quarters; the order of the quarters decides what the four registers are:
//   rows_first  quarter m at rows 8 (m % 2), columns 8 (m / 2): registers 0-3 are an A fragment
//               (rows of the block = the product's rows), or with .trans the B fragments of two
//               n-tiles when the block is k x n (the block's rows are the product's k);
//   cols_first  quarter m at rows 8 (m / 2), columns 8 (m % 2): registers 0, 1 and 2, 3 are the
//               B fragments of two n-tiles when the block is n x k (rows = the product's n).
enum class Quarters { rows_first, cols_first };
// The block element (row, column) that lane's row address points at.
constexpr At ldmatrix_address(int lane, Quarters q) {
  const int m = lane / 8, j = lane % 8;
  return q == Quarters::rows_first ? At{8 * (m % 2) + j, 8 * (m / 2)}
                                   : At{8 * (m / 2) + j, 8 * (m % 2)};
}
// FlashAttention-2's register reuse: the C fragments of n-tiles 2 s and 2 s + 1 of a 16-row
// product hold exactly the A fragment of its k-step s (16 columns). Register r of that A fragment
// is C tile 2 s + a_from_c_tile(r), elements a_from_c_first(r) (low) and + 1 (high).
constexpr int a_from_c_tile(int r) {
  return r / 2;
}
constexpr int a_from_c_first(int r) {
  return 2 * (r % 2);
}

}  // namespace scion::cuda::mma
