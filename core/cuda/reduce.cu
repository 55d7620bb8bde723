// Reductions and row kernels: sum over any dims, max along one dim, the sum of squares, layer
// norm, softmax / log-softmax and cross-entropy. Every sum is accumulated in a fixed order (block
// tree reductions, then partials summed by one block), so results do not change between runs.
#include "core/cuda/column_sums.h"
#include "core/cuda/common.cuh"
#include "core/ops.h"

namespace scion::cuda {

namespace {

constexpr int kRowThreads = 128;

// One block per output (grid-stride over outputs): the block's threads stride over the reduced
// elements, then a block tree sum.
template <class T>
__global__ void sum_blocks(DevPlan kept, DevPlan red, int64_t n_out, int64_t n_red, const T* x,
                           T* out) {
  __shared__ acc<T> shared[32];
  for (int64_t o = blockIdx.x; o < n_out; o += gridDim.x) {
    int64_t base[1];
    offsets<1>(kept, o, base);
    acc<T> s = 0;
    for (int64_t r = threadIdx.x; r < n_red; r += blockDim.x) {
      int64_t off[1];
      offsets<1>(red, r, off);
      s += load(x + base[0] + off[0]);
    }
    s = block_sum(s, shared);
    if (threadIdx.x == 0) store(out + o, s);
  }
}

// One thread per output, looping over the reduced elements (neighbouring threads read
// neighbouring memory when the kept dims are the inner ones).
template <class T>
__global__ void sum_threads(DevPlan kept, DevPlan red, int64_t n_out, int64_t n_red, const T* x,
                            T* out) {
  for (int64_t o = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; o < n_out;
       o += int64_t(gridDim.x) * blockDim.x) {
    int64_t base[1];
    offsets<1>(kept, o, base);
    acc<T> s = 0;
    for (int64_t r = 0; r < n_red; ++r) {
      int64_t off[1];
      offsets<1>(red, r, off);
      s += load(x + base[0] + off[0]);
    }
    store(out + o, s);
  }
}

// Column sums, pass 1: block (32, 8) takes 32 neighbouring outputs and one chunk of the reduced
// range; its 8 rows of threads stride through the chunk, then add up in shared memory.
template <class T>
__global__ void sum_columns(DevPlan kept, DevPlan red, int64_t n_out, int64_t n_red,
                            int64_t chunk_len, const T* x, acc<T>* part) {
  __shared__ acc<T> tile[8][33];
  const int64_t o = int64_t(blockIdx.x) * 32 + threadIdx.x;
  const int64_t r0 = int64_t(blockIdx.y) * chunk_len,
                r1 = r0 + chunk_len < n_red ? r0 + chunk_len : n_red;
  acc<T> s = 0;
  if (o < n_out) {
    int64_t base[1];
    offsets<1>(kept, o, base);
    for (int64_t r = r0 + threadIdx.y; r < r1; r += 8) {
      int64_t off[1];
      offsets<1>(red, r, off);
      s += load(x + base[0] + off[0]);
    }
  }
  tile[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && o < n_out) {
#pragma unroll
    for (int k = 1; k < 8; ++k) s += tile[k][threadIdx.x];
    part[int64_t(blockIdx.y) * n_out + o] = s;
  }
}

// A column-sum body's Env (column_sums.h): this thread and block.
struct ColumnsEnv {
  __device__ int thread() const { return int(threadIdx.x); }
  __device__ int64_t block() const { return int64_t(blockIdx.x); }
  __device__ int64_t block_y() const { return int64_t(blockIdx.y); }
  __device__ void sync() const { __syncthreads(); }
};

// Pass 1 with vector loads (column_sums.h).
template <class T, int W>
__global__ void __launch_bounds__(cols::kThreads)
    sum_columns_vec(DevPlan red, ColumnVecSplit cs, int64_t n_red, const T* x, acc<T>* part) {
  __shared__ acc<T> tile[cols::kThreads * W];
  ColumnsEnv env;
  const auto row_offset = [&red](int64_t r) {
    int64_t off[1];
    offsets<1>(red, r, off);
    return off[0];
  };
  cols::sum_columns_vec<W>(env, cs, n_red, row_offset, x, tile, part);
}

template <class T, int W>
void launch_sum_columns_vec(const ReducePlan& rp, const ColumnVecSplit& cs, const T* x,
                            acc<T>* part) {
  const dim3 grid(unsigned(cs.column_blocks), unsigned(cs.chunks));
  sum_columns_vec<T, W>
      <<<grid, cols::kThreads, 0, stream()>>>(dev_plan(rp.red), cs, rp.red.numel, x, part);
}

// Pass 2: each output adds its chunks' partial sums in chunk order.
template <class T>
__global__ void sum_chunks(const acc<T>* part, int64_t chunks, int64_t n_out, T* out) {
  for (int64_t o = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; o < n_out;
       o += int64_t(gridDim.x) * blockDim.x) {
    store(out + o, cols::chunk_total(part, chunks, n_out, o));
  }
}

}  // namespace

Tensor reduce_sum_kernel(const Tensor& x, const Shape& dims, bool keepdim) {
  std::vector<bool> red(size_t(x.dim()), dims.empty());
  for (int64_t d : dims) red[size_t(d)] = true;
  Shape shape;
  for (int64_t d = 0; d < x.dim(); ++d)
    if (!red[size_t(d)])
      shape.push_back(x.size(d));
    else if (keepdim)
      shape.push_back(1);
  Tensor out = dev_empty(shape, x.dtype());
  const ReducePlan rp = plan_reduce(operand(x), red);
  const int64_t n_out = rp.kept.numel, n_red = rp.red.numel;
  if (n_out == 0) return out;
  if (n_red == 0) {
    fill_kernel(out, 0.0);
    return out;
  }
  const int width = rp.columns() && is_floating(x.dtype())
                        ? column_width(rp, x.raw_data(), dtype_size(x.dtype()))
                        : 1;
  if (width > 1) {  // bias gradients: `width` columns per thread and load
    const ColumnVecSplit cs = column_vec_split(n_out, n_red, width, multiprocessors());
    Tensor part = dev_empty({cs.chunks * n_out}, x.dtype() == DType::f64 ? DType::f64 : DType::f32);
    SCION_DISPATCH_FLOATING(x.dtype(), "sum", T, {
      const T* xp = static_cast<const T*>(x.raw_data());
      acc<T>* pp = static_cast<acc<T>*>(part.raw_data());
      if (width == 8) launch_sum_columns_vec<T, 8>(rp, cs, xp, pp);
      if (width == 4) launch_sum_columns_vec<T, 4>(rp, cs, xp, pp);
      if (width == 2) launch_sum_columns_vec<T, 2>(rp, cs, xp, pp);
      const Launch l = launch_1d(n_out, multiprocessors());
      sum_chunks<T><<<l.blocks, l.threads, 0, stream()>>>(pp, cs.chunks, n_out,
                                                          static_cast<T*>(out.raw_data()));
    });
    SCION_CUDA_LAUNCHED("sum");
    return out;
  }
  SCION_DISPATCH_NUMERIC(x.dtype(), "sum", T, {
    const T* xp = static_cast<const T*>(x.raw_data());
    T* op = static_cast<T*>(out.raw_data());
    if (rp.columns()) {
      const ColumnSplit cs = column_split(n_out, n_red, multiprocessors());
      Tensor part = dev_empty({cs.chunks * n_out}, x.dtype() == DType::f64  ? DType::f64
                                                   : is_floating(x.dtype()) ? DType::f32
                                                                            : DType::i64);
      acc<T>* pp = static_cast<acc<T>*>(part.raw_data());
      sum_columns<T>
          <<<dim3(unsigned(cs.column_blocks), unsigned(cs.chunks)), dim3(32, 8), 0, stream()>>>(
              dev_plan(rp.kept), dev_plan(rp.red), n_out, n_red, cs.chunk_len, xp, pp);
      const Launch l = launch_1d(n_out, multiprocessors());
      sum_chunks<T><<<l.blocks, l.threads, 0, stream()>>>(pp, cs.chunks, n_out, op);
    } else if (rp.inner_contiguous() || n_out < 4 * multiprocessors() * 32) {
      const unsigned blocks = unsigned(std::min<int64_t>(n_out, 65535));
      sum_blocks<T>
          <<<blocks, 256, 0, stream()>>>(dev_plan(rp.kept), dev_plan(rp.red), n_out, n_red, xp, op);
    } else {
      const Launch l = launch_1d(n_out, multiprocessors());
      sum_threads<T><<<l.blocks, l.threads, 0, stream()>>>(dev_plan(rp.kept), dev_plan(rp.red),
                                                           n_out, n_red, xp, op);
    }
    SCION_CUDA_LAUNCHED("sum");
  });
  return out;
}

void reduce_max_kernel(const Tensor& x, int64_t dim, bool keepdim, Tensor& values,
                       Tensor& indices) {
  SCION_CHECK(x.size(dim) > 0, "max: cannot reduce over an empty dimension");
  std::vector<bool> red(size_t(x.dim()), false);
  red[size_t(dim)] = true;
  Shape shape = x.shape();
  if (keepdim)
    shape[size_t(dim)] = 1;
  else
    shape.erase(shape.begin() + dim);
  values = dev_empty(shape, x.dtype());
  indices = dev_empty(shape, DType::i64);
  const ReducePlan rp = plan_reduce(operand(x), red);
  const DevPlan kept = dev_plan(rp.kept);
  const int64_t n = x.size(dim), step = x.strides()[size_t(dim)];
  SCION_DISPATCH_ALL(x.dtype(), T, {
    using A = acc<T>;
    const T* xp = static_cast<const T*>(x.raw_data());
    T* vp = static_cast<T*>(values.raw_data());
    int64_t* ip = indices.data<int64_t>();
    for_index(rp.kept.numel, [=] __device__(int64_t o) {
      int64_t base[1];
      offsets<1>(kept, o, base);
      int64_t b = 0;
      A best = load(xp + base[0]);
      for (int64_t j = 1; j < n; ++j) {
        if (best != best) break;  // the first NaN wins, like torch
        const A e = load(xp + base[0] + j * step);
        if (e > best || e != e) {
          best = e;
          b = j;
        }
      }
      store(vp + o, best);
      ip[o] = b;
    });
  });
}

namespace {

constexpr int kPartials = 512;

__global__ void square_partials(const float* x, int64_t n, double* part) {
  __shared__ double shared[32];
  double s = 0;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    s += double(x[i]) * double(x[i]);
  s = block_sum(s, shared);
  if (threadIdx.x == 0) part[blockIdx.x] = s;
}

// Sums `n` partials in one block, in a fixed order; writes the total scaled by `scale` into
// out[0] converted to T.
template <class T>
__global__ void sum_partials(const double* part, int n, double scale, T* out) {
  __shared__ double shared[32];
  double s = 0;
  for (int i = threadIdx.x; i < n; i += blockDim.x) s += part[i];
  s = block_sum(s, shared);
  if (threadIdx.x == 0) store(out, acc<T>(s * scale));
}

// total += the sum of the partials, added in a fixed order (one block).
__global__ void add_partials(const double* part, int n, double* total) {
  __shared__ double shared[32];
  double s = 0;
  for (int i = threadIdx.x; i < n; i += blockDim.x) s += part[i];
  s = block_sum(s, shared);
  if (threadIdx.x == 0) *total += s;
}

}  // namespace

void add_sum_squares_kernel(const Tensor& x, const Tensor& total) {
  if (x.numel() == 0) return;
  Tensor part = dev_empty({kPartials}, DType::f64);
  square_partials<<<kPartials, 256, 0, stream()>>>(x.data<float>(), x.numel(), part.data<double>());
  add_partials<<<1, 512, 0, stream()>>>(part.data<double>(), kPartials, total.data<double>());
  SCION_CUDA_LAUNCHED("sum of squares");
}

namespace {

// Sums of squares over several contiguous f32 tensors: a block per chunk of one tensor writes its
// sum (f64) to part[block]; add_partials then adds the blocks in order (deterministic).
struct SquaresEntry {
  const float* x;
  int64_t n;
};
constexpr int64_t kSquaresChunk = 16384;

__global__ void __launch_bounds__(256)
    square_chunks(const SquaresEntry* entries, const TensorChunk* chunks, double* part) {
  __shared__ double shared[32];
  const TensorChunk ch = chunks[blockIdx.x];
  const SquaresEntry e = entries[ch.tensor];
  const int64_t end = ch.start + kSquaresChunk < e.n ? ch.start + kSquaresChunk : e.n;
  double s = 0;
  for (int64_t i = ch.start + threadIdx.x; i < end; i += blockDim.x)
    s += double(e.x[i]) * double(e.x[i]);
  s = block_sum(s, shared);
  if (threadIdx.x == 0) part[blockIdx.x] = s;
}

}  // namespace

void add_sums_of_squares_kernel(const std::vector<Tensor>& xs, const Tensor& total) {
  std::vector<SquaresEntry> entries;
  std::vector<int64_t> sizes;
  for (const Tensor& x : xs) {
    entries.push_back({x.data<float>(), x.numel()});
    sizes.push_back(x.numel());
  }
  const ChunkTables<SquaresEntry> t =
      upload_chunk_tables(entries, sizes, kSquaresChunk, total.device());
  if (t.blocks == 0) return;
  Tensor part = dev_empty({int64_t(t.blocks)}, DType::f64);
  square_chunks<<<t.blocks, 256, 0, stream()>>>(t.entries, t.chunks, part.data<double>());
  add_partials<<<1, 512, 0, stream()>>>(part.data<double>(), int(t.blocks), total.data<double>());
  SCION_CUDA_LAUNCHED("multi-tensor sum of squares");
}

double sum_squares_kernel(const Tensor& x) {
  Tensor total = dev_empty({}, DType::f64);
  fill_kernel(total, 0.0);
  add_sum_squares_kernel(x, total);
  return total.item();
}

// ---- layer norm -------------------------------------------------------------------------------
// A warp per row: every case the row kernels (layer_norm.cu) do not take (f64, rows not a multiple
// of 4 elements or over 1,024, unaligned tensors), and all of them under SCION_CUDA_NORM=warp.

namespace {

// Statistics of one row, by one warp: mean and 1/::sqrt(biased variance + eps), two passes.
template <class T, class A>
__device__ __forceinline__ void row_stats(const T* x, int64_t d, double eps, A& mu, A& rs) {
  A s = 0;
  for (int64_t i = threadIdx.x % 32; i < d; i += 32) s += load(x + i);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
  mu = s / A(d);
  A v = 0;
  for (int64_t i = threadIdx.x % 32; i < d; i += 32) {
    const A c = load(x + i) - mu;
    v += c * c;
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  rs = A(1) / ::sqrt(v / A(d) + A(eps));
}

// y's element type Y is T, or bf16 for an f32 x (layer_norm_to); dy's, G, likewise below.
template <class T, class W, class Y>
__global__ void ln_forward(const T* x, const W* w, const W* b, double eps, int64_t rows, int64_t d,
                           Y* y, acc<T>* mean, acc<T>* rstd) {
  using A = acc<T>;
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x / 32);
  for (int64_t r = int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32; r < rows;
       r += warps) {
    const T* xr = x + r * d;
    Y* yr = y + r * d;
    A mu, rs;
    row_stats(xr, d, eps, mu, rs);
    for (int64_t i = threadIdx.x % 32; i < d; i += 32) {
      A v = (load(xr + i) - mu) * rs;
      if (w) v = v * A(load(w + i));
      if (b) v = v + A(load(b + i));
      store(yr + i, v);
    }
    if (threadIdx.x % 32 == 0) {
      mean[r] = mu;
      rstd[r] = rs;
    }
  }
}

template <class T, class W, class G>
__global__ void ln_backward_dx(const G* dy, const T* x, const W* w, const acc<T>* mean,
                               const acc<T>* rstd, int64_t rows, int64_t d, T* dx) {
  using A = acc<T>;
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x / 32);
  for (int64_t r = int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32; r < rows;
       r += warps) {
    const T* xr = x + r * d;
    const G* gr = dy + r * d;
    const A mu = mean[r], rs = rstd[r];
    A m1 = 0, m2 = 0;
    for (int64_t i = threadIdx.x % 32; i < d; i += 32) {
      const A xh = (load(xr + i) - mu) * rs;
      const A g = load(gr + i) * (w ? A(load(w + i)) : A(1));
      m1 += g;
      m2 += g * xh;
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      m1 += __shfl_xor_sync(0xffffffffu, m1, o);
      m2 += __shfl_xor_sync(0xffffffffu, m2, o);
    }
    m1 /= A(d);
    m2 /= A(d);
    for (int64_t i = threadIdx.x % 32; i < d; i += 32) {
      const A xh = (load(xr + i) - mu) * rs;
      const A g = load(gr + i) * (w ? A(load(w + i)) : A(1));
      store(dx + r * d + i, rs * (g - m1 - xh * m2));
    }
  }
}

// dw, db partial column sums over a chunk of rows: part[(chunk * 2 + {0,1}) * d + j]. As
// sum_columns: block (32, 8) takes 32 neighbouring columns and one chunk of rows (column_split
// sizes the chunks so every multiprocessor gets a few blocks); its 8 rows of threads stride
// through the chunk, then add up in shared memory in a fixed order.
template <class T, class G>
__global__ void ln_backward_dwdb(const G* dy, const T* x, const acc<T>* mean, const acc<T>* rstd,
                                 int64_t rows, int64_t d, int64_t rows_per_chunk, acc<T>* part) {
  using A = acc<T>;
  __shared__ A tile_w[8][33], tile_b[8][33];
  const int64_t j = int64_t(blockIdx.x) * 32 + threadIdx.x;
  const int64_t r0 = int64_t(blockIdx.y) * rows_per_chunk,
                r1 = r0 + rows_per_chunk < rows ? r0 + rows_per_chunk : rows;
  A sw = 0, sb = 0;
  if (j < d) {
    for (int64_t r = r0 + threadIdx.y; r < r1; r += 8) {
      const A g = load(dy + r * d + j);
      sw += g * (load(x + r * d + j) - mean[r]) * rstd[r];
      sb += g;
    }
  }
  tile_w[threadIdx.y][threadIdx.x] = sw;
  tile_b[threadIdx.y][threadIdx.x] = sb;
  __syncthreads();
  if (threadIdx.y == 0 && j < d) {
#pragma unroll
    for (int k = 1; k < 8; ++k) {
      sw += tile_w[k][threadIdx.x];
      sb += tile_b[k][threadIdx.x];
    }
    part[(int64_t(blockIdx.y) * 2) * d + j] = sw;
    part[(int64_t(blockIdx.y) * 2 + 1) * d + j] = sb;
  }
}

// The same with vector loads (ColumnVecSplit, as sum_columns_vec): W columns of a row per thread.
template <class T, class G, int W>
__global__ void __launch_bounds__(256)
    ln_backward_dwdb_vec(const G* dy, const T* x, const acc<T>* mean, const acc<T>* rstd,
                         int64_t rows, ColumnVecSplit cs, acc<T>* part) {
  using A = acc<T>;
  __shared__ A tile_w[256 * W], tile_b[256 * W];
  const int64_t d = cs.vectors * W;
  const int phase = int(threadIdx.x / cs.per_row), at = int(threadIdx.x % cs.per_row);
  const int64_t v = int64_t(blockIdx.x) * cs.per_row + at;
  const int64_t r0 = int64_t(blockIdx.y) * cs.chunk_len,
                r1 = r0 + cs.chunk_len < rows ? r0 + cs.chunk_len : rows;
  const bool active = phase < cs.rows && v < cs.vectors;
  A sw[W], sb[W];
#pragma unroll
  for (int k = 0; k < W; ++k) sw[k] = sb[k] = 0;
  if (active) {
#pragma unroll 4
    for (int64_t r = r0 + phase; r < r1; r += cs.rows) {
      const Pack<G, W> g = *reinterpret_cast<const Pack<G, W>*>(dy + r * d + v * W);
      const Pack<T, W> xv = *reinterpret_cast<const Pack<T, W>*>(x + r * d + v * W);
      const A mu = mean[r], rs = rstd[r];
#pragma unroll
      for (int k = 0; k < W; ++k) {
        const A gk = load(&g.v[k]);
        sw[k] += gk * (load(&xv.v[k]) - mu) * rs;
        sb[k] += gk;
      }
    }
  }
  ColumnsEnv env;
  const bool total = cols::add_phases(env, sw, tile_w, cs, phase, at, active);
  cols::add_phases(env, sb, tile_b, cs, phase, at, active);
  if (!total) return;
#pragma unroll
  for (int k = 0; k < W; ++k) {
    part[(int64_t(blockIdx.y) * 2) * d + v * W + k] = sw[k];
    part[(int64_t(blockIdx.y) * 2 + 1) * d + v * W + k] = sb[k];
  }
}

template <class T>
__global__ void ln_backward_finish(const acc<T>* part, int chunks, int64_t d, T* dw, T* db) {
  using A = acc<T>;
  for (int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; j < d;
       j += int64_t(gridDim.x) * blockDim.x) {
    A sw = 0, sb = 0;
    for (int c = 0; c < chunks; ++c) {
      sw += part[(int64_t(c) * 2) * d + j];
      sb += part[(int64_t(c) * 2 + 1) * d + j];
    }
    store(dw + j, sw);
    store(db + j, sb);
  }
}

// Runs f with the element type of y (or dy) for an x of element type T: T itself, or bf16 for an
// f32 x (layer_norm_to).
template <class T, class F>
void with_partner(DType partner, F&& f) {
  if constexpr (std::is_same_v<T, float>) {
    if (partner == DType::bf16) return f(bf16_t());
  }
  f(T());
}

unsigned row_blocks(int64_t rows, int rows_per_block) {
  return unsigned(
      std::max<int64_t>(1, std::min<int64_t>((rows + rows_per_block - 1) / rows_per_block, 65535)));
}

}  // namespace

