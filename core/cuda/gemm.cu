// Matrix products through cuBLASLt: f32 with f32 compute (TF32 off, so f32 results keep the f32
// tolerances), bf16 operands with f32 accumulation, f64; the bias added by the GEMM's epilogue.
// Row-major products are run as cuBLASLt's column-major C^T = B^T A^T (plan_gemm in plan.h).
#include <cublasLt.h>

#include <map>
#include <mutex>

#include "core/cuda/common.cuh"
#include "core/ops.h"

namespace scion::cuda {

namespace {

void check_lt(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) fail(what, "cuBLASLt status " + std::to_string(int(s)));
}

cudaDataType_t data_type(DType dt) {
  switch (dt) {
    case DType::f32:
      return CUDA_R_32F;
    case DType::bf16:
      return CUDA_R_16BF;
    case DType::f64:
      return CUDA_R_64F;
    default:
      throw InputError(std::string("matmul on CUDA: unsupported dtype ") + dtype_name(dt));
  }
}

// The largest power of two (at most 256) dividing a pointer: cuBLASLt's heuristic must only pick
// kernels whose vector loads that alignment allows (views can start anywhere).
uint32_t alignment(const void* p) {
  uintptr_t v = reinterpret_cast<uintptr_t>(p);
  uint32_t a = 256;
  while (a > 1 && v % a != 0) a /= 2;
  return a;
}

struct LayoutGuard {
  cublasLtMatrixLayout_t l = nullptr;
  LayoutGuard(cudaDataType_t t, int64_t rows, int64_t cols, int64_t ld, int64_t batch,
              int64_t stride) {
    check_lt(cublasLtMatrixLayoutCreate(&l, t, uint64_t(rows), uint64_t(cols), ld),
             "cublasLtMatrixLayoutCreate");
    if (batch > 1) {
      int32_t b = int32_t(batch);
      cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &b, sizeof(b));
      cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride,
                                       sizeof(stride));
    }
  }
  ~LayoutGuard() { cublasLtMatrixLayoutDestroy(l); }
};

constexpr size_t kWorkspace = size_t(32) << 20;

// Runs the GEMM; false when cuBLASLt has no algorithm for it with the bias epilogue.
bool run(const Gemm& g, bool use_bias) {
  const GemmPlan p = plan_gemm(g.batch, g.m, g.n, g.k, g.la, g.lb, g.ldc, g.stride_c);
  const bool f64 = g.in == DType::f64;
  cublasLtMatmulDesc_t desc = nullptr;
  check_lt(cublasLtMatmulDescCreate(&desc, f64 ? CUBLAS_COMPUTE_64F : CUBLAS_COMPUTE_32F,
                                    f64 ? CUDA_R_64F : CUDA_R_32F),
           "cublasLtMatmulDescCreate");
  cublasOperation_t ta = p.lt_trans_first ? CUBLAS_OP_T : CUBLAS_OP_N,
                    tb = p.lt_trans_second ? CUBLAS_OP_T : CUBLAS_OP_N;
  cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta));
  cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb));
  if (use_bias) {
    cublasLtEpilogue_t ep = CUBLASLT_EPILOGUE_BIAS;
    cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &ep, sizeof(ep));
    cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &g.bias,
                                   sizeof(g.bias));
    cudaDataType_t bt = data_type(g.out);
    cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof(bt));
  }
  const cudaDataType_t tin = data_type(g.in), tout = data_type(g.out);
  LayoutGuard la(tin, p.lt_first_rows, p.lt_first_cols, g.lb.ld, g.batch, g.lb.batch_stride);
  LayoutGuard lb(tin, p.lt_second_rows, p.lt_second_cols, g.la.ld, g.batch, g.la.batch_stride);
  LayoutGuard lc(tout, g.n, g.m, g.ldc, g.batch, g.stride_c);

  auto handle = static_cast<cublasLtHandle_t>(blas_lt_handle());
  const uint32_t al_a = alignment(g.b), al_b = alignment(g.a), al_c = alignment(g.c);
  // The heuristic's choice, cached per problem (shapes, layouts, dtypes, epilogue, alignments):
  // asking cuBLASLt on every call costs tens of microseconds of host time.
  const std::string key =
      std::to_string(int(g.in)) + "," + std::to_string(int(g.out)) + "," + std::to_string(g.batch) +
      "," + std::to_string(g.m) + "," + std::to_string(g.n) + "," + std::to_string(g.k) + "," +
      std::to_string(g.la.transposed) + std::to_string(g.la.ld) + "," +
      std::to_string(g.la.batch_stride) + "," + std::to_string(g.lb.transposed) +
      std::to_string(g.lb.ld) + "," + std::to_string(g.lb.batch_stride) + "," +
      std::to_string(g.ldc) + "," + std::to_string(g.stride_c) + "," + std::to_string(use_bias) +
      "," + std::to_string(al_a) + "," + std::to_string(al_b) + "," + std::to_string(al_c) + "," +
      std::to_string(state_index());
  static std::mutex mu;
  static std::map<std::string, std::pair<bool, cublasLtMatmulAlgo_t>> cache;
  std::pair<bool, cublasLtMatmulAlgo_t> algo{false, {}};
  bool cached = false;
  {
    std::lock_guard<std::mutex> lock(mu);
    auto it = cache.find(key);
    if (it != cache.end()) algo = it->second, cached = true;
  }
  if (!cached) {
    cublasLtMatmulPreference_t pref = nullptr;
    cublasLtMatmulPreferenceCreate(&pref);
    uint64_t ws = kWorkspace;
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                         sizeof(ws));
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a,
                                         sizeof(al_a));
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b,
                                         sizeof(al_b));
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_c,
                                         sizeof(al_c));
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_c,
                                         sizeof(al_c));
    cublasLtMatmulHeuristicResult_t h{};
    int found = 0;
    cublasStatus_t hs =
        cublasLtMatmulAlgoGetHeuristic(handle, desc, la.l, lb.l, lc.l, lc.l, pref, 1, &h, &found);
    cublasLtMatmulPreferenceDestroy(pref);
    algo = {hs == CUBLAS_STATUS_SUCCESS && found > 0, h.algo};
    std::lock_guard<std::mutex> lock(mu);
    cache[key] = algo;
  }
  if (!algo.first) {
    cublasLtMatmulDescDestroy(desc);
    if (use_bias) return false;
    fail("matmul", "cuBLASLt found no algorithm for " + std::to_string(g.m) + "x" +
                       std::to_string(g.k) + " @ " + std::to_string(g.k) + "x" +
                       std::to_string(g.n) + " (" + dtype_name(g.in) + ")");
  }
  const float a32 = float(g.alpha), b32 = float(g.beta);
  const double a64 = g.alpha, b64 = g.beta;
  const void* alpha = f64 ? static_cast<const void*>(&a64) : static_cast<const void*>(&a32);
  const void* beta = f64 ? static_cast<const void*>(&b64) : static_cast<const void*>(&b32);
  cublasStatus_t s =
      cublasLtMatmul(handle, desc, alpha, g.b, la.l, g.a, lb.l, beta, g.c, lc.l, g.c, lc.l,
                     &algo.second, workspace(kWorkspace), kWorkspace, stream());
  cublasLtMatmulDescDestroy(desc);
  check_lt(s, "cublasLtMatmul");
  return true;
}

