// CUDA runtime queries. A machine without a GPU (or driver) reports zero devices instead of
// failing, so a CUDA build still runs everything on the CPU there.
#include <cuda_runtime.h>

#include <string>

namespace scion::cuda {

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error
    return 0;
  }
  return n;
}

// "NVIDIA H200, sm_90, 139 GiB" for `scion info`.
std::string device_description(int index) {
  cudaDeviceProp p{};
  if (cudaGetDeviceProperties(&p, index) != cudaSuccess) {
    cudaGetLastError();
    return "(properties unavailable)";
  }
  return std::string(p.name) + ", sm_" + std::to_string(p.major) + std::to_string(p.minor) + ", " +
         std::to_string(p.totalGlobalMem >> 30) + " GiB";
}

}  // namespace scion::cuda
