// Host-side plans for the CUDA kernels (see plan.h). Plain C++: built in every configuration.
#include "core/cuda/plan.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <stdexcept>
#include <string>

namespace scion::cuda {

namespace {

std::string dims_str(const Dims& d) {
  std::string s = "(";
  for (size_t i = 0; i < d.size(); ++i) s += (i ? ", " : "") + std::to_string(d[i]);
  return s + ")";
}

// Drops size-1 dimensions and merges neighbours whose strides chain, in place.
void collapse(std::vector<int64_t>& sizes, std::vector<std::vector<int64_t>>& strides) {
  std::vector<int64_t> s2;
  std::vector<std::vector<int64_t>> st2(strides.size());
  for (size_t d = 0; d < sizes.size(); ++d) {
    if (sizes[d] == 1) continue;
    bool merge = !s2.empty();
    for (size_t k = 0; merge && k < strides.size(); ++k)
      merge = st2[k].back() == strides[k][d] * sizes[d];
    if (merge) {
      s2.back() *= sizes[d];
      for (size_t k = 0; k < strides.size(); ++k) st2[k].back() = strides[k][d];
    } else {
      s2.push_back(sizes[d]);
      for (size_t k = 0; k < strides.size(); ++k) st2[k].push_back(strides[k][d]);
    }
  }
  sizes = s2;
  strides = st2;
}

StridedPlan to_plan(const std::vector<int64_t>& sizes,
                    const std::vector<std::vector<int64_t>>& strides) {
  if (sizes.size() > size_t(kMaxDims))
    throw std::invalid_argument("CUDA kernels take at most " + std::to_string(kMaxDims) +
                                " dimensions after collapsing, got " +
                                std::to_string(sizes.size()));
  if (strides.size() > size_t(kMaxOperands))
    throw std::invalid_argument("too many operands for one CUDA kernel");
  StridedPlan p;
  p.ndim = int(sizes.size());
  p.nargs = int(strides.size());
  for (size_t d = 0; d < sizes.size(); ++d) {
    p.sizes[d] = sizes[d];
    p.numel *= sizes[d];
    for (size_t k = 0; k < strides.size(); ++k) p.strides[k][d] = strides[k][d];
  }
  return p;
}

}  // namespace

bool StridedPlan::contiguous() const {
  if (ndim == 0) return true;
  if (ndim > 1) return false;
  for (int k = 0; k < nargs; ++k)
    if (strides[size_t(k)][0] != 1) return false;
  return true;
}

StridedPlan plan_elementwise(const Dims& shape, const std::vector<Operand>& operands) {
  std::vector<int64_t> sizes(shape.begin(), shape.end());
  std::vector<std::vector<int64_t>> strides;
  for (const Operand& op : operands) {
    if (op.shape.size() != op.strides.size() || op.shape.size() > shape.size())
      throw std::invalid_argument("operand " + dims_str(op.shape) + " does not broadcast to " +
                                  dims_str(shape));
    std::vector<int64_t> st(shape.size(), 0);
    const size_t lead = shape.size() - op.shape.size();
    for (size_t d = 0; d < op.shape.size(); ++d) {
      if (op.shape[d] == shape[lead + d])
        st[lead + d] = shape[lead + d] == 1 ? 0 : op.strides[d];
      else if (op.shape[d] != 1)
        throw std::invalid_argument("operand " + dims_str(op.shape) + " does not broadcast to " +
                                    dims_str(shape));
    }
    strides.push_back(st);
  }
  for (int64_t s : shape)
    if (s == 0) return to_plan({0}, std::vector<std::vector<int64_t>>(operands.size(), {1}));
  // Walk the output's memory in order (as PyTorch's TensorIterator does): dims sorted by the
  // first operand's stride, outermost first, so dense tensors in any one layout (channels-last
  // included) collapse to a single dimension. Ties (size-1 dims) keep their order.
  if (!strides.empty()) {
    std::vector<size_t> order(sizes.size());
    for (size_t d = 0; d < order.size(); ++d) order[d] = d;
    const std::vector<int64_t>& out = strides[0];
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t a, size_t b) { return std::abs(out[a]) > std::abs(out[b]); });
    std::vector<int64_t> s2;
    std::vector<std::vector<int64_t>> st2(strides.size());
    for (size_t d : order) {
      s2.push_back(sizes[d]);
      for (size_t k = 0; k < strides.size(); ++k) st2[k].push_back(strides[k][d]);
    }
    sizes = s2;
    strides = st2;
  }
  collapse(sizes, strides);
  return to_plan(sizes, strides);
}