void layer_norm_forward_kernel(const Tensor& x, const Tensor& w, const Tensor& b, double eps,
                               int64_t d, DType out, Tensor& y, Tensor& mean, Tensor& rstd) {
  const int64_t rows = d == 0 ? 0 : x.numel() / d;
  const DType stat = x.dtype() == DType::f64 ? DType::f64 : DType::f32;
  y = dev_empty(x.shape(), out);
  mean = dev_empty({rows}, stat);
  rstd = dev_empty({rows}, stat);
  if (rows == 0 || layer_norm_rows_forward(x, w, b, eps, d, y, mean, rstd)) return;
  const DType wdt = w.defined() ? w.dtype() : (b.defined() ? b.dtype() : x.dtype());
  SCION_DISPATCH_FLOATING(x.dtype(), "layer_norm", T, {
    SCION_DISPATCH_FLOATING(wdt, "layer_norm weight", W, {
      with_partner<T>(out, [&](auto ytag) {
        using Y = decltype(ytag);
        ln_forward<T, W, Y><<<row_blocks(rows, 8), 256, 0, stream()>>>(
            static_cast<const T*>(x.raw_data()),
            w.defined() ? static_cast<const W*>(w.raw_data()) : nullptr,
            b.defined() ? static_cast<const W*>(b.raw_data()) : nullptr, eps, rows, d,
            static_cast<Y*>(y.raw_data()), static_cast<acc<T>*>(mean.raw_data()),
            static_cast<acc<T>*>(rstd.raw_data()));
      });
    });
  });
  SCION_CUDA_LAUNCHED("layer norm");
}

