// Where a tensor's storage lives. Only the CPU backend exists in this build of the core; `cuda`
// is reserved for core/cuda/ and reported as unavailable when no GPU or no CUDA build is present.
#pragma once

#include <string>

namespace scion {

enum class DeviceType { cpu, cuda };

struct Device {
  DeviceType type = DeviceType::cpu;
  int index = 0;
  bool operator==(const Device& o) const { return type == o.type && index == o.index; }
  bool operator!=(const Device& o) const { return !(*this == o); }
  std::string str() const;
};

inline Device cpu_device() {
  return Device{};
}

// Number of usable CUDA devices: 0 in a CPU-only build or on a machine without a GPU.
int cuda_device_count();

}  // namespace scion
