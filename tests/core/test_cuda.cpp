// CUDA backend tests that need a GPU ([cuda]): whole models on the GPU against the CPU, forward
// and backward, f32 and bf16. The op-by-op comparison is in test_backend_ops.cpp and the
// host-side logic in test_cuda_host.cpp. Without a GPU (CI) each [cuda] test prints one line
// saying it was skipped and why, and passes.
#include "nn/model.h"
#include "tests/support.h"

using namespace scion;

namespace {

// Logits and parameter gradients of `model` on `device` for a fixed input and loss weights.
struct Pass {
  Tensor logits;
  std::vector<std::pair<std::string, Tensor>> grads;
};

Pass run_model(const nn::ModelConfig& cfg, Device device, DType dt) {
  nn::ModelPtr model = nn::create_model(cfg);
  {
    NoGradGuard ng;
    uint64_t k = 1;
    for (auto& [name, p] : model->named_parameters()) {
      Generator g(k++);
      Tensor t = p;
      trunc_normal_(t, 0, 0.05, -0.1, 0.1, g);
    }
  }
  model->to(device);
  Tensor x = test::rand_f64({2, 3, cfg.img_size, cfg.img_size}, 7).to(DType::f32).to(device);
  Pass out;
  Tensor logits;
  {
    AutocastGuard ac(dt == DType::bf16);
    logits = model->forward(x);
  }
  Tensor w = test::rand_f64(logits.shape(), 8, 0.5, 1.5).to(logits.dtype()).to(device);
  sum(logits * w).to(DType::f32).backward();
  out.logits = logits.to(DType::f32).cpu();
  for (auto& [name, p] : model->named_parameters())
    out.grads.emplace_back(name, p.grad().defined() ? p.grad().cpu() : Tensor());
  return out;
}

void compare_models(const nn::ModelConfig& cfg, DType dt, double tol) {
  Pass gpu = run_model(cfg, parse_device("cuda"), dt), cpu = run_model(cfg, cpu_device(), dt);
  INFO(cfg.name << " " << dtype_name(dt));
  CHECK_CLOSE(gpu.logits, cpu.logits, tol * test::max_abs(cpu.logits), tol);
  REQUIRE(gpu.grads.size() == cpu.grads.size());
  for (size_t i = 0; i < gpu.grads.size(); ++i) {
    INFO("gradient of " << cpu.grads[i].first);
    REQUIRE(gpu.grads[i].second.defined() == cpu.grads[i].second.defined());
    if (!cpu.grads[i].second.defined()) continue;
    const Tensor& a = gpu.grads[i].second;
    const Tensor& b = cpu.grads[i].second;
    CHECK_CLOSE(a.to(DType::f32), b.to(DType::f32), tol * test::max_abs(b), tol);
  }
}

}  // namespace

TEST_CASE("CUDA device query works with and without a GPU", "[cuda]") {
  const int n = cuda_device_count();
  CHECK(n >= 0);
  CHECK(cuda_devices().size() == size_t(n));
  if (!test::cuda_or_skip("device query")) return;
  CHECK(cuda_devices()[0].rfind("cuda:0 ", 0) == 0);
}

TEST_CASE("cuda: vit_tiny and convnext_femto match the CPU, logits and gradients", "[cuda]") {
  if (!test::cuda_or_skip("models on the GPU vs the CPU")) return;
  nn::ModelConfig vit;
  vit.name = "vit_tiny";
  vit.img_size = 32;
  vit.patch_size = 4;
  vit.depth = 2;
  vit.num_classes = 10;
  nn::ModelConfig cnx;
  cnx.name = "convnext_femto";
  cnx.img_size = 32;
  cnx.depths = std::vector<int64_t>{1, 1, 2, 1};
  cnx.num_classes = 10;
  for (const nn::ModelConfig& cfg : {vit, cnx}) {
    compare_models(cfg, DType::f32, 1e-4);
    compare_models(cfg, DType::bf16, 3e-2);
  }
}

// Host->device copies are queued without the host waiting (core/cuda/backend.cu): from pinned
// memory directly, from ordinary memory through a pinned staging block. The source is overwritten
// or freed right after each copy, while a long queue of kernels keeps the GPU busy, so a copy that
// read its source late would see the new values.
TEST_CASE("cuda: asynchronous host-to-device copies read the source as it was", "[cuda]") {
  if (!test::cuda_or_skip("asynchronous copies")) return;
  const Device gpu = parse_device("cuda");
  const int64_t n = 1 << 20;
  Tensor busy = zeros({4096, 4096}, DType::f32, gpu);
  std::vector<Tensor> on_gpu;
  std::vector<double> expected;
  for (int k = 0; k < 12; ++k) {
    for (int r = 0; r < 4; ++r) busy = matmul(busy, busy) * 0.5;  // GPU work queued ahead
    const bool pinned = k % 2 == 0;
    Tensor host = pinned ? empty_pinned({n}) : empty({n});
    CHECK(is_pinned(host) == pinned);
    host.fill_(double(k));
    on_gpu.push_back(host.to(gpu));
    expected.push_back(double(k));
    if (pinned)
      host = Tensor();  // freed: the pool must not hand the block out before the copy ran
    else
      host.fill_(-1.0);  // overwritten: the staging block holds the values the copy reads
    Tensor other = empty_pinned({n});  // may reuse a freed block only once its copy is done
    other.fill_(-2.0);
  }
  for (size_t k = 0; k < on_gpu.size(); ++k) {
    INFO("copy " << k);
    Tensor back = on_gpu[k].cpu();
    CHECK(max(back).item() == expected[k]);
    CHECK(-max(-back).item() == expected[k]);
  }
}