StridedPlan::BroadcastOf StridedPlan::broadcast_of(int k) const {
  if (k < 0 || k >= nargs) return {};
  auto others_dense = [&](std::initializer_list<int64_t> dense) {
    for (int j = 0; j < nargs; ++j)
      if (j != k && !std::equal(dense.begin(), dense.end(), strides[size_t(j)].begin()))
        return false;
    return true;
  };
  const auto& st = strides[size_t(k)];
  if (ndim == 1 && st[0] == 0 && others_dense({1})) return {Broadcast::scalar, 1};
  if (ndim != 2) return {};
  const int64_t c = sizes[1];
  if (!others_dense({c, 1})) return {};
  if (st[0] == 0 && st[1] == 1) return {Broadcast::row, c};
  if (st[0] == 1 && st[1] == 0) return {Broadcast::row_value, c};
  return {};
}

bool StridedPlan::fits_int32() const {
  if (numel >= (int64_t(1) << 31)) return false;
  for (int k = 0; k < nargs; ++k) {
    int64_t reach = 0;
    for (int d = 0; d < ndim; ++d)
      reach += std::abs(strides[size_t(k)][size_t(d)]) * (sizes[size_t(d)] - 1);
    if (reach >= (int64_t(1) << 31)) return false;
  }
  return true;
}

bool ReducePlan::inner_contiguous() const {
  return red.ndim == 1 && red.strides[0][0] == 1;
}

bool ReducePlan::columns() const {
  return !inner_contiguous() && kept.ndim >= 1 && kept.strides[0][size_t(kept.ndim - 1)] == 1;
}

ColumnSplit column_split(int64_t n_out, int64_t n_red, int multiprocessors) {
  ColumnSplit c;
  c.column_blocks = (n_out + 31) / 32;
  // Enough chunks of the reduced range to give every multiprocessor a few blocks, each chunk at
  // least 64 elements long.
  const int64_t want = std::max<int64_t>(1, int64_t(multiprocessors) * 4 / c.column_blocks);
  c.chunks = std::max<int64_t>(1, std::min<int64_t>({want, (n_red + 63) / 64, 1024}));
  c.chunk_len = (n_red + c.chunks - 1) / c.chunks;
  return c;
}

DepthwiseSplit depthwise_weights_split(int64_t columns, int64_t units, int multiprocessors) {
  const int64_t chunk_len =
      std::max<int64_t>(column_split(columns, units, multiprocessors).chunk_len, 8);
  return {chunk_len, (units + chunk_len - 1) / chunk_len};
}

int column_width(const ReducePlan& p, const void* base, size_t element_size) {
  if (p.kept.ndim != 1 || p.kept.strides[0][0] != 1) return 1;
  for (int w = int(std::min<size_t>(16 / std::max<size_t>(element_size, 1), 8)); w > 1; w /= 2) {
    bool fits =
        p.kept.numel % w == 0 && reinterpret_cast<uintptr_t>(base) % (w * element_size) == 0;
    for (int d = 0; d < p.red.ndim; ++d) fits = fits && p.red.strides[0][size_t(d)] % w == 0;
    if (fits) return w;
  }
  return 1;
}

