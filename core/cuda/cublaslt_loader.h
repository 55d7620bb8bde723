// cuBLASLt is opened on first use (dlopen), not linked: the CUDA build's programs would otherwise
// load libcublasLt.so at start, 210 MiB more resident memory in every process (`train --help`: 228
// against 18 MiB), on the CPU too and in every MPI rank. core/cuda/cublaslt_loader.cu defines the cuBLASLt
// functions scion calls, each forwarding to the library's own, which it opens the first time one
// is called; cuDNN (which opens its engines on demand itself), NCCL and the runtime stay linked.
#pragma once

#include <string>
#include <vector>

namespace scion::cuda {

// Opens cuBLASLt once, trying the toolkit's soname (found through the programs' RUNPATH and the
// loader's paths) and then the toolkit's library folder from the build: "" when it is open, else
// what each attempt said.
const std::string& cublaslt_load_error();
// Whether it has been opened (by a cuBLASLt call or the above).
bool cublaslt_opened();

// One dlopen over `candidates` in order (RTLD_NOW | RTLD_LOCAL): the first handle that opens, or
// null with every attempt's dlerror in `error`.
void* open_first(const std::vector<std::string>& candidates, std::string& error);

}  // namespace scion::cuda
