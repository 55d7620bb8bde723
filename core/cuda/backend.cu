// The CUDA backend (one instance per device): the caching device allocator, transfers between
// host and device, and the Backend interface over the kernels of the other .cu files. Every call
// first makes its device current; all work goes to that device's one stream, in order.
#include <cublasLt.h>
#include <cudnn.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "core/cuda/block_pool.h"
#include "core/cuda/common.cuh"
#include "core/cuda/cublaslt_loader.h"
#include "core/ops.h"

namespace scion::cuda {

void fail(const std::string& what, const std::string& why) {
  throw Error("CUDA: " + what + ": " + why);
}

void bad_dtype(const char* op, DType dt) {
  throw InputError(std::string(op) + ": dtype " + dtype_name(dt) + " is not supported on CUDA");
}

DevPlan dev_plan(const StridedPlan& p) {
  DevPlan d{};
  d.ndim = p.ndim;
  for (int i = 0; i < p.ndim; ++i) {
    d.sizes[i] = p.sizes[size_t(i)];
    for (int k = 0; k < p.nargs; ++k) d.strides[k][i] = p.strides[size_t(k)][size_t(i)];
  }
  return d;
}

DevPlan32 dev_plan32(const StridedPlan& p) {
  DevPlan32 d{};
  d.ndim = p.ndim;
  for (int i = 0; i < p.ndim; ++i) {
    d.sizes[i] = uint32_t(p.sizes[size_t(i)]);
    for (int k = 0; k < p.nargs; ++k) d.strides[k][i] = int32_t(p.strides[size_t(k)][size_t(i)]);
  }
  return d;
}

Operand operand(const Tensor& t) {
  return Operand{t.shape(), t.strides()};
}

struct DeviceState {
  int sms = 132;
  cudaStream_t stream = nullptr;
  cublasLtHandle_t lt = nullptr;
  cudnnHandle_t dnn = nullptr;
  std::mutex mu;  // the allocator's pool
  // The caching allocator's blocks and segments (block_pool.h); segments from cudaMalloc on the
  // current device, which every caller of allocate() has set (SCION_CALL).
  BlockPool pool{[](size_t bytes) -> void* {
                   void* p = nullptr;
                   if (cudaMalloc(&p, bytes) == cudaSuccess) return p;
                   cudaGetLastError();  // clear the error: the caller may free the cache, retry
                   return nullptr;
                 },
                 [](void* p) { cudaFree(p); }};
  Tensor work;  // the GEMMs' workspace, from `pool` (declared after it: released before it)
};

namespace {

int current_device() {
  int d = 0;
  SCION_CUDA_CHECK(cudaGetDevice(&d));
  return d;
}

DeviceState& state_of(int index) {
  static std::mutex mu;
  static std::vector<std::unique_ptr<DeviceState>>* states =
      new std::vector<std::unique_ptr<DeviceState>>();  // never destroyed (see CachingAllocator)
  std::lock_guard<std::mutex> lock(mu);
  if (states->size() <= size_t(index)) states->resize(size_t(index) + 1);
  auto& s = (*states)[size_t(index)];
  if (!s) {
    s = std::make_unique<DeviceState>();
    cudaDeviceProp p{};
    SCION_CUDA_CHECK(cudaGetDeviceProperties(&p, index));
    s->sms = p.multiProcessorCount;
    // The legacy default stream: host<->device copies and every kernel stay in one order.
    s->stream = nullptr;
  }
  return *s;
}

}  // namespace

DeviceState& state() {
  return state_of(current_device());
}
int state_index() {
  return current_device();
}
DeviceState& state_of_index(int index) {
  return state_of(index);
}
int device_count();  // runtime.cu
int multiprocessors() {
  return state().sms;
}
cudaStream_t stream() {
  return state().stream;
}

void* blas_lt_handle() {
  DeviceState& s = state();
  if (!s.lt) {
    const cublasStatus_t status = cublasLtCreate(&s.lt);
    if (status != CUBLAS_STATUS_SUCCESS)
      fail("cublasLtCreate", cublaslt_load_error().empty()
                                 ? "cuBLASLt status " + std::to_string(int(status))
                                 : "cannot open cuBLASLt: " + cublaslt_load_error());
  }
  return s.lt;
}

void* dnn_handle() {
  DeviceState& s = state();
  if (!s.dnn) {
    cudnnStatus_t st = cudnnCreate(&s.dnn);
    if (st != CUDNN_STATUS_SUCCESS) fail("cudnnCreate", cudnnGetErrorString(st));
    cudnnSetStream(s.dnn, s.stream);
  }
  return s.dnn;
}

void* workspace(size_t bytes) {
  DeviceState& s = state();
  if (!s.work.defined() || size_t(s.work.numel()) < bytes)
    s.work = dev_empty({int64_t(bytes)}, DType::u8);
  return s.work.raw_data();
}

Tensor dev_empty(const Shape& shape, DType dt) {
  return empty(shape, dt, Device{DeviceType::cuda, current_device()});
}

namespace {

// Makes `index` the current device for the scope of one backend call.
class DeviceGuard {
 public:
  explicit DeviceGuard(int index) {
    SCION_CUDA_CHECK(cudaGetDevice(&previous_));
    if (previous_ != index) SCION_CUDA_CHECK(cudaSetDevice(index));
  }
  ~DeviceGuard() {
    int now = 0;
    if (cudaGetDevice(&now) == cudaSuccess && now != previous_) cudaSetDevice(previous_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
};

// With SCION_CUDA_OP_TIMES set, each outermost backend call is bracketed by two CUDA events and
// a table of GPU time per kernel kind is printed to stderr at exit: a profile without a profiler.
// Events do not stall the pipeline, so a call's time is the GPU's time from its first to its last
// kernel (including any wait for the host in between, when the GPU runs ahead of it). With
// SCION_CUDA_OP_TIMES=shapes a second table splits each kind by its main operands' dtypes and
// shapes (op_time_key), so a call's bytes and FLOPs, hence its share of the GPU's peak, can be
// worked out. Each table also gives the host's time per call inside the backend (plans, the
// allocator, launches, cuBLASLt and cuDNN calls): what the host spends queueing a step there, the
// rest of bench_models' host_ms being the framework's (autograd, autocast, shapes).
class Call : public DeviceGuard {
 public:
  Call(int index, const char* name, std::initializer_list<const Tensor*> operands = {})
      : DeviceGuard(index), name_(name) {
    if (!enabled() || depth()++ > 0) return;
    if (by_shapes()) {
      std::vector<std::pair<std::string, Dims>> ops;
      for (const Tensor* t : operands)
        if (t->defined()) ops.emplace_back(dtype_name(t->dtype()), Dims(t->shape()));
      key_ = op_time_key(name, ops);
    }
    cudaEventCreate(&start_);
    cudaEventCreate(&end_);
    cudaEventRecord(start_, stream());
    timing_ = true;
    host_start_ = std::chrono::steady_clock::now();
  }
  ~Call() {
    if (!enabled()) return;
    --depth();
    if (!timing_) return;
    const double host_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - host_start_)
            .count();
    cudaEventRecord(end_, stream());
    std::lock_guard<std::mutex> lock(mu());
    pending().push_back({name_, std::move(key_), start_, end_, host_ms});
    if (pending().size() >= 4096) fold();
    static const bool registered = [] { return std::atexit(print) == 0; }();
    (void)registered;  // registered after the CUDA runtime's own exit handler: runs before it
  }

 private:
  struct Pending {
    const char* name;
    std::string key;  // by_shapes(): name and operands
    cudaEvent_t start, end;
    double host_ms;
  };
  static bool enabled() {
    static const bool on = std::getenv("SCION_CUDA_OP_TIMES") != nullptr;
    return on;
  }
  static bool by_shapes() {
    static const bool on = enabled() && std::string(std::getenv("SCION_CUDA_OP_TIMES")) == "shapes";
    return on;
  }
  static int& depth() {
    thread_local int d = 0;
    return d;
  }
  static std::mutex& mu() {
    static std::mutex m;
    return m;
  }
  static std::vector<Pending>& pending() {
    static auto* p = new std::vector<Pending>();
    return *p;
  }
  struct Entry {
    double ms = 0, host_ms = 0;  // GPU and host
    int64_t calls = 0;
  };
  using Table = std::map<std::string, Entry>;
  static Table& table() {
    static auto* t = new Table();
    return *t;
  }
  static Table& shape_table() {
    static auto* t = new Table();
    return *t;
  }
  static void fold() {  // with mu() held
    for (const Pending& p : pending()) {
      float ms = 0;
      cudaEventSynchronize(p.end);
      cudaEventElapsedTime(&ms, p.start, p.end);
      for (Table* t : {&table(), &shape_table()}) {
        if (t == &shape_table() && p.key.empty()) continue;
        Entry& e = (*t)[t == &table() ? std::string(p.name) : p.key];
        e.ms += ms;
        e.host_ms += p.host_ms;
        e.calls += 1;
      }
      cudaEventDestroy(p.start);
      cudaEventDestroy(p.end);
    }
    pending().clear();
  }
  static void print_table(const Table& t, const char* title, int width) {
    std::vector<std::pair<double, std::string>> rows;
    double total = 0;
    double host_total = 0;
    for (auto& [name, e] : t) {
      rows.emplace_back(e.ms, name);
      total += e.ms;
      host_total += e.host_ms;
    }
    std::sort(rows.rbegin(), rows.rend());
    std::fprintf(stderr, "%s\n", title);
    for (auto& [ms, name] : rows) {
      const Entry& e = t.at(name);
      const double calls = double(std::max<int64_t>(e.calls, 1));
      std::fprintf(stderr,
                   "  %-*s %10.2f ms %5.1f%% %8lld calls %10.1f us/call %8.1f host us/call\n",
                   width, name.c_str(), ms, 100 * ms / std::max(total, 1e-9), (long long)e.calls,
                   1000 * ms / calls, 1000 * e.host_ms / calls);
    }
    std::fprintf(stderr, "  host time inside backend calls: %.2f ms\n", host_total);
  }
  static void print() {
    std::lock_guard<std::mutex> lock(mu());
    fold();
    print_table(table(), "CUDA backend GPU time per kernel kind (SCION_CUDA_OP_TIMES):", 24);
    if (by_shapes())
      print_table(shape_table(), "CUDA backend GPU time per kernel kind and operands:", 72);
  }

 public:
  static void reset() {
    if (!enabled()) return;
    std::lock_guard<std::mutex> lock(mu());
    fold();
    table().clear();
    shape_table().clear();
  }

 private:
  const char* name_;
  std::string key_;
  bool timing_ = false;
  cudaEvent_t start_ = nullptr, end_ = nullptr;
  std::chrono::steady_clock::time_point host_start_;
};
#define SCION_CALL Call call_guard(index_, __func__)
// The same, naming the call's main operands for SCION_CUDA_OP_TIMES=shapes.
#define SCION_CALL_ON(...) Call call_guard(index_, __func__, {__VA_ARGS__})

// A contiguous host tensor with t's values (t itself when already contiguous).
Tensor host_contiguous(const Tensor& t) {
  return t.is_contiguous() ? t : t.contiguous();
}

bool same_layout(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() && a.is_contiguous() && b.is_contiguous();
}

// ---- pinned host memory ------------------------------------------------------------------------
// Page-locked blocks from cudaHostAlloc, kept for reuse (PinnedBlocks in plan.h): the data
// loader's batches when training on a GPU, and staging blocks for copies from ordinary memory.
// A host->device copy from a pinned block is queued and returns at once; the block's event on the
// copying device, recorded after the copy, keeps it from being handed out again too early.
struct PinnedPool {
  std::mutex mu;
  PinnedBlocks blocks;
};
PinnedPool& pinned_pool() {
  static auto* pool = new PinnedPool();  // never destroyed (as the device states)
  return *pool;
}

bool event_done(void* e) {
  return cudaEventQuery(static_cast<cudaEvent_t>(e)) != cudaErrorNotReady;
}

void* pinned_allocate(size_t bytes) {
  if (device_count() == 0) return nullptr;
  const size_t size = pinned_round_size(bytes);
  PinnedPool& pool = pinned_pool();
  {
    std::lock_guard<std::mutex> lock(pool.mu);
    if (PinnedBlocks::Block* b = pool.blocks.reuse(size, event_done)) return b->base;
  }
  void* p = nullptr;
  if (cudaHostAlloc(&p, size, cudaHostAllocPortable) != cudaSuccess) {
    cudaGetLastError();
    return nullptr;
  }
  std::lock_guard<std::mutex> lock(pool.mu);
  pool.blocks.add(p, size);
  return p;
}

void pinned_release(void* p) {
  PinnedPool& pool = pinned_pool();
  std::lock_guard<std::mutex> lock(pool.mu);
  pool.blocks.release(p);
}

// Records block b's event for `device` on that device's stream (the current device).
void record_use(PinnedBlocks::Block& b, int device) {
  auto it = std::find_if(b.events.begin(), b.events.end(),
                         [&](const auto& e) { return e.first == device; });
  if (it == b.events.end()) {
    cudaEvent_t e = nullptr;
    SCION_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    b.events.emplace_back(device, e);
    it = b.events.end() - 1;
  }
  SCION_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(it->second), stream()));
}

// Queues a host->device copy of `bytes` contiguous bytes on the current device's stream without
// waiting for it: straight from pinned memory, else through a pinned staging block (the source
// may change or be freed as soon as this returns). Without pinned memory: a synchronous copy.
void copy_to_device(void* dst, const void* src, size_t bytes, int device) {
  PinnedPool& pool = pinned_pool();
  {
    std::lock_guard<std::mutex> lock(pool.mu);
    if (PinnedBlocks::Block* b = pool.blocks.find(src)) {
      SCION_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream()));
      record_use(*b, device);
      return;
    }
  }
  void* staging = pinned_allocate(bytes);
  if (!staging) {
    SCION_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream()));
    SCION_CUDA_CHECK(cudaStreamSynchronize(stream()));  // src may be freed on return
    return;
  }
  std::memcpy(staging, src, bytes);
  {
    std::lock_guard<std::mutex> lock(pool.mu);
    SCION_CUDA_CHECK(cudaMemcpyAsync(dst, staging, bytes, cudaMemcpyHostToDevice, stream()));
    record_use(*pool.blocks.find(staging), device);
    pool.blocks.release(staging);
  }
}

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int index) : index_(index), name_("cuda:" + std::to_string(index)) {}
  const char* name() const override { return name_.c_str(); }

  // The caching allocator (block_pool.h: best-fit blocks split from cudaMalloc'd segments, as
  // PyTorch's). Reuse is safe without events because every kernel runs on the device's one
  // stream: a block freed after a kernel was queued is only handed to kernels queued later. When
  // the driver has no memory left, the queued work is waited for, the segments with no live block
  // go back to the driver, and the request is retried.
  void* allocate(size_t bytes) override {
    SCION_CALL;
    DeviceState& s = state_of(index_);
    std::lock_guard<std::mutex> lock(s.mu);
    if (void* p = s.pool.allocate(bytes)) return p;
    SCION_CUDA_CHECK(cudaDeviceSynchronize());
    s.pool.release_cached();
    if (void* p = s.pool.allocate(bytes)) return p;
    const BlockPool::Stats& st = s.pool.stats();
    throw Error("CUDA: out of memory on " + name_ + " allocating " +
                std::to_string(BlockPool::round_size(bytes)) + " bytes (" +
                std::to_string(st.allocated >> 20) + " MiB allocated by tensors, " +
                std::to_string(st.reserved >> 20) + " MiB reserved)");
  }
  void release(void* p, size_t) override {
    DeviceState& s = state_of(index_);
    std::lock_guard<std::mutex> lock(s.mu);
    s.pool.release(p);
  }

  // Transfers: contiguous same-dtype copies go straight through cudaMemcpyAsync (host->device
  // without waiting, see copy_to_device; device->host waits, the caller reads the data); anything
  // else (strides, broadcasting, dtype conversion) is done on the device around a contiguous
  // transfer.
  void copy(const Tensor& dst, const Tensor& src) override {
    SCION_CALL_ON(&dst, &src);
    const bool dst_dev = !dst.device().is_host(), src_dev = !src.device().is_host();
    if (dst_dev && src_dev) return copy_kernel(dst, src);
    if (dst_dev) {  // host -> device
      Tensor hs = host_contiguous(src);
      if (same_layout(dst, hs))
        return copy_to_device(dst.raw_data(), hs.raw_data(),
                              size_t(hs.numel()) * dtype_size(hs.dtype()), index_);
      Tensor ds = dev_empty(hs.shape(), hs.dtype());
      copy(ds, hs);
      return copy_kernel(dst, ds);
    }
    // device -> host
    if (same_layout(dst, src)) {
      SCION_CUDA_CHECK(cudaMemcpyAsync(dst.raw_data(), src.raw_data(),
                                       size_t(src.numel()) * dtype_size(src.dtype()),
                                       cudaMemcpyDeviceToHost, stream()));
      SCION_CUDA_CHECK(cudaStreamSynchronize(stream()));
      return;
    }
    Tensor ds = dev_empty(dst.shape(), dst.dtype());
    copy_kernel(ds, src);
    Tensor hs = empty(dst.shape(), dst.dtype());
    copy(hs, ds);
    backend(dst.device()).copy(dst, hs);
  }
  void fill(const Tensor& dst, double value) override {
    SCION_CALL;
    fill_kernel(dst, value);
  }
  void add_scaled(const Tensor& dst, const Tensor& src, double alpha) override {
    SCION_CALL;
    add_scaled_kernel(dst, src, alpha);
  }
  void scale(const Tensor& dst, double value) override {
    SCION_CALL;
    scale_kernel(dst, value);
  }
  void random_fill(const Tensor& t, const RandomFill& r) override {
    SCION_CALL;
    random_fill_kernel(t, r);
  }

  Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b) override {
    SCION_CALL_ON(&a, &b);
    return binary_kernel(op, a, b);
  }
  Tensor unary(UnaryOp op, const Tensor& x) override {
    SCION_CALL_ON(&x);
    return unary_kernel(op, x);
  }
  Tensor gelu_backward(const Tensor& gr, const Tensor& x, bool tanh_form) override {
    SCION_CALL_ON(&gr, &x);
    return gelu_backward_kernel(gr, x, tanh_form);
  }
  Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) override {
    SCION_CALL;
    return where_kernel(cond, a, b);
  }
  void layer_scale_rows(const Tensor& x, const Tensor& t, const Tensor& s,
                        const Tensor& out) override {
    SCION_CALL_ON(&x, &t);
    layer_scale_rows_kernel(x, t, s, out);
  }
  void layer_scale_rows_backward(const Tensor& g, const Tensor& t, const Tensor& s,
                                 const Tensor& dt, const Tensor& ds) override {
    SCION_CALL_ON(&g, &t);
    layer_scale_rows_backward_kernel(g, t, s, dt, ds);
  }

  Tensor index_select(const Tensor& src, int64_t dim, const std::vector<int64_t>& idx,
                      const Shape& out_shape) override {
    SCION_CALL;
    return index_select_kernel(src, dim, idx, out_shape);
  }
  Tensor index_add(const Tensor& src, int64_t dim, const std::vector<int64_t>& idx,
                   const Shape& out_shape) override {
    SCION_CALL;
    return index_add_kernel(src, dim, idx, out_shape);
  }
  Tensor gather(const Tensor& src, int64_t dim, const Tensor& index) override {
    SCION_CALL;
    return gather_kernel(src, dim, index);
  }
  Tensor scatter_add(const Tensor& src, int64_t dim, const Tensor& index,
                     const Shape& out_shape) override {
    SCION_CALL;
    return scatter_add_kernel(src, dim, index, out_shape);
  }

  Tensor reduce_sum(const Tensor& x, const Shape& dims, bool keepdim) override {
    SCION_CALL_ON(&x);
    return reduce_sum_kernel(x, dims, keepdim);
  }
  void reduce_max(const Tensor& x, int64_t dim, bool keepdim, Tensor& values,
                  Tensor& indices) override {
    SCION_CALL;
    reduce_max_kernel(x, dim, keepdim, values, indices);
  }

  void matmul(const Tensor& a, const Tensor& b, const Tensor& bias, const Tensor& out) override {
    SCION_CALL_ON(&a, &b);
    matmul_kernel(a, b, bias, out);
  }

  void conv2d_forward(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& y,
                      const ConvShape& cs) override {
    SCION_CALL_ON(&x, &w);
    conv2d_forward_kernel(x, w, b, y, cs);
  }
  void conv2d_backward_data(const Tensor& dy, const Tensor& w, const Tensor& dx,
                            const ConvShape& cs) override {
    SCION_CALL_ON(&dy, &w);
    conv2d_backward_data_kernel(dy, w, dx, cs);
  }
  void conv2d_backward_weights(const Tensor& x, const Tensor& dy, const Tensor& dw,
                               const ConvShape& cs) override {
    SCION_CALL_ON(&x, &dw);
    conv2d_backward_weights_kernel(x, dy, dw, cs);
  }

  void layer_norm_forward(const Tensor& x, const Tensor& w, const Tensor& b, double eps, int64_t d,
                          DType out, Tensor& y, Tensor& mean, Tensor& rstd) override {
    SCION_CALL_ON(&x);
    layer_norm_forward_kernel(x, w, b, eps, d, out, y, mean, rstd);
  }
  void layer_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& w, const Tensor& mean,
                           const Tensor& rstd, int64_t d, Tensor& dx, Tensor& dw,
                           Tensor& db) override {
    SCION_CALL_ON(&dy, &x);
    layer_norm_backward_kernel(dy, x, w, mean, rstd, d, dx, dw, db);
  }

  void softmax_forward(bool log, int64_t dim, const Tensor& x, const Tensor& y) override {
    SCION_CALL;
    softmax_forward_kernel(log, dim, x, y);
  }
  void softmax_backward(bool log, int64_t dim, const Tensor& y, const Tensor& dy,
                        const Tensor& dx) override {
    SCION_CALL;
    softmax_backward_kernel(log, dim, y, dy, dx);
  }

  void attention_forward(const Tensor& qkv, int64_t heads, double scale, const Tensor& out,
                         const Tensor& lse) override {
    SCION_CALL_ON(&qkv);
    attention_forward_kernel(qkv, heads, scale, out, lse);
  }
  void attention_backward(const Tensor& qkv, const Tensor& out, const Tensor& dout,
                          const Tensor& lse, int64_t heads, double scale,
                          const Tensor& dqkv) override {
    SCION_CALL_ON(&qkv);
    attention_backward_kernel(qkv, out, dout, lse, heads, scale, dqkv);
  }

  Tensor cross_entropy(const Tensor& logits, const Tensor& q, const Tensor& lp) override {
    SCION_CALL_ON(&logits);
    return cross_entropy_kernel(logits, q, lp);
  }

  void adamw_step(const Tensor& p, const Tensor& gr, const Tensor& m, const Tensor& v,
                  const OptimStep& s) override {
    SCION_CALL_ON(&p);
    adamw_kernel(p, gr, m, v, s);
  }
  void sgd_step(const Tensor& p, const Tensor& gr, const Tensor& m, const OptimStep& s) override {
    SCION_CALL;
    sgd_kernel(p, gr, m, s);
  }
  void adamw_steps(const std::vector<AdamWParam>& params, const OptimStep& s) override {
    SCION_CALL;
    adamw_multi_kernel(params, s);
  }
  void add_sum_squares(const Tensor& x, const Tensor& total) override {
    SCION_CALL;
    add_sum_squares_kernel(x, total);
  }
  void scale_by(const Tensor& dst, const Tensor& s) override {
    SCION_CALL;
    scale_by_kernel(dst, s);
  }
  void add_sums_of_squares(const std::vector<Tensor>& xs, const Tensor& total) override {
    SCION_CALL;
    add_sums_of_squares_kernel(xs, total);
  }
  void copy_many(const std::vector<Tensor>& dsts, const std::vector<Tensor>& srcs) override {
    SCION_CALL;
    copy_many_kernel(dsts, srcs);
  }
  void scale_all_by(const std::vector<Tensor>& dsts, const Tensor& s) override {
    SCION_CALL;
    scale_all_by_kernel(dsts, s);
  }
  double sum_squares(const Tensor& x) override {
    SCION_CALL;
    return sum_squares_kernel(x);
  }

 private:
  int index_;
  std::string name_;
};

}  // namespace

