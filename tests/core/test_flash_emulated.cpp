// The CUDA backend's mma.sync fused attention kernels (core/cuda/flash_mma_kernels.h) run on the
// host, against the CPU backend's attention: the same kernel bodies the GPU runs, each thread of a
// block on a fiber (fibers.h), with the warp's collective operations emulated from the PTX ISA's rules
// (ldmatrix's row addresses and the mma.m16n8k16 fragment maps of core/cuda/mma_layout.h), and the
// asynchronous copies landing as late as the rules allow, then at once. So
// everything but the hardware's reading of those rules (the tiling, masking, online softmax, the
// register reuse, the dS store, the write-back) is checked on any machine; on a GPU,
// test_backend_ops' [cuda] cases check the same kernels against the CPU.
#include <cstring>

#include "core/backend.h"
#include "core/cuda/flash_mma_kernels.h"
#include "tests/core/fibers.h"
#include "tests/support.h"

using namespace scion;
using namespace scion::cuda::flash;
using scion::test::Barrier;
using scion::test::near;
using scion::test::rand_f64;

namespace {

// What the lanes of one warp hand in for a collective operation.
struct Slots {
  float value[32];
  const uint16_t* row[32];
  uint32_t a[32][4], b[32][2];
};
// Two sets of slots, used in turn: a lane writes the next operation's while slower lanes may still
// read this one's, and none can write this one's again before every lane has passed the next
// operation's barrier, so each operation takes one barrier.
struct WarpExchange {
  Barrier barrier{32};
  Slots slots[2];
};

// When an emulated asynchronous copy (cp.async) lands in shared memory: at the latest moment the
// rules allow (the issuing thread's wait_group that covers it), which shows a read before the
// wait; or at once, which shows a copy into a buffer that other threads may still be reading.
enum class Landing { late, early };

// One block's shared memory, its barrier and its warps' exchanges.
struct Block {
  Landing landing = Landing::late;
  int64_t index;
  std::vector<Vec16> shared;  // 16-byte aligned
  Barrier barrier{kThreads};
  WarpExchange warps[kWarps];
};

float bf16_half(uint32_t pair, int half) {
  return kmath::bf16_to_float(uint16_t(half ? pair >> 16 : pair & 0xffffu));
}

// The Env of flash_mma_kernels.h for one thread of an emulated block.
class HostEnv {
 public:
  HostEnv(Block& block, int thread) : block_(block), thread_(thread) {}
  int thread() const { return thread_; }
  int64_t block() const { return block_.index; }
  unsigned char* smem() const { return reinterpret_cast<unsigned char*>(block_.shared.data()); }
  void sync() { block_.barrier.wait(); }

  float shfl_xor(float v, int mask) {
    Slots& w = next_slots();
    w.value[lane()] = v;
    warp().barrier.wait();
    return w.value[lane() ^ mask];
  }

  // ldmatrix.x4: lane 8 m + i gives the address of row i of matrix m; register m of lane 4 j + q
  // receives that matrix's (j, 2 q) and (j, 2 q + 1), or with .trans its (2 q, j) and (2 q + 1, j),
  // the first in the low half.
  template <bool Trans>
  void ldmatrix(uint32_t (&r)[4], const uint16_t* p) {
    Slots& w = next_slots();
    w.row[lane()] = p;
    warp().barrier.wait();
    const int j = lane() / 4, q = lane() % 4;
    for (int m = 0; m < 4; ++m) {
      uint32_t pair = 0;
      for (int half = 0; half < 2; ++half) {
        const uint16_t e = Trans ? w.row[8 * m + 2 * q + half][j] : w.row[8 * m + j][2 * q + half];
        pair |= uint32_t(e) << (16 * half);
      }
      r[m] = pair;
    }
  }