// out (rows, n) += bias (n) broadcast, for GEMMs without a bias epilogue.
void add_bias(void* c, DType dt, int64_t rows, int64_t n, int64_t ldc, const void* bias) {
  SCION_DISPATCH_FLOATING(dt, "matmul bias", T, {
    T* cp = static_cast<T*>(c);
    const T* bp = static_cast<const T*>(bias);
    for_index(rows * n, [=] __device__(int64_t e) {
      const int64_t r = e / n, j = e % n;
      store(cp + r * ldc + j, load(cp + r * ldc + j) + load(bp + j));
    });
  });
}

// out (rows x n, ldc) = sum over `parts` f32 slices (rows x n) (+ bias), in slice order.
void sum_parts(const float* part, int64_t parts, int64_t rows, int64_t n, void* c, DType dt,
               int64_t ldc, const void* bias) {
  SCION_DISPATCH_FLOATING(dt, "matmul", T, {
    T* cp = static_cast<T*>(c);
    const T* bp = static_cast<const T*>(bias);
    const int64_t plane = rows * n;
    for_index(plane, [=] __device__(int64_t e) {
      const int64_t r = e / n, j = e % n;
      float s = bp ? float(load(bp + j)) : 0.f;
      for (int64_t z = 0; z < parts; ++z) s += part[z * plane + e];
      store(cp + r * ldc + j, s);
    });
  });
}

