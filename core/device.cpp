// Device names and the one place where the CUDA backend is registered.
#include "core/device.h"

namespace scion {

#ifdef SCION_CUDA
namespace cuda {
int device_count();
}
int cuda_device_count() {
  return cuda::device_count();
}
#else
int cuda_device_count() {
  return 0;
}
#endif

std::string Device::str() const {
  return type == DeviceType::cpu ? "cpu" : "cuda:" + std::to_string(index);
}

}  // namespace scion
