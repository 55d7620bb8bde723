// cuBLASLt opened on first use: see cublaslt_loader.h. Each function below has the signature of
// cublasLt.h's declaration and calls the library's symbol of the same name, looked up once; while
// the library cannot be opened, each returns CUBLAS_STATUS_NOT_INITIALIZED and
// cublaslt_load_error() says why (blas_lt_handle puts that into its error).
#include <cublasLt.h>
#include <dlfcn.h>

#include <atomic>

#include "core/cuda/cublaslt_loader.h"

#ifndef SCION_CUBLASLT_SONAME
#error "SCION_CUBLASLT_SONAME (libcublasLt.so.<toolkit major>) is set by CMakeLists.txt"
#endif

namespace scion::cuda {

namespace {

std::atomic<bool> opened{false};

struct Library {
  void* handle = nullptr;
  std::string error;
};

const Library& library() {
  static const Library lib = [] {
    Library l;
    std::vector<std::string> candidates{SCION_CUBLASLT_SONAME};
#ifdef SCION_CUBLASLT_DIR
    candidates.push_back(std::string(SCION_CUBLASLT_DIR) + "/" + SCION_CUBLASLT_SONAME);
#endif
    l.handle = open_first(candidates, l.error);
    opened = l.handle != nullptr;
    return l;
  }();
  return lib;
}

}  // namespace

// The library's function `name`, or null while it cannot be opened.
void* cublaslt_symbol(const char* name) {
  void* handle = library().handle;
  return handle ? dlsym(handle, name) : nullptr;
}

void* open_first(const std::vector<std::string>& candidates, std::string& error) {
  error.clear();
  for (const std::string& path : candidates) {
    if (void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL)) {
      error.clear();
      return h;
    }
    const char* why = dlerror();
    error += (error.empty() ? "" : "; ") + (why ? std::string(why) : "cannot open " + path);
  }
  return nullptr;
}

const std::string& cublaslt_load_error() {
  return library().error;
}

bool cublaslt_opened() {
  return opened;
}

}  // namespace scion::cuda

// The forwarding definitions (C linkage, as declared in cublasLt.h), one per function scion calls.
#define SCION_CUBLASLT_FORWARD(name, params, args)                                                 \
  cublasStatus_t CUBLASWINAPI name params {                                                        \
    static const auto fn = reinterpret_cast<decltype(&name)>(scion::cuda::cublaslt_symbol(#name)); \
    return fn ? fn args : CUBLAS_STATUS_NOT_INITIALIZED;                                           \
  }

SCION_CUBLASLT_FORWARD(cublasLtCreate, (cublasLtHandle_t * handle), (handle))
SCION_CUBLASLT_FORWARD(cublasLtMatmulDescCreate,
                       (cublasLtMatmulDesc_t * desc, cublasComputeType_t compute,
                        cudaDataType_t scale),
                       (desc, compute, scale))
SCION_CUBLASLT_FORWARD(cublasLtMatmulDescDestroy, (cublasLtMatmulDesc_t desc), (desc))
SCION_CUBLASLT_FORWARD(cublasLtMatmulDescSetAttribute,
                       (cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attr,
                        const void* buf, size_t bytes),
                       (desc, attr, buf, bytes))
SCION_CUBLASLT_FORWARD(cublasLtMatrixLayoutCreate,
                       (cublasLtMatrixLayout_t * layout, cudaDataType type, uint64_t rows,
                        uint64_t cols, int64_t ld),
                       (layout, type, rows, cols, ld))
SCION_CUBLASLT_FORWARD(cublasLtMatrixLayoutDestroy, (cublasLtMatrixLayout_t layout), (layout))
SCION_CUBLASLT_FORWARD(cublasLtMatrixLayoutSetAttribute,
                       (cublasLtMatrixLayout_t layout, cublasLtMatrixLayoutAttribute_t attr,
                        const void* buf, size_t bytes),
                       (layout, attr, buf, bytes))
SCION_CUBLASLT_FORWARD(cublasLtMatmulPreferenceCreate, (cublasLtMatmulPreference_t * pref), (pref))
SCION_CUBLASLT_FORWARD(cublasLtMatmulPreferenceDestroy, (cublasLtMatmulPreference_t pref), (pref))
SCION_CUBLASLT_FORWARD(cublasLtMatmulPreferenceSetAttribute,
                       (cublasLtMatmulPreference_t pref, cublasLtMatmulPreferenceAttributes_t attr,
                        const void* buf, size_t bytes),
                       (pref, attr, buf, bytes))
SCION_CUBLASLT_FORWARD(cublasLtMatmulAlgoGetHeuristic,
                       (cublasLtHandle_t handle, cublasLtMatmulDesc_t desc,
                        cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b,
                        cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t d,
                        cublasLtMatmulPreference_t pref, int requested,
                        cublasLtMatmulHeuristicResult_t results[], int* returned),
                       (handle, desc, a, b, c, d, pref, requested, results, returned))
SCION_CUBLASLT_FORWARD(cublasLtMatmul,
                       (cublasLtHandle_t handle, cublasLtMatmulDesc_t desc, const void* alpha,
                        const void* a, cublasLtMatrixLayout_t a_layout, const void* b,
                        cublasLtMatrixLayout_t b_layout, const void* beta, const void* c,
                        cublasLtMatrixLayout_t c_layout, void* d, cublasLtMatrixLayout_t d_layout,
                        const cublasLtMatmulAlgo_t* algo, void* workspace, size_t workspace_bytes,
                        cudaStream_t stream),
                       (handle, desc, alpha, a, a_layout, b, b_layout, beta, c, c_layout, d,
                        d_layout, algo, workspace, workspace_bytes, stream))
