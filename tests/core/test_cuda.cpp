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
