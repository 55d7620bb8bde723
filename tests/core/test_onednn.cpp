// How the CPU backend hands memory to oneDNN.
#include "core/cpu/onednn.h"
#include "core/storage.h"
#include "tests/support.h"

using namespace scion;

namespace {

// Whether oneDNN's JIT convolutions run here (x86-64, AVX2 and up under any cap).
bool jit_convolutions() {
#if defined(__x86_64__)
  const auto isa = static_cast<unsigned>(dnnl::get_effective_cpu_isa());
  const auto avx2 = static_cast<unsigned>(dnnl::cpu_isa::avx2);
  return (isa & avx2) == avx2;
#else
  return false;
#endif
}

}  // namespace

// A convolution of NCHW tensors runs in oneDNN's blocked layouts where its JIT kernels do (x86-64
// with AVX2 and up): the operands are copied into those layouts and the result back. The copies
// come from scion's caching allocator, as every tensor does, and go back to it after the call:
// oneDNN's own allocation is a fresh malloc per call, and a large one an mmap whose pages fault in
// again on every training step.
TEST_CASE("oneDNN's layout copies come from the caching allocator and go back to it",
          "[ops][fast]") {
  Generator gen(0);
  // A patchify stem (ConvNeXt's 4x4 stride 4), forward and both gradients.
  Tensor x = randn({2, 3, 32, 32}, DType::f32, gen).requires_grad_();
  Tensor w = randn({16, 3, 4, 4}, DType::f32, gen).requires_grad_();
  Conv2dOptions opt;
  opt.stride = {4, 4};
  auto& alloc = CachingAllocator::cpu();
  const size_t live = alloc.live_bytes();
  alloc.reset_peak();
  const int64_t before = cpu::onednn_layout_copy_bytes();
  Tensor y = conv2d(x, w, Tensor(), opt);
  const int64_t copied = cpu::onednn_layout_copy_bytes() - before;
  const size_t y_bytes = CachingAllocator::round_size(size_t(y.numel()) * sizeof(float));
  INFO("copies " << copied << " bytes; live " << live << " -> " << alloc.live_bytes() << ", peak "
                 << alloc.peak_live_bytes());
  if (jit_convolutions()) CHECK(copied > 0);
  // Held during the call, with y; returned after it (the graph keeps x and w, which live anyway).
  CHECK(alloc.peak_live_bytes() >= live + y_bytes + size_t(copied));
  CHECK(alloc.live_bytes() == live + y_bytes);

  // The backward's two calls (data and weight gradients) copy too, and return theirs.
  const int64_t forward_copies = cpu::onednn_layout_copy_bytes();
  sum(y).backward();
  if (jit_convolutions()) CHECK(cpu::onednn_layout_copy_bytes() > forward_copies);
  y = Tensor();  // the graph goes with y; what is left is x and w with their gradients
  CHECK(alloc.live_bytes() == live + CachingAllocator::round_size(x.numel() * sizeof(float)) +
                                  CachingAllocator::round_size(w.numel() * sizeof(float)));
}
