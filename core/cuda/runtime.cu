// CUDA runtime queries. A machine without a GPU (or driver) reports zero devices instead of
// failing, so a CUDA build still runs everything on the CPU there.
#include <cuda_runtime.h>

namespace scion::cuda {

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error
    return 0;
  }
  return n;
}

}  // namespace scion::cuda
