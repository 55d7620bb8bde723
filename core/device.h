// Where a tensor's storage lives, and the backend that runs its kernels (core/backend.h).
//   cpu        host memory, the optimized kernels of core/cpu/
//   reference  host memory, the plain f64 kernels of core/reference/: a second backend that checks
//              the first op by op (tests/core/test_backend_ops.cpp) and a slow debugging device
//   cuda:N     GPU N, the kernels of core/cuda/ (cuBLASLt, cuDNN and scion's own kernels)
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace scion {

enum class DeviceType { cpu, cuda, reference };

struct Device {
  DeviceType type = DeviceType::cpu;
  int index = 0;
  bool operator==(const Device& o) const { return type == o.type && index == o.index; }
  bool operator!=(const Device& o) const { return !(*this == o); }
  std::string str() const;  // "cpu", "cuda:0", "reference"
  // Host memory: the CPU can read and write it directly (cpu and reference).
  bool is_host() const { return type != DeviceType::cuda; }
};

inline Device cpu_device() {
  return Device{};
}

// "cpu", "reference", "cuda" (= cuda:0) or "cuda:N"; an InputError naming `what` otherwise.
Device parse_device(const std::string& name, const std::string& what = "device");

// Number of usable CUDA devices: 0 in a CPU-only build or on a machine without a GPU.
int cuda_device_count();
// Whether this build has the CUDA backend, and its devices ("cuda:0 NVIDIA H200, sm_90, 139 GiB").
bool cuda_built();
std::vector<std::string> cuda_devices();

// An InputError naming `what` when this build or machine cannot run `device` (cuda without its
// backend or without a GPU).
void check_device_available(Device device, const std::string& what = "device");

// Whether the CUDA backend has passed experiments/gpu/verify.sh on a GPU; until then `train` on a
// CUDA device says once that it is unverified on hardware.
bool cuda_verified_on_hardware();

// The CUDA caching allocator's counters for device `index`, in bytes, as torch.cuda's
// memory_allocated, max_memory_allocated, memory_reserved and max_memory_reserved: blocks held by
// live tensors and segments held from the driver, and their peaks since the process started or
// cuda_reset_peak_memory (torch.cuda.reset_peak_memory_stats). Zeros without the CUDA backend.
struct CudaMemoryStats {
  int64_t allocated = 0, peak_allocated = 0, reserved = 0, peak_reserved = 0;
};
CudaMemoryStats cuda_memory_stats(int index);
void cuda_reset_peak_memory(int index);
// Starts SCION_CUDA_OP_TIMES's table afresh (a benchmark calls it after its warm-up steps, so
// first-call costs such as cuDNN's algorithm searches stay out of the profile); a no-op otherwise.
void cuda_reset_op_times();

// Page-locked host memory (cudaHostAlloc), from which copies to a GPU are queued without waiting:
// nullptr without a CUDA device. Freed blocks are kept and handed out again once the copies
// queued from them have run. Tensors use it through empty_pinned (core/tensor.h).
void* cuda_pinned_allocate(size_t bytes);
void cuda_pinned_release(void* p);
bool cuda_is_pinned(const void* p);

}  // namespace scion