void layer_norm_backward_kernel(const Tensor& dy, const Tensor& x, const Tensor& w,
                                const Tensor& mean, const Tensor& rstd, int64_t d, Tensor& dx,
                                Tensor& dw, Tensor& db) {
  const int64_t rows = d == 0 ? 0 : x.numel() / d;
  const Shape wshape = w.defined() ? w.shape() : Shape{d};
  dx = dev_empty(x.shape(), x.dtype());
  dw = dev_empty(wshape, x.dtype());
  db = dev_empty(wshape, x.dtype());
  if (rows == 0) {
    fill_kernel(dw, 0.0);
    fill_kernel(db, 0.0);
    return;
  }
  const Tensor dyc = dy.is_contiguous() ? dy : dy.contiguous();
  if (layer_norm_rows_backward(dyc, x, w, mean, rstd, d, dx, dw, db)) return;
  // Chunks of rows for the weight and bias gradients: enough blocks for the whole GPU (128 fixed
  // chunks left a ConvNeXt stage-1 norm, 48 columns of 800K rows, to 6,144 threads), with vector
  // loads of `width` columns where d and the addresses allow (as the column sums).
  const ReducePlan columns = plan_reduce({{rows, d}, {d, 1}}, {true, false});
  const int width = std::min(column_width(columns, dyc.raw_data(), dtype_size(dyc.dtype())),
                             column_width(columns, x.raw_data(), dtype_size(x.dtype())));
  const ColumnSplit split = column_split(d, rows, multiprocessors());
  const ColumnVecSplit vsplit = column_vec_split(d, rows, width, multiprocessors());
  const int chunks = int(width > 1 ? vsplit.chunks : split.chunks);
  const int64_t per_chunk = split.chunk_len;
  const DType wdt = w.defined() ? w.dtype() : x.dtype();
  SCION_DISPATCH_FLOATING(x.dtype(), "layer_norm", T, {
    with_partner<T>(dyc.dtype(), [&](auto gtag) {
      using G = decltype(gtag);
      using A = acc<T>;
      const T* xp = static_cast<const T*>(x.raw_data());
      const G* gp = static_cast<const G*>(dyc.raw_data());
      const A* mp = static_cast<const A*>(mean.raw_data());
      const A* rp = static_cast<const A*>(rstd.raw_data());
      SCION_DISPATCH_FLOATING(wdt, "layer_norm weight", W, {
        ln_backward_dx<T, W, G><<<row_blocks(rows, 8), 256, 0, stream()>>>(
            gp, xp, w.defined() ? static_cast<const W*>(w.raw_data()) : nullptr, mp, rp, rows, d,
            static_cast<T*>(dx.raw_data()));
      });
      Tensor part =
          dev_empty({int64_t(chunks) * 2 * d}, x.dtype() == DType::f64 ? DType::f64 : DType::f32);
      A* pp = static_cast<A*>(part.raw_data());
      const dim3 vgrid(unsigned(vsplit.column_blocks), unsigned(chunks));
      if (width == 8)
        ln_backward_dwdb_vec<T, G, 8>
            <<<vgrid, 256, 0, stream()>>>(gp, xp, mp, rp, rows, vsplit, pp);
      if (width == 4)
        ln_backward_dwdb_vec<T, G, 4>
            <<<vgrid, 256, 0, stream()>>>(gp, xp, mp, rp, rows, vsplit, pp);
      if (width == 2)
        ln_backward_dwdb_vec<T, G, 2>
            <<<vgrid, 256, 0, stream()>>>(gp, xp, mp, rp, rows, vsplit, pp);
      if (width == 1)
        ln_backward_dwdb<T, G>
            <<<dim3(unsigned(split.column_blocks), unsigned(chunks)), dim3(32, 8), 0, stream()>>>(
                gp, xp, mp, rp, rows, d, per_chunk, pp);
      ln_backward_finish<T><<<unsigned((d + 255) / 256), 256, 0, stream()>>>(
          static_cast<const A*>(part.raw_data()), chunks, d, static_cast<T*>(dw.raw_data()),
          static_cast<T*>(db.raw_data()));
    });
  });
  SCION_CUDA_LAUNCHED("layer norm backward");
}

