// Host-side planning for the CUDA kernels, in plain C++ so it is built and unit-tested on every
// machine (tests/core/test_cuda_host.cpp), GPU or not: how strided operands collapse into few
// dimensions, how a reduction splits into kept and reduced dimensions, launch configurations, the
// cuBLASLt layout of a matrix view, the cuDNN descriptors of a convolution, and the pinned host
// pool's size classes and bookkeeping (the device allocator's: block_pool.h). The .cu files turn
// these plans into kernel launches.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace scion::cuda {

using Dims = std::vector<int64_t>;

// Strided loops over up to kMaxDims dimensions after collapsing; the kernels index with these.
constexpr int kMaxDims = 8;
constexpr int kMaxOperands = 4;

// Element offsets of `nargs` operands over one logical index space: dimension d has size
// sizes[d] (innermost last) and operand k moves strides[k][d] elements along it.
struct StridedPlan {
  int ndim = 0;
  int nargs = 0;
  int64_t numel = 1;
  std::array<int64_t, kMaxDims> sizes{};
  std::array<std::array<int64_t, kMaxDims>, kMaxOperands> strides{};
  // Every operand walks memory with stride 1 in one dimension (a flat loop suffices).
  bool contiguous() const;
  // Every index and offset fits in 32 bits (the kernels then divide in 32 bits, much faster).
  bool fits_int32() const;
  // How operand k broadcasts while every other operand is dense (map_broadcast in common.cuh):
  // one row repeated (a per-channel scale over a channels-last or (N, C) tensor: strides (0, 1)),
  // one value per row (drop path's per-sample mask: strides (1, 0)), or one value (a tensor-scalar
  // op); `period` is the row length.
  enum class Broadcast { none, row, row_value, scalar };
  struct BroadcastOf {
    Broadcast kind = Broadcast::none;
    int64_t period = 0;
  };
  BroadcastOf broadcast_of(int k) const;
};

// One operand: its shape and strides in elements. Operands with fewer dimensions or size-1
// dimensions broadcast (NumPy rules) to `shape`.
struct Operand {
  Dims shape, strides;
};

// The plan of an elementwise op over `shape` (operand 0 is the output): dimensions ordered by the
// output's strides so it is walked in memory order, size-1 dimensions dropped, neighbouring
// dimensions merged where every operand's strides allow (stride[d] == stride[d+1] * size[d+1]).
// Throws
// std::invalid_argument when an operand does not broadcast to `shape` or more than kMaxDims
// dimensions remain.
StridedPlan plan_elementwise(const Dims& shape, const std::vector<Operand>& operands);

// A reduction of x (shape, strides) over the dimensions flagged in `reduced`: `kept` indexes the
// output elements in row-major order (operand 0 = the input's offsets), `red` the reduced
// elements (operand 0 = the input's offsets); both collapsed.
struct ReducePlan {
  StridedPlan kept, red;
  // The reduced elements are the innermost, contiguous ones (red is one dimension of stride 1):
  // one block reduces one output with coalesced reads.
  bool inner_contiguous() const;
  // The kept elements are adjacent in memory (innermost kept stride 1) and the reduced ones are
  // not: neighbouring threads take neighbouring outputs and walk the reduced range together
  // (a bias gradient: (N, C) summed over N).
  bool columns() const;
};

// The column reduction's split: blocks of 32 outputs, and the reduced range cut into `chunks` of
// `chunk_len` whose partial sums a second kernel adds in a fixed order.
struct ColumnSplit {
  int64_t column_blocks = 1, chunks = 1, chunk_len = 0;
};
ColumnSplit column_split(int64_t n_out, int64_t n_red, int multiprocessors);

// The depthwise weight gradient's first pass (depthwise.cu): `units` reduced units (output
// positions, or runs along a row) cut as column_split cuts them for `columns` threads' worth of
// channels, each chunk at least 8 units long (one per thread row of a block).
struct DepthwiseSplit {
  int64_t chunk_len = 0, chunks = 0;
};
DepthwiseSplit depthwise_weights_split(int64_t columns, int64_t units, int multiprocessors);

