// The mma.sync fused attention kernels (flash_mma_kernels.h) on the GPU: their Env is the device's
// thread and block indices, shared memory and barrier, and the warp's shuffles, ldmatrix and
// mma.sync, and the asynchronous copies (cp.async), as inline PTX.
#include "core/cuda/flash_mma_kernels.h"
#include "core/cuda/flash_tile.cuh"

namespace scion::cuda::flash {

namespace {

struct DeviceEnv {
  unsigned char* shared;
  __device__ int thread() const { return int(threadIdx.x); }
  __device__ int64_t block() const { return int64_t(blockIdx.x); }
  __device__ unsigned char* smem() const { return shared; }
  __device__ void sync() const { __syncthreads(); }
  __device__ float shfl_xor(float v, int mask) const {
    return __shfl_xor_sync(0xffffffffu, v, mask);
  }
  template <bool Trans>
  __device__ void ldmatrix(uint32_t (&r)[4], const uint16_t* p) const {
    const auto addr = static_cast<unsigned>(__cvta_generic_to_shared(p));
    if constexpr (Trans)
      asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                   : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                   : "r"(addr));
    else
      asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                   : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                   : "r"(addr));
  }
  __device__ void copy16(uint16_t* dst, const uint16_t* src, bool valid) const {
    const auto d = static_cast<unsigned>(__cvta_generic_to_shared(dst));
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(src),
                 "r"(valid ? 16 : 0)
                 : "memory");
  }
  __device__ void copy4(float* dst, const float* src, bool valid) const {
    const auto d = static_cast<unsigned>(__cvta_generic_to_shared(dst));
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(d), "l"(src),
                 "r"(valid ? 4 : 0)
                 : "memory");
  }
  __device__ void commit() const { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
  template <int N>
  __device__ void wait() const {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
  }
  __device__ void mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) const {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, "
        "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
};

// Three blocks per multiprocessor (at most 168 registers a thread): no spills for sm_80 or sm_90
// (ptxas left to itself spilled the D = 32 kernel on sm_80 at 96 registers).
template <int D>
__global__ void __launch_bounds__(kThreads, 3)
    flash_forward(const uint16_t* qkv, int n, int heads, float scale, uint16_t* out, float* lse) {
  extern __shared__ __align__(128) unsigned char smem[];
  DeviceEnv env{smem};
  forward_body<D>(env, qkv, n, heads, scale, out, lse);
}

// Two blocks per multiprocessor: held to three (168 registers), the D = 64 kernel spills on sm_90.
template <int D>
__global__ void __launch_bounds__(kThreads, 2)
    flash_backward_dkv(const uint16_t* qkv, const uint16_t* dout, const float* lse,
                       const float* dvec, int n, int heads, float scale, uint16_t* dqkv,
                       uint16_t* ds_t, int ld) {
  extern __shared__ __align__(128) unsigned char smem[];
  DeviceEnv env{smem};
  backward_dkv_body<D>(env, qkv, dout, lse, dvec, n, heads, scale, dqkv, ds_t, ld);
}

const uint16_t* bits(const bf16_t* p) {
  return reinterpret_cast<const uint16_t*>(p);
}
uint16_t* bits(bf16_t* p) {
  return reinterpret_cast<uint16_t*>(p);
}

template <int D>
void forward(const ForwardArgs& a) {
  launch(flash_forward<D>, forward_smem<D>(), a.images, a.heads, a.n, "flash attention forward",
         bits(a.qkv), a.n, a.heads, a.scale, bits(a.out), a.lse);
}

template <int D>
void backward_dkv(const BackwardArgs& a) {
  launch(flash_backward_dkv<D>, backward_smem<D>(), a.images, a.heads, a.n,
         "flash attention backward (dk, dv, dS)", bits(a.qkv), bits(a.dout), a.lse, a.dvec, a.n,
         a.heads, a.scale, bits(a.dqkv), bits(a.ds_t), a.ld);
}

}  // namespace

void forward_mma(const ForwardArgs& a, int d) {
  d == 64 ? forward<64>(a) : forward<32>(a);
}

void backward_dkv_mma(const BackwardArgs& a, int d) {
  d == 64 ? backward_dkv<64>(a) : backward_dkv<32>(a);
}

}  // namespace scion::cuda::flash
