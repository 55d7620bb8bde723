// What the autograd graph keeps for backward, against PyTorch's list of saved tensors for the same
// module (tests/golden/make_golden_memory.py: timm's models under bf16 autocast, batch 2, each
// saved storage once, parameters left out), both counted in scion's allocator size classes. What
// the graph keeps is what a training step holds at its peak on any device (the graph is the same
// on the CPU and on CUDA), so a rule that keeps a needless copy (as add and sub once kept their
// promoted operands) shows here first.
#include "core/storage.h"
#include "nn/convnext.h"
#include "nn/vit.h"
#include "tests/support.h"

using namespace scion;

namespace {

// Allocator bytes that forward(make_input()) leaves behind once the input and everything but its
// output are released, less the output's own block: what the graph keeps. Backward then releases
// all of it (the gradients of `leaves` are dropped before that is checked).
size_t kept_bytes(const std::function<Tensor()>& make_input,
                  const std::function<Tensor(const Tensor&)>& forward, std::vector<Tensor> leaves) {
  auto& alloc = CachingAllocator::cpu();
  const size_t start = alloc.live_bytes();
  Tensor out;
  {
    AutocastGuard autocast(true);
    out = forward(make_input());
  }
  const size_t kept = alloc.live_bytes() - start -
                      CachingAllocator::round_size(size_t(out.numel()) * dtype_size(out.dtype()));
  sum(out.to(DType::f32)).backward();
  out = Tensor();
  for (Tensor& t : leaves) t.zero_grad();
  CHECK(alloc.live_bytes() == start);
  return kept;
}

// The storages torch's graph saves, each in the size class scion's allocator would give it.
size_t torch_kept_bytes(const std::string& key) {
  static SafetensorsFile f =
      SafetensorsFile::open(std::string(SCION_GOLDEN_DIR) + "/memory.safetensors");
  size_t total = 0;
  for (double bytes : f.get(key).to_vector()) total += CachingAllocator::round_size(size_t(bytes));
  return total;
}

nn::ModelPtr make_model(const std::string& name, double drop_path = 0.0) {
  nn::ModelConfig c;
  c.name = name;
  c.num_classes = 100;
  c.drop_path = drop_path;
  nn::ModelPtr m = nn::create_model(c);
  m->train();
  return m;
}

std::vector<Tensor> with(std::vector<Tensor> params, const Tensor& leaf) {
  params.push_back(leaf);
  return params;
}

struct Kept {
  size_t block, forward;
};

// A block (its input made in the graph: x + 0 keeps nothing, so a block that keeps its input
// counts it) and a whole forward + cross-entropy at batch 2 and 224 px.
Kept measure(const std::string& name, double drop_path) {
  nn::ModelPtr model = make_model(name, drop_path);
  nn::ModulePtr block;
  Shape shape;
  if (auto* vit = dynamic_cast<nn::VisionTransformer*>(model.get())) {
    block = (*vit->blocks)[11];  // the highest drop-path rate
    shape = {2, 197, 192};
  } else {
    auto& convnext = dynamic_cast<nn::ConvNeXt&>(*model);
    block = (*std::dynamic_pointer_cast<nn::ConvNextStage>((*convnext.stages)[0])->blocks)[1];
    shape = {2, 56, 56, 48};  // channels-last, as the blocks run
  }
  Generator gen(0);
  Tensor act = randn(shape, DType::f32, gen);
  if (act.dim() == 4) act = act.permute({0, 3, 1, 2});
  act.requires_grad_();
  Kept kept;
  kept.block =
      kept_bytes([&] { return act + 0.0; }, [&](const Tensor& x) { return block->forward(x); },
                 with(model->parameters(), act));
  Tensor image = randn({2, 3, 224, 224}, DType::f32, gen);
  Tensor labels = from_vector({3, 7}, {2}, DType::i64);
  kept.forward =
      kept_bytes([&] { return image + 0.0; },
                 [&](const Tensor& x) { return cross_entropy(model->forward(x), labels); },
                 model->parameters());
  return kept;
}

// Against torch's graph under CPU autocast's op lists and under CUDA autocast's (the keys
// *.cuda_autocast), which scion's autocast follows on every device: the two differ in layer_norm,
// which CUDA autocast runs in f32 (so it keeps an f32 copy of a bf16 input) and CPU autocast in
// bf16. ViT-T's norms take the f32 residual stream, so both lists give it the same graph.
void check_no_more_than_torch(const std::string& key, const Kept& kept, bool cpu_lists) {
  for (const char* suffix : {".cuda_autocast", ""}) {
    const std::string lists = suffix;
    if (lists.empty() && !cpu_lists) continue;
    INFO(key << lists << " block: scion " << kept.block << " bytes, torch "
             << torch_kept_bytes(key + ".block" + lists));
    CHECK(kept.block <= torch_kept_bytes(key + ".block" + lists));
    INFO(key << lists << " forward: scion " << kept.forward << " bytes, torch "
             << torch_kept_bytes(key + ".model" + lists));
    CHECK(kept.forward <= torch_kept_bytes(key + ".model" + lists));
  }
}

}  // namespace

TEST_CASE("ViT-T under bf16 autocast keeps no more for backward than PyTorch's graph",
          "[nn][memory]") {
  for (double drop_path : {0.0, 0.1})
    check_no_more_than_torch(drop_path > 0 ? "vit_tiny_drop_path" : "vit_tiny",
                             measure("vit_tiny", drop_path), /*cpu_lists=*/true);
}

// ConvNeXt's depthwise convolutions run in f32 under autocast (scion's kernels compute them in
// f32) and keep a bf16 copy of their input for the weight gradient, as torch's bf16 ones keep
// theirs. Under CPU autocast's lists torch keeps less (its layer norms keep bf16 inputs), so
// there only what drop path adds is compared: a mask, not a copy of the branch.
TEST_CASE("ConvNeXt-F under bf16 autocast keeps no more for backward than PyTorch's graph",
          "[nn][memory]") {
  Kept without = measure("convnext_femto", 0.0), with_dp = measure("convnext_femto", 0.1);
  check_no_more_than_torch("convnext_femto", without, /*cpu_lists=*/false);
  check_no_more_than_torch("convnext_femto_drop_path", with_dp, /*cpu_lists=*/false);
  const int64_t torch_without = int64_t(torch_kept_bytes("convnext_femto.block")),
                torch_with = int64_t(torch_kept_bytes("convnext_femto_drop_path.block"));
  INFO("drop path: scion " << without.block << " -> " << with_dp.block << " bytes, torch "
                           << torch_without << " -> " << torch_with);
  CHECK(int64_t(with_dp.block) - int64_t(without.block) <= torch_with - torch_without);
  CHECK(int64_t(with_dp.forward) - int64_t(without.forward) <=
        int64_t(torch_kept_bytes("convnext_femto_drop_path.model")) -
            int64_t(torch_kept_bytes("convnext_femto.model")));
}