ColumnVecSplit column_vec_split(int64_t n_out, int64_t n_red, int width, int multiprocessors) {
  constexpr int64_t kThreads = 256;
  ColumnVecSplit c;
  c.width = width;
  c.vectors = n_out / width;
  c.per_row = std::clamp<int64_t>(c.vectors, 1, kThreads);
  c.rows = kThreads / c.per_row;
  c.column_blocks = (c.vectors + c.per_row - 1) / c.per_row;
  // Eight blocks per multiprocessor (a full one), each thread summing at least 16 rows.
  const int64_t want = std::max<int64_t>(1, int64_t(multiprocessors) * 8 / c.column_blocks);
  c.chunks = std::max<int64_t>(1, std::min<int64_t>({want, n_red / (c.rows * 16), 1024}));
  c.chunk_len = std::max<int64_t>((n_red + c.chunks - 1) / c.chunks, 1);
  c.chunks = std::max<int64_t>((n_red + c.chunk_len - 1) / c.chunk_len, 1);  // none left empty
  return c;
}

ReducePlan plan_reduce(const Operand& x, const std::vector<bool>& reduced) {
  if (reduced.size() != x.shape.size()) throw std::invalid_argument("reduce: one flag per dim");
  std::vector<int64_t> ks, rs;
  std::vector<std::vector<int64_t>> kst(1), rst(1);
  for (size_t d = 0; d < x.shape.size(); ++d) {
    if (reduced[d]) {
      rs.push_back(x.shape[d]);
      rst[0].push_back(x.strides[d]);
    } else {
      ks.push_back(x.shape[d]);
      kst[0].push_back(x.strides[d]);
    }
  }
  collapse(ks, kst);
  collapse(rs, rst);
  ReducePlan p;
  p.kept = to_plan(ks, kst);
  p.red = to_plan(rs, rst);
  for (int64_t s : x.shape)
    if (s == 0) {  // an empty input: every output is an empty sum
      p.red.numel = 0;
      for (size_t d = 0; d < x.shape.size(); ++d)
        if (!reduced[d] && x.shape[d] == 0) p.kept.numel = 0;
    }
  return p;
}

Around around(const Dims& shape, int64_t dim) {
  Around a;
  for (int64_t d = 0; d < int64_t(shape.size()); ++d) {
    if (d < dim) a.outer *= shape[size_t(d)];
    if (d > dim) a.inner *= shape[size_t(d)];
  }
  a.n = shape.empty() ? 1 : shape[size_t(dim)];
  return a;
}

std::string op_time_key(const char* name,
                        const std::vector<std::pair<std::string, Dims>>& operands) {
  std::string key = name;
  for (const auto& [dtype, shape] : operands) {
    key += " " + dtype + "[";
    for (size_t i = 0; i < shape.size(); ++i) key += (i ? "," : "") + std::to_string(shape[i]);
    key += "]";
  }
  return key;
}

std::vector<TensorChunk> tensor_chunks(const std::vector<int64_t>& sizes, int64_t chunk) {
  std::vector<TensorChunk> out;
  for (size_t t = 0; t < sizes.size(); ++t)
    for (int64_t start = 0; start < sizes[t]; start += chunk) out.push_back({int32_t(t), start});
  return out;
}

int64_t attention_ds_images(int64_t images, int64_t heads, int64_t n, int64_t ld) {
  const int64_t per_image = std::max<int64_t>(heads * n * ld * 2, 1);
  return std::clamp<int64_t>(kAttentionDsBytes / per_image, 1, std::max<int64_t>(images, 1));
}

namespace {
std::atomic<FlashKernels>& flash_kernel_choice() {
  static std::atomic<FlashKernels> k{[] {
    const char* v = std::getenv("SCION_CUDA_FLASH");
    return v != nullptr && std::string(v) == "wmma" ? FlashKernels::wmma : FlashKernels::mma;
  }()};
  return k;
}
}  // namespace

FlashKernels flash_kernels() {
  return flash_kernel_choice().load();
}

void set_flash_kernels(FlashKernels k) {
  flash_kernel_choice().store(k);
}

namespace {
std::atomic<NormKernels>& norm_kernel_choice() {
  static std::atomic<NormKernels> k{[] {
    const char* v = std::getenv("SCION_CUDA_NORM");
    return v != nullptr && std::string(v) == "warp" ? NormKernels::warp : NormKernels::rows;
  }()};
  return k;
}
}  // namespace