// ---- softmax ----------------------------------------------------------------------------------

namespace {

// Row j of (outer, n, inner) starts at (o * n) * inner + i and steps by inner.
template <class T>
__global__ void softmax_rows(bool log, const T* x, T* y, int64_t outer, int64_t n, int64_t inner) {
  using A = acc<T>;
  __shared__ A shared[32];
  for (int64_t row = blockIdx.x; row < outer * inner; row += gridDim.x) {
    const int64_t o = row / inner, i = row % inner, base = o * n * inner + i;
    A mx = -INFINITY;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) mx = fmax(mx, load(x + base + j * inner));
    mx = block_max(mx, shared);
    A s = 0;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x)
      s += ::exp(load(x + base + j * inner) - mx);
    s = block_sum(s, shared);
    const A ls = log ? A(::log(s)) : A(0);
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
      const A v = load(x + base + j * inner) - mx;
      store(y + base + j * inner, log ? v - ls : ::exp(v) / s);
    }
  }
}

template <class T>
__global__ void softmax_rows_backward(bool log, const T* y, const T* dy, T* dx, int64_t outer,
                                      int64_t n, int64_t inner) {
  using A = acc<T>;
  __shared__ A shared[32];
  for (int64_t row = blockIdx.x; row < outer * inner; row += gridDim.x) {
    const int64_t o = row / inner, i = row % inner, base = o * n * inner + i;
    A s = 0;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
      const int64_t e = base + j * inner;
      s += log ? load(dy + e) : load(dy + e) * load(y + e);
    }
    s = block_sum(s, shared);
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
      const int64_t e = base + j * inner;
      store(dx + e, log ? load(dy + e) - ::exp(load(y + e)) * s : load(y + e) * (load(dy + e) - s));
    }
  }
}

}  // namespace

