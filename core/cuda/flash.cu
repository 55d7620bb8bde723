// Fused ("flash") attention for bf16 with head dims 32 and 64 (every ViT of timm's tiny to large
// sizes has 64): the N x N scores never reach device memory. The schedule is FlashAttention-2's
// (Dao 2023):
//   forward   one block per 64 queries of one (image, head); its four warps own 16 queries each
//             and walk the keys in tiles of 64 with the online softmax (running max m, sum l);
//             it writes the output and lse = m + log l;
//   backward  dk/dv per 64 keys walking the query tiles, recomputing P = exp(scale q.k - lse);
//             the same kernel writes dS (rounded to bf16, as the operand it is) to memory, and
//             dq = dS k is a batched cuBLASLt GEMM per head, straight into dqkv. Every gradient
//             is summed in a fixed order (FlashAttention-2 adds dq with atomics instead). Until
//             run 8, dq had a kernel of its own per 64 queries that recomputed S, dP and P a
//             second time (3 of the backward's 7 tile products).
// The kernels are flash_mma.cu's (mma.sync on register fragments: scores and probabilities
// never leave the registers); SCION_CUDA_FLASH=wmma (or set_flash_kernels, plan.h) selects
// flash_wmma.cu's instead, which pass them through shared memory (the kernels of runs 7 and 8).
// Both round as the GEMM path of attention.cu: scores and sums in f32, P and dS rounded to bf16
// as operands of the second products, outputs rounded once.
#include "core/cuda/flash.h"
#include "core/cuda/flash_tile.cuh"

namespace scion::cuda {

namespace {

using flash::kTile;

bool use_wmma() {
  return flash_kernels() == FlashKernels::wmma;
}

// D[r] = sum_e dO[r, e] O[r, e] for the rows r = (b H + h) N + i of the (B, N, H, d) layout.
__global__ void row_dots(const bf16_t* dout, const bf16_t* out, int64_t rows, int n, int heads,
                         int d, float* dvec) {
  // One warp per row: lanes stride over the head's d values, then a warp sum.
  const int64_t r = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (r >= rows) return;
  const int64_t i = r % n, h = (r / n) % heads, b = r / (int64_t(n) * heads);
  const int64_t base = ((b * n + i) * heads + h) * d;
  float acc_v = 0;
  for (int e = lane; e < d; e += 32)
    acc_v += kmath::bf16_to_float(dout[base + e].bits) * kmath::bf16_to_float(out[base + e].bits);
  for (int o = 16; o > 0; o >>= 1) acc_v += __shfl_xor_sync(0xffffffffu, acc_v, o);
  if (lane == 0) dvec[r] = acc_v;
}

bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

void forward(const Tensor& qkv, int n, int heads, int d, float scale, const Tensor& out,
             const Tensor& lse) {
  const flash::ForwardArgs a{static_cast<const bf16_t*>(qkv.raw_data()),
                             qkv.size(0),
                             n,
                             heads,
                             scale,
                             static_cast<bf16_t*>(out.raw_data()),
                             static_cast<float*>(lse.raw_data())};
  use_wmma() ? flash::forward_wmma(a, d) : flash::forward_mma(a, d);
}

void backward(const Tensor& qkv, const Tensor& out, const Tensor& dout, const Tensor& lse, int n,
              int heads, int d, float scale, const Tensor& dqkv) {
  const int64_t rows = qkv.size(0) * heads * n;
  Tensor dvec = dev_empty({rows}, DType::f32);
  row_dots<<<unsigned((rows * 32 + 255) / 256), 256, 0, stream()>>>(
      static_cast<const bf16_t*>(dout.raw_data()), static_cast<const bf16_t*>(out.raw_data()), rows,
      n, heads, d, static_cast<float*>(dvec.raw_data()));
  SCION_CUDA_LAUNCHED("flash attention row dots");
  const auto* x = static_cast<const bf16_t*>(qkv.raw_data());
  const auto* g = static_cast<const bf16_t*>(dout.raw_data());
  const auto* l = static_cast<const float*>(lse.raw_data());
  const auto* dv = static_cast<const float*>(dvec.raw_data());
  auto* dx = static_cast<bf16_t*>(dqkv.raw_data());
  // dS^T of a chunk of images at a time, so the buffer stays small beside the activations.
  const int64_t images = qkv.size(0), ld = (n + 7) / 8 * 8, token = 3LL * heads * d;
  const int64_t chunk = attention_ds_images(images, heads, n, ld);
  Tensor ds_t = dev_empty({chunk * heads * n * ld}, DType::bf16);
  auto* ds = static_cast<bf16_t*>(ds_t.raw_data());
  for (int64_t b0 = 0; b0 < images; b0 += chunk) {
    const int64_t cb = std::min(chunk, images - b0), rows0 = b0 * heads * n;
    const flash::BackwardArgs a{x + b0 * n * token,
                                g + b0 * n * heads * d,
                                l + rows0,
                                dv + rows0,
                                cb,
                                n,
                                heads,
                                scale,
                                dx + b0 * n * token,
                                ds,
                                int(ld)};
    use_wmma() ? flash::backward_dkv_wmma(a, d) : flash::backward_dkv_mma(a, d);
    // dq[b, :, h] = dS[b, h] k[b, :, h] for each head h: a GEMM batched over the chunk's images
    // (uniform strides within one head), reading k from qkv and writing into dqkv's q slots.
    for (int h = 0; h < heads; ++h) {
      Gemm q;
      q.in = q.out = DType::bf16;
      q.batch = cb;
      q.m = n;
      q.n = d;
      q.k = n;
      q.a = ds + int64_t(h) * n * ld;
      q.la = matrix_layout(n, n, 1, ld, heads * n * ld);  // dS = (dS^T)^T
      q.b = x + b0 * n * token + int64_t(heads + h) * d;
      q.lb = matrix_layout(n, d, token, 1, n * token);
      q.c = dx + b0 * n * token + int64_t(h) * d;
      q.ldc = token;
      q.stride_c = n * token;
      gemm(q);
    }
  }
}

}  // namespace

bool flash_attention_fits(const Tensor& qkv, int64_t heads, std::initializer_list<Tensor> others) {
  if (qkv.dtype() != DType::bf16 || qkv.dim() != 3 || heads <= 0) return false;
  const int64_t c = qkv.size(2) / 3, d = c / heads;
  if (d != 32 && d != 64) return false;
  const int64_t blocks = qkv.size(0) * heads * ((qkv.size(1) + kTile - 1) / kTile);
  if (qkv.size(1) > (int64_t(1) << 30) || blocks > int64_t(INT32_MAX)) return false;
  if (!qkv.is_contiguous() || !aligned16(qkv.raw_data())) return false;
  for (const Tensor& t : others)
    if (!t.is_contiguous() || !aligned16(t.raw_data())) return false;
  return true;
}

void flash_attention_forward(const Tensor& qkv, int64_t heads, double scale, const Tensor& out,
                             const Tensor& lse) {
  const int n = int(qkv.size(1)), d = int(qkv.size(2) / 3 / heads);
  forward(qkv, n, int(heads), d, float(scale), out, lse);
}

void flash_attention_backward(const Tensor& qkv, const Tensor& out, const Tensor& dout,
                              const Tensor& lse, int64_t heads, double scale, const Tensor& dqkv) {
  const int n = int(qkv.size(1)), d = int(qkv.size(2) / 3 / heads);
  backward(qkv, out, dout, lse, n, int(heads), d, float(scale), dqkv);
}

}  // namespace scion::cuda