// Split-K: a product with few output tiles and a long inner dimension (a weight gradient: a
// 192 x 768 output summed over 50,000 rows of a batch) keeps only a few multiprocessors busy.
// The inner dimension is cut into chunks of kc (a multiple of 64, so every chunk starts aligned),
// computed as one batched GEMM into f32 partial sums (plus one GEMM for the remainder), then
// added in chunk order. Returns false when the product is not of that kind.
bool split_k(const Gemm& g) {
  if (g.batch != 1 || g.in == DType::f64 || g.out == DType::f64) return false;
  const SplitK sk = plan_split_k(g.m, g.n, g.k, multiprocessors());
  if (sk.chunks == 0) return false;
  const int64_t chunks = sk.chunks, kc = sk.kc, rest = sk.rest;
  const int64_t es = int64_t(dtype_size(g.in));
  // Element offsets of chunk z's start in A (m x k) and B (k x n), by layout.
  const int64_t a_step = g.la.transposed ? kc * g.la.ld : kc;
  const int64_t b_step = g.lb.transposed ? kc : kc * g.lb.ld;
  Tensor part = dev_empty({(chunks + (rest > 0)) * g.m * g.n}, DType::f32);
  Gemm s = g;
  s.out = DType::f32;
  s.batch = chunks;
  s.k = kc;
  s.la.batch_stride = a_step;
  s.lb.batch_stride = b_step;
  s.c = part.raw_data();
  s.ldc = g.n;
  s.stride_c = g.m * g.n;
  s.bias = nullptr;
  s.beta = 0;
  run(s, false);
  if (rest > 0) {
    Gemm t = s;
    t.batch = 1;
    t.k = rest;
    t.a = static_cast<const char*>(g.a) + chunks * a_step * es;
    t.b = static_cast<const char*>(g.b) + chunks * b_step * es;
    t.la.batch_stride = 0;
    t.lb.batch_stride = 0;
    t.c = part.data<float>() + chunks * g.m * g.n;
    run(t, false);
  }
  sum_parts(part.data<float>(), chunks + (rest > 0), g.m, g.n, g.c, g.out, g.ldc, g.bias);
  return true;
}

}  // namespace

void gemm(const Gemm& g) {
  if (g.m == 0 || g.n == 0 || g.batch == 0) return;
  if (g.k == 0) {  // an empty sum: C = beta C (+ bias)
    SCION_CHECK(g.beta == 0, "gemm with k = 0 and beta != 0");
    cudaMemsetAsync(g.c, 0, size_t(g.batch * g.m * g.ldc) * dtype_size(g.out), stream());
    if (g.bias) add_bias(g.c, g.out, g.batch * g.m, g.n, g.ldc, g.bias);
    return;
  }
  if (g.beta == 0 && split_k(g)) return;
  const bool epilogue = g.bias != nullptr && g.in != DType::f64;
  if (epilogue && run(g, true)) return;
  run(g, false);
  if (g.bias) add_bias(g.c, g.out, g.batch * g.m, g.n, g.ldc, g.bias);
}

void matmul_kernel(const Tensor& a, const Tensor& b, const Tensor& bias, const Tensor& out) {
  const bool flat = a.dim() == 2;
  Tensor a3 = flat ? a.unsqueeze(0) : a, b3 = flat ? b.unsqueeze(0) : b;
  const int64_t batch = std::max(a3.size(0), b3.size(0)), m = a3.size(1), k = a3.size(2),
                n = b3.size(2);
  auto layout = [](Tensor& t) {
    MatrixLayout l = matrix_layout(t.size(1), t.size(2), t.strides()[1], t.strides()[2],
                                   t.size(0) == 1 ? 0 : t.strides()[0]);
    if (!l.ok) {  // neither dimension has stride 1: copy it contiguous
      Tensor c = dev_empty(t.shape(), t.dtype());
      copy_kernel(c, t);
      t = c;
      l = matrix_layout(t.size(1), t.size(2), t.strides()[1], t.strides()[2],
                        t.size(0) == 1 ? 0 : t.strides()[0]);
    }
    return l;
  };
  MatrixLayout la = layout(a3), lb = layout(b3);
  Gemm g;
  g.in = a.dtype();
  g.out = out.dtype();
  g.m = m;
  g.n = n;
  g.k = k;
  g.a = a3.raw_data();
  g.b = b3.raw_data();
  g.c = out.raw_data();
  g.ldc = n;
  g.bias = bias.defined() ? bias.raw_data() : nullptr;
  if (batch > 1 && b3.size(0) == 1 && !la.transposed && la.batch_stride == m * la.ld) {
    // A Linear layer: a (B, M, K) row-major against one weight; one (B*M) x K product.
    g.m = batch * m;
    la.rows = batch * m;
    la.batch_stride = 0;
    g.la = la;
    g.lb = lb;
    return gemm(g);
  }
  g.la = la;
  g.lb = lb;
  g.batch = batch;
  g.stride_c = m * n;
  if (batch > 1 && (la.batch_stride == 0 || lb.batch_stride == 0)) {
    // One operand shared by every batch element: one product per element.
    for (int64_t z = 0; z < batch; ++z) {
      Gemm one = g;
      one.batch = 1;
      one.a = static_cast<const char*>(g.a) + la.batch_stride * z * int64_t(dtype_size(g.in));
      one.b = static_cast<const char*>(g.b) + lb.batch_stride * z * int64_t(dtype_size(g.in));
      one.c = static_cast<char*>(g.c) + m * n * z * int64_t(dtype_size(g.out));
      gemm(one);
    }
    return;
  }
  gemm(g);
}

}  // namespace scion::cuda