void softmax_forward_kernel(bool log, int64_t dim, const Tensor& x, const Tensor& y) {
  const Around a = around(x.shape(), dim);
  if (x.numel() == 0) return;
  SCION_DISPATCH_FLOATING(x.dtype(), "softmax", T, {
    softmax_rows<T>
        <<<unsigned(std::min<int64_t>(a.outer * a.inner, 65535)), kRowThreads, 0, stream()>>>(
            log, static_cast<const T*>(x.raw_data()), static_cast<T*>(y.raw_data()), a.outer, a.n,
            a.inner);
  });
  SCION_CUDA_LAUNCHED("softmax");
}

void softmax_backward_kernel(bool log, int64_t dim, const Tensor& y, const Tensor& dy,
                             const Tensor& dx) {
  const Around a = around(y.shape(), dim);
  if (y.numel() == 0) return;
  const Tensor g = dy.is_contiguous() ? dy : dy.contiguous();
  SCION_DISPATCH_FLOATING(y.dtype(), "softmax", T, {
    softmax_rows_backward<T>
        <<<unsigned(std::min<int64_t>(a.outer * a.inner, 65535)), kRowThreads, 0, stream()>>>(
            log, static_cast<const T*>(y.raw_data()), static_cast<const T*>(g.raw_data()),
            static_cast<T*>(dx.raw_data()), a.outer, a.n, a.inner);
  });
  SCION_CUDA_LAUNCHED("softmax backward");
}