NormKernels norm_kernels() {
  return norm_kernel_choice().load();
}

void set_norm_kernels(NormKernels k) {
  norm_kernel_choice().store(k);
}

NormRowsPlan plan_norm_rows(int64_t d) {
  if (d <= 0 || d % 4 != 0 || d > 1024) return {};
  const int64_t vectors = d / 4;
  int lanes = 1;
  while (lanes < 32 && lanes * 2 <= vectors) lanes *= 2;
  const int64_t need = (vectors + lanes - 1) / lanes;
  return {lanes, need <= 2 ? 2 : need <= 4 ? 4 : 8};
}

int64_t norm_rows_blocks(int64_t rows, int lanes, int multiprocessors, int resident) {
  const int64_t per_block = 256 / lanes;  // norm_rows.h's kThreads / lanes groups
  const int64_t wanted = (rows + per_block - 1) / per_block;
  const int64_t most = int64_t(std::max(multiprocessors, 1)) * std::max(resident, 1);
  return std::max<int64_t>(1, std::min(wanted, most));
}

int vector_width(int64_t n, std::initializer_list<std::pair<const void*, size_t>> operands) {
  size_t widest = 1;
  for (const auto& [p, size] : operands) widest = std::max(widest, size);
  const int width = int(std::max<size_t>(16 / widest, 1));
  if (width == 1 || n < width) return 1;
  for (const auto& [p, size] : operands)
    if (reinterpret_cast<uintptr_t>(p) % (size * size_t(width)) != 0) return 1;
  return width;
}

Launch launch_1d(int64_t n, int multiprocessors, unsigned threads) {
  Launch l;
  l.threads = threads;
  const int64_t want = (std::max<int64_t>(n, 1) + threads - 1) / threads;
  // Enough blocks to fill every multiprocessor several times; larger work loops (grid-stride).
  l.blocks = unsigned(std::min<int64_t>(want, int64_t(multiprocessors) * 32));
  return l;
}

MatrixLayout matrix_layout(int64_t rows, int64_t cols, int64_t rs, int64_t cs,
                           int64_t batch_stride) {
  MatrixLayout l;
  l.rows = rows;
  l.cols = cols;
  l.batch_stride = batch_stride;
  if (cs == 1 || cols == 1) {  // row-major: each row's elements adjacent
    l.ld = rows == 1 ? std::max<int64_t>(cols, 1) : rs;
    if (l.ld >= std::max<int64_t>(cols, 1)) {
      l.ok = true;
      return l;
    }
  }
  if (rs == 1 || rows == 1) {  // column-major: a transposed row-major matrix
    l.transposed = true;
    l.ld = cols == 1 ? std::max<int64_t>(rows, 1) : cs;
    l.ok = l.ld >= std::max<int64_t>(rows, 1);
    return l;
  }
  return l;
}

GemmPlan plan_gemm(int64_t batch, int64_t m, int64_t n, int64_t k, const MatrixLayout& a,
                   const MatrixLayout& b, int64_t ldc, int64_t stride_c) {
  GemmPlan p;
  p.batch = batch;
  p.m = m;
  p.n = n;
  p.k = k;
  p.a = a;
  p.b = b;
  p.ldc = ldc;
  p.stride_c = stride_c;
  // Column-major C^T (n x m) = B^T (n x k) A^T (k x m). B's memory read column-major is B^T when
  // B is row-major (no transpose) and B when B is stored transposed (transpose it back).
  p.lt_trans_first = b.transposed;
  p.lt_first_rows = b.transposed ? k : n;
  p.lt_first_cols = b.transposed ? n : k;
  p.lt_trans_second = a.transposed;
  p.lt_second_rows = a.transposed ? m : k;
  p.lt_second_cols = a.transposed ? k : m;
  return p;
}