// Column sums with vector loads (sum_columns_vec in reduce.cu), when the kept elements are one
// run of stride 1 (a bias gradient's columns): a thread takes `width` neighbouring columns as one
// access of up to 16 bytes; a block of 256 threads takes `per_row` column vectors side by side
// and `rows` reduced rows at a time (so 48 f32 columns keep 252 threads busy, where 32-column
// blocks idled two thirds of each warp); `chunks` of `chunk_len` rows as column_split.
struct ColumnVecSplit {
  int width = 1;
  int64_t vectors = 0, per_row = 1, rows = 1, column_blocks = 1, chunks = 1, chunk_len = 0;
};
// width is the widest of 16 / element size, 8, 4, 2 that divides the column count and every
// reduced stride and to which the input's address is aligned (in elements); 1 when none.
int column_width(const ReducePlan& p, const void* base, size_t element_size);
ColumnVecSplit column_vec_split(int64_t n_out, int64_t n_red, int width, int multiprocessors);
ReducePlan plan_reduce(const Operand& x, const std::vector<bool>& reduced);

// (outer, n, inner) around `dim` of a contiguous shape.
struct Around {
  int64_t outer = 1, n = 1, inner = 1;
};
Around around(const Dims& shape, int64_t dim);

// Elements per thread and step of a contiguous elementwise map (map_flat in common.cuh): as many
// as one 16-byte access of the widest operand holds (4 for f32, 8 when every operand is bf16),
// when every pointer is aligned to its operand's share (element size x width) and n holds at
// least one such vector; else 1 (one element at a time). `operands` lists (address, element size).
int vector_width(int64_t n, std::initializer_list<std::pair<const void*, size_t>> operands);

// The fused attention backward keeps dS^T (bf16, `heads` x n rows of ld) for a chunk of images at
// a time: as many images as fit in kAttentionDsBytes (at least one), all of them when they fit.
constexpr int64_t kAttentionDsBytes = int64_t(32) << 20;
int64_t attention_ds_images(int64_t images, int64_t heads, int64_t n, int64_t ld);

// Which fused bf16 attention kernels run (flash.cu): FlashAttention-2's on mma.sync register
// fragments (flash_mma.cu, the default), or the WMMA ones of runs 7 and 8 (flash_wmma.cu), kept
// as their reference until the mma.sync kernels have run on a GPU. SCION_CUDA_FLASH=wmma in the
// environment selects the latter at start-up; set_flash_kernels changes it for the whole process
// (the tests compare both sets against the CPU).
enum class FlashKernels { mma, wmma };
FlashKernels flash_kernels();
void set_flash_kernels(FlashKernels k);

// Which kernels run the layer norm and addcmul's layer scale for f32 and bf16 rows of up to 1,024
// elements, a multiple of 4 (layer_norm.cu): rows held in registers by groups of lanes
// (norm_rows.h, the default), or run 8's (reduce.cu's warp per layer norm row, which also takes
// every other row; the mul, add and sum kernels for the layer scale), kept as their reference
// until the row kernels have run on a GPU. SCION_CUDA_NORM=warp in the environment selects the
// latter at start-up; set_norm_kernels changes it for the whole process.
enum class NormKernels { rows, warp };
NormKernels norm_kernels();
void set_norm_kernels(NormKernels k);

// The row kernels' shape for rows of d elements (norm_rows.h): `lanes` per row (a power of two,
// at most 32, no more than the row's 4-element vectors, so at least half of every group's
// registers hold the row) and `slots`, the kernel's vectors per lane (2, 4 or 8: at least
// ceil(d / 4 / lanes)); lanes = 0 where they do not apply (d not a multiple of 4, or over 1,024).
struct NormRowsPlan {
  int lanes = 0, slots = 0;
};
NormRowsPlan plan_norm_rows(int64_t d);
// Blocks of a grid-stride row kernel: one per kThreads / lanes rows until every multiprocessor
// holds `resident` of them (the kernel's occupancy), at least one.
int64_t norm_rows_blocks(int64_t rows, int lanes, int multiprocessors, int resident);

// SCION_CUDA_OP_TIMES=shapes' key of a backend call: its name and its main operands' dtypes and
// shapes, "matmul bf16[256,197,192] bf16[192,576]".
std::string op_time_key(const char* name,
                        const std::vector<std::pair<std::string, Dims>>& operands);

// A multi-tensor kernel's work list (the fused AdamW step): tensors of `sizes` elements cut into
// chunks of at most `chunk` elements, one per block, in tensor order; empty tensors get none.
struct TensorChunk {
  int32_t tensor;
  int64_t start;
};
std::vector<TensorChunk> tensor_chunks(const std::vector<int64_t>& sizes, int64_t chunk);