Backend& backend(int index) {
  static std::mutex mu;
  static auto* backends = new std::vector<std::unique_ptr<CudaBackend>>();
  std::lock_guard<std::mutex> lock(mu);
  if (backends->size() <= size_t(index)) backends->resize(size_t(index) + 1);
  auto& b = (*backends)[size_t(index)];
  if (!b) b = std::make_unique<CudaBackend>(index);
  return *b;
}

}  // namespace scion::cuda

namespace scion {
CudaMemoryStats cuda_memory_stats(int index) {
  if (index >= cuda::device_count()) return {};
  cuda::DeviceState& s = cuda::state_of_index(index);
  std::lock_guard<std::mutex> lock(s.mu);
  const cuda::BlockPool::Stats& st = s.pool.stats();
  return {int64_t(st.allocated), int64_t(st.peak_allocated), int64_t(st.reserved),
          int64_t(st.peak_reserved)};
}
void cuda_reset_peak_memory(int index) {
  if (index >= cuda::device_count()) return;
  cuda::DeviceState& s = cuda::state_of_index(index);
  std::lock_guard<std::mutex> lock(s.mu);
  s.pool.reset_peak();
}
void cuda_reset_op_times() {
  cuda::Call::reset();
}
void* cuda_pinned_allocate(size_t bytes) {
  return cuda::pinned_allocate(bytes);
}
void cuda_pinned_release(void* p) {
  cuda::pinned_release(p);
}
bool cuda_is_pinned(const void* p) {
  if (cuda::device_count() == 0) return false;
  cuda::PinnedPool& pool = cuda::pinned_pool();
  std::lock_guard<std::mutex> lock(pool.mu);
  return pool.blocks.find(p) != nullptr;
}
}  // namespace scion