SplitK plan_split_k(int64_t m, int64_t n, int64_t k, int multiprocessors) {
  SplitK s;
  const int64_t tiles = ((m + 127) / 128) * ((n + 127) / 128), sms = multiprocessors;
  if (tiles * 2 > sms || k < 4096 || k < 4 * std::max(m, n)) return s;
  const int64_t chunks =
      std::max<int64_t>(2, std::min<int64_t>((2 * sms + tiles - 1) / tiles, k / 1024));
  const int64_t kc = k / chunks / 64 * 64;
  if (kc == 0) return s;
  s.chunks = chunks;
  s.kc = kc;
  s.rest = k - chunks * kc;
  return s;
}

ConvDescriptors conv_descriptors(const Dims& x, const Dims& w, const Dims& y, int64_t stride_h,
                                 int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t dil_h,
                                 int64_t dil_w, int64_t groups, bool channels_last) {
  auto strides_of = [&](const Dims& s) {
    const int n = int(s[0]), c = int(s[1]), h = int(s[2]), wd = int(s[3]);
    (void)n;
    if (channels_last) return std::array<int, 4>{h * wd * c, 1, wd * c, c};
    return std::array<int, 4>{c * h * wd, h * wd, wd, 1};
  };
  ConvDescriptors d;
  for (int i = 0; i < 4; ++i) {
    d.x_dims[size_t(i)] = int(x[size_t(i)]);
    d.y_dims[size_t(i)] = int(y[size_t(i)]);
    d.w_dims[size_t(i)] = int(w[size_t(i)]);
  }
  d.x_strides = strides_of(x);
  d.y_strides = strides_of(y);
  d.w_nhwc = channels_last;
  d.pad = {int(pad_h), int(pad_w)};
  d.stride = {int(stride_h), int(stride_w)};
  d.dilation = {int(dil_h), int(dil_w)};
  d.groups = int(groups);
  return d;
}

size_t pinned_round_size(size_t bytes) {
  constexpr size_t kSmall = 512, kLarge = size_t(2) << 20, kSmallLimit = size_t(1) << 20;
  if (bytes == 0) bytes = 1;
  if (bytes <= kSmallLimit) return (bytes + kSmall - 1) / kSmall * kSmall;
  return (bytes + kLarge - 1) / kLarge * kLarge;
}

PinnedBlocks::Block& PinnedBlocks::add(void* base, size_t size) {
  Block& b = live_[reinterpret_cast<uintptr_t>(base)];
  b.base = base;
  b.size = size;
  return b;
}

PinnedBlocks::Block* PinnedBlocks::find(const void* p) {
  const auto at = reinterpret_cast<uintptr_t>(p);
  auto it = live_.upper_bound(at);  // the first block starting after p
  if (it == live_.begin()) return nullptr;
  --it;
  return at < it->first + it->second.size ? &it->second : nullptr;
}

void PinnedBlocks::release(void* base) {
  auto it = live_.find(reinterpret_cast<uintptr_t>(base));
  if (it == live_.end()) throw std::invalid_argument("PinnedBlocks::release: not a live block");
  free_[it->second.size].push_back(std::move(it->second));
  live_.erase(it);
}

PinnedBlocks::Block* PinnedBlocks::reuse(size_t size, const std::function<bool(void*)>& done) {
  auto list = free_.find(size);
  if (list == free_.end()) return nullptr;
  std::vector<Block>& blocks = list->second;
  for (size_t i = 0; i < blocks.size(); ++i) {
    bool ready = true;
    for (const auto& e : blocks[i].events) ready = ready && done(e.second);
    if (!ready) continue;
    Block b = std::move(blocks[i]);
    blocks.erase(blocks.begin() + std::ptrdiff_t(i));
    Block& live = live_[reinterpret_cast<uintptr_t>(b.base)];
    live = std::move(b);
    return &live;
  }
  return nullptr;
}

size_t PinnedBlocks::free_blocks() const {
  size_t n = 0;
  for (const auto& [size, blocks] : free_) n += blocks.size();
  return n;
}

}  // namespace scion::cuda