// A 1-d grid-stride launch: threads per block and blocks (capped; kernels loop).
struct Launch {
  unsigned blocks = 1, threads = 256;
};
Launch launch_1d(int64_t n, int multiprocessors = 132, unsigned threads = 256);

// A matrix operand for cuBLASLt from a row-major view of (rows, cols) with strides (rs, cs) and a
// batch stride: cuBLASLt is column-major, so a row-major matrix is its transpose there.
// transposed: the memory is column-major (cs is the leading dimension). ok is false when neither
// stride is 1 (the caller copies the operand contiguous first).
struct MatrixLayout {
  bool ok = false;
  bool transposed = false;
  int64_t rows = 0, cols = 0, ld = 0, batch_stride = 0;
};
MatrixLayout matrix_layout(int64_t rows, int64_t cols, int64_t rs, int64_t cs,
                           int64_t batch_stride);

// One GEMM C (m x n, row-major, ldc) = op(A) (m x k) op(B) (k x n), batched, as cuBLASLt sees it:
// column-major C^T = B^T A^T, so cuBLASLt's first operand is B. Layouts give the transpose flags.
struct GemmPlan {
  int64_t m = 0, n = 0, k = 0, batch = 1;
  MatrixLayout a, b;  // row-major views of A and B
  int64_t ldc = 0, stride_c = 0;
  // cuBLASLt arguments (column-major): D (n x m, ld ldc) = opB(n x k) * opA(k x m).
  bool lt_trans_first = false, lt_trans_second = false;
  int64_t lt_first_rows = 0, lt_first_cols = 0, lt_second_rows = 0, lt_second_cols = 0;
};
GemmPlan plan_gemm(int64_t batch, int64_t m, int64_t n, int64_t k, const MatrixLayout& a,
                   const MatrixLayout& b, int64_t ldc, int64_t stride_c);

// Split-K for a product with few output tiles (128 x 128) and a long inner dimension: `chunks`
// uniform chunks of kc (a multiple of 64) and a remainder `rest`; chunks == 0: no split.
struct SplitK {
  int64_t chunks = 0, kc = 0, rest = 0;
};
SplitK plan_split_k(int64_t m, int64_t n, int64_t k, int multiprocessors);

// cuDNN descriptors of a convolution: 4-d tensor dims (always N, C, H, W order) with strides for
// the activation layout, the filter dims (K, C/groups, R, S) and its format, and the convolution
// parameters.
struct ConvDescriptors {
  std::array<int, 4> x_dims{}, x_strides{}, y_dims{}, y_strides{}, w_dims{};
  bool w_nhwc = false;  // filter in KRSC memory (cuDNN's NHWC kernels want it with NHWC data)
  std::array<int, 2> pad{}, stride{}, dilation{};
  int groups = 1;
};
ConvDescriptors conv_descriptors(const Dims& x_nchw, const Dims& w_oihw, const Dims& y_nchw,
                                 int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w,
                                 int64_t dil_h, int64_t dil_w, int64_t groups, bool channels_last);

// Size classes of the pinned host pool: multiples of 512 bytes up to 1 MiB, multiples of 2 MiB
// above, so freed blocks fit later requests of slightly different sizes while the waste stays
// bounded. (The device allocator cuts blocks from segments instead: block_pool.h.)
size_t pinned_round_size(size_t bytes);

// The bookkeeping of the pinned (page-locked) host pool; backend.cu owns the memory and the CUDA
// events, held here as opaque pointers. Live blocks are kept by address, so a copy can tell
// whether a host pointer lies in pinned memory and in which block. A block's events (one per
// device that copied from it, re-recorded after each copy) mark when the copies queued from it
// have run; a freed block is handed out again only when every one of its events is done.
class PinnedBlocks {
 public:
  struct Block {
    void* base = nullptr;
    size_t size = 0;
    std::vector<std::pair<int, void*>> events;  // (device index, event)
  };
  Block& add(void* base, size_t size);  // a new live block
  Block* find(const void* p);           // the live block holding p, or nullptr
  void release(void* base);             // a live block into its size class's free list
  // A free block of `size` bytes whose events are all done (done(event)), live again; nullptr if
  // none is.
  Block* reuse(size_t size, const std::function<bool(void*)>& done);
  size_t live_blocks() const { return live_.size(); }
  size_t free_blocks() const;

 private:
  std::map<uintptr_t, Block> live_;
  std::map<size_t, std::vector<Block>> free_;
};

}  // namespace scion::cuda