// ---- cross-entropy ----------------------------------------------------------------------------

namespace {

template <class T>
__global__ void ce_rows(const T* x, const T* q, T* lp, int64_t rows, int64_t c, double* part) {
  using A = acc<T>;
  __shared__ A shared[32];
  __shared__ double dshared[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * c;
    A mx = -INFINITY;
    for (int64_t j = threadIdx.x; j < c; j += blockDim.x) mx = fmax(mx, load(xr + j));
    mx = block_max(mx, shared);
    A s = 0;
    for (int64_t j = threadIdx.x; j < c; j += blockDim.x) s += ::exp(load(xr + j) - mx);
    s = block_sum(s, shared);
    const A ls = ::log(s);
    double t = 0;
    for (int64_t j = threadIdx.x; j < c; j += blockDim.x) {
      const A v = load(xr + j) - mx - ls;
      store(lp + r * c + j, v);
      t += double(load(q + r * c + j)) * double(load(lp + r * c + j));
    }
    t = block_sum(t, dshared);
    if (threadIdx.x == 0) part[r] = t;
  }
}

}  // namespace

Tensor cross_entropy_kernel(const Tensor& logits, const Tensor& q, const Tensor& lp) {
  const int64_t rows = logits.size(0), c = logits.size(1);
  Tensor loss = dev_empty({}, logits.dtype());
  Tensor part = dev_empty({std::max<int64_t>(rows, 1)}, DType::f64);
  const Tensor qc = q.is_contiguous() ? q : q.contiguous();
  SCION_DISPATCH_FLOATING(logits.dtype(), "cross_entropy", T, {
    if (rows > 0)
      ce_rows<T><<<unsigned(std::min<int64_t>(rows, 65535)), kRowThreads, 0, stream()>>>(
          static_cast<const T*>(logits.raw_data()), static_cast<const T*>(qc.raw_data()),
          static_cast<T*>(lp.raw_data()), rows, c, part.data<double>());
    else
      fill_kernel(part, 0.0);
    sum_partials<T><<<1, 512, 0, stream()>>>(part.data<double>(), int(std::max<int64_t>(rows, 1)),
                                             -1.0 / double(std::max<int64_t>(rows, 1)),
                                             static_cast<T*>(loss.raw_data()));
  });
  SCION_CUDA_LAUNCHED("cross-entropy");
  return loss;
}

}  // namespace scion::cuda