  // mma.m16n8k16: the warp's A (16 x 16) and B (16 x 8) assembled from every lane's registers by
  // the fragment maps, this lane's elements of C += A B summed in f32 (the products of bf16 values
  // are exact in f32).
  // cp.async of `bytes` (zeros when not valid), commit_group and wait_group N, per thread.
  void copy16(uint16_t* dst, const uint16_t* src, bool valid) { copy(dst, src, 16, valid); }
  void copy4(float* dst, const float* src, bool valid) { copy(dst, src, 4, valid); }
  void commit() {
    groups_.push_back(std::move(open_));
    open_.clear();
  }
  template <int N>
  void wait() {
    while (groups_.size() > size_t(N)) {
      for (const Copy& c : groups_.front()) land(c);
      groups_.erase(groups_.begin());
    }
  }

  void mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    Slots& w = next_slots();
    for (int r = 0; r < 4; ++r) w.a[lane()][r] = a[r];
    w.b[lane()][0] = b0, w.b[lane()][1] = b1;
    warp().barrier.wait();
    float A[16][16], B[16][8];
    for (int l = 0; l < 32; ++l)
      for (int half = 0; half < 2; ++half) {
        for (int r = 0; r < 4; ++r) {
          const cuda::mma::At e = cuda::mma::a_element(l, r, half);
          A[e.row][e.col] = bf16_half(w.a[l][r], half);
        }
        for (int r = 0; r < 2; ++r) {
          const cuda::mma::At e = cuda::mma::b_element(l, r, half);
          B[e.row][e.col] = bf16_half(w.b[l][r], half);
        }
      }
    for (int i = 0; i < 4; ++i) {
      const cuda::mma::At e = cuda::mma::c_element(lane(), i);
      float sum = c[i];
      for (int k = 0; k < 16; ++k) sum += A[e.row][k] * B[k][e.col];
      c[i] = sum;
    }
  }

 private:
  struct Copy {
    void* dst;
    const void* src;
    int bytes;
    bool valid;
  };
  static void land(const Copy& c) {
    if (c.valid)
      std::memcpy(c.dst, c.src, size_t(c.bytes));
    else
      std::memset(c.dst, 0, size_t(c.bytes));
  }
  void copy(void* dst, const void* src, int bytes, bool valid) {
    const Copy c{dst, src, bytes, valid};
    if (block_.landing == Landing::early)
      land(c);
    else
      open_.push_back(c);
  }
  int lane() const { return thread_ % 32; }
  WarpExchange& warp() { return block_.warps[thread_ / 32]; }
  Slots& next_slots() { return warp().slots[turn_++ % 2]; }
  Block& block_;
  const int thread_;
  uint64_t turn_ = 0;       // the warp's collective operations so far (the same in every lane)
  std::vector<Copy> open_;  // copies queued since the last commit
  std::vector<std::vector<Copy>> groups_;  // committed groups not yet waited for, oldest first
};

// Runs `body(env)` for every thread of `blocks` blocks, one block at a time, each thread of a block
// on its own fiber.
template <class Body>
void run_grid(int64_t blocks, size_t smem_bytes, Landing landing, Body body) {
  for (int64_t b = 0; b < blocks; ++b) {
    Block block;
    block.landing = landing;
    block.index = b;
    block.shared.assign((smem_bytes + 15) / 16, Vec16{0, 0, 0, 0});
    scion::test::on_fibers(kThreads, [&block, &body](int t) {
      HostEnv env(block, t);
      body(env);
    });
  }
}

uint16_t* bits(const Tensor& t) {
  return static_cast<uint16_t*>(t.raw_data());
}

// A bf16 tensor filled with NaN, so that any element a kernel should write and does not shows.
Tensor nan_bf16(std::vector<int64_t> shape) {
  Tensor t = empty(shape, DType::bf16);
  std::fill(bits(t), bits(t) + t.numel(), uint16_t(0x7fc0));
  return t;
}

struct Shape {
  int64_t images, tokens, heads;
  int dim;
};

template <int D>
void check_shape(const Shape& s, Landing landing) {
  const int n = int(s.tokens), heads = int(s.heads);
  INFO(s.images << " images of " << n << " tokens, " << heads << " heads of " << D
                << ", copies land " << (landing == Landing::late ? "late" : "early"));
  const float scale = float(1.0 / std::sqrt(double(D)));
  const Tensor qkv = rand_f64({s.images, n, 3 * heads * D}, 7, -2, 2).to(DType::bf16);
  const Tensor dout = rand_f64({s.images, n, heads * D}, 8, -1, 1).to(DType::bf16);
  // The CPU backend's attention, forward and backward.
  Tensor out = empty({s.images, n, heads * D}, DType::bf16);
  Tensor lse = empty({s.images, heads, n}, DType::f32);
  Tensor dqkv = empty(qkv.shape(), DType::bf16);
  Backend& cpu = backend(cpu_device());
  cpu.attention_forward(qkv, heads, scale, out, lse);
  cpu.attention_backward(qkv, out, dout, lse, heads, scale, dqkv);
  // The kernels, with flash.cu's host steps between them: the row dots D = dO . O, and
  // dq = dS k (there a cuBLASLt GEMM: f32 sums, rounded once).
  const int64_t blocks = s.images * heads * ((n + kTile - 1) / kTile);
  Tensor out_e = nan_bf16(out.shape()), lse_e = full(lse.shape(), NAN, DType::f32);
  run_grid(blocks, forward_smem<D>(), landing, [&](HostEnv& env) {
    forward_body<D>(env, bits(qkv), n, heads, scale, bits(out_e),
                    static_cast<float*>(lse_e.raw_data()));
  });
  CHECK(near(out_e, out, 1.0 / 64, "output"));
  CHECK(near(lse_e, lse, 1e-5, "log-sum-exp"));
  const int64_t rows = s.images * heads * n, ld = (n + 7) / 8 * 8;
  std::vector<float> dvec(static_cast<size_t>(rows));
  for (int64_t b = 0; b < s.images; ++b)
    for (int h = 0; h < heads; ++h)
      for (int i = 0; i < n; ++i) {
        const int64_t at = ((b * n + i) * heads + h) * D;
        float acc = 0;
        for (int e = 0; e < D; ++e)
          acc +=
              kmath::bf16_to_float(bits(dout)[at + e]) * kmath::bf16_to_float(bits(out_e)[at + e]);
        dvec[size_t((b * heads + h) * n + i)] = acc;
      }
  Tensor dqkv_e = nan_bf16(qkv.shape()), ds_t = nan_bf16({s.images * heads * n * ld});
  run_grid(blocks, backward_smem<D>(), landing, [&](HostEnv& env) {
    backward_dkv_body<D>(env, bits(qkv), bits(dout), static_cast<const float*>(lse_e.raw_data()),
                         dvec.data(), n, heads, scale, bits(dqkv_e), bits(ds_t), int(ld));
  });
  const int64_t token = 3LL * heads * D;
  for (int64_t b = 0; b < s.images; ++b)
    for (int h = 0; h < heads; ++h)
      for (int i = 0; i < n; ++i)
        for (int e = 0; e < D; ++e) {
          float acc = 0;
          for (int j = 0; j < n; ++j)
            acc += kmath::bf16_to_float(bits(ds_t)[((b * heads + h) * n + j) * ld + i]) *
                   kmath::bf16_to_float(bits(qkv)[(b * n + j) * token + (heads + h) * D + e]);
          bits(dqkv_e)[(b * n + i) * token + h * D + e] = kmath::float_to_bf16(acc);
        }
  CHECK(near(dqkv_e, dqkv, 1.0 / 64, "gradient of qkv"));
}

}  // namespace

TEST_CASE("cuda flash attention: the mma.sync kernels on an emulated warp match the CPU",
          "[cuda-host]") {
  // Token counts below, at and across the 64-row tiles; several images and heads, head dims 32
  // and 64 (ViT-T's 197 tokens of 3 heads at 224 px, 65 at 32 px with patch 4).
  for (const Landing landing : {Landing::late, Landing::early}) {
    check_shape<32>({2, 10, 2, 32}, landing);
    check_shape<32>({1, 70, 2, 32}, landing);
    check_shape<64>({1, 64, 1, 64}, landing);
    check_shape<64>({1, 197, 1, 64}, landing);
    check_shape<64>({2, 65, 3, 64}, landing);
  }
}
