// Model throughput: forward+backward images/s of a model at a batch size and precision (with
// --step, a full training step: forward, backward and an AdamW update with timm's weight-decay
// groups), weights filled by N(0, 0.02) (values do not change the speed). One JSON line per case,
// with memory as torch.cuda counts it (on the CPU, the caching allocator's live bytes): the peak
// over the timed steps, what a forward keeps for backward (graph_mib) and the peak by its end.
// experiments/bench/run_models.py runs the same cases in PyTorch/timm and prints ratios.
//   bench_models --model vit_tiny --set img_size=32 --set patch_size=4 --batch 64 --precision bf16
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <iostream>
#include <nlohmann/json.hpp>

#include "core/backend.h"
#include "core/scion.h"
#include "core/storage.h"
#include "nn/model.h"
#include "train/optim.h"

using namespace scion;

int main(int argc, char** argv) {
  CLI::App app{"scion model throughput"};
  nn::ModelConfig cfg;
  std::vector<std::string> sets;
  int64_t batch = 64;
  int threads = 0, steps = 10, warmup = 3;
  std::string precision = "f32", device_name = "cpu";
  bool step = false;
  app.add_option("--model", cfg.name, "registered model name")->required();
  app.add_option("--set", sets, "model option key=value");
  app.add_option("--batch", batch, "batch size")->check(CLI::Range(1, 1 << 20));
  app.add_option("--precision", precision, "f32 or bf16")->check(CLI::IsMember({"f32", "bf16"}));
  app.add_option("--threads", threads, "threads (0 = all cores)");
  app.add_option("--steps", steps, "timed steps")->check(CLI::Range(1, 1 << 20));
  app.add_option("--warmup", warmup, "untimed steps first")->check(CLI::Range(0, 1 << 20));
  app.add_flag("--step", step, "time the AdamW update too");
  app.add_option("--device", device_name, "cpu or cuda[:N] (a CUDA step ends with a sync)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  try {
    set_num_threads(threads);
    for (const std::string& s : sets) {
      auto eq = s.find('=');
      SCION_CHECK(eq != std::string::npos, "--set ", s, ": expected key=value");
      nn::set_model_option(cfg, s.substr(0, eq), s.substr(eq + 1));
    }
    nn::ModelPtr model = nn::create_model(cfg);
    Generator gen(0);
    {
      NoGradGuard ng;
      for (auto& [name, p] : model->named_parameters()) normal_(p, 0.0, 0.02, gen);
    }
    const Device device = parse_device(device_name, "--device");
    check_device_available(device, "--device");
    model->to(device);
    model->train();
    std::unique_ptr<train::Optimizer> opt;
    if (step)
      opt = std::make_unique<train::Optimizer>(*model, train::OptimizerConfig{},
                                               train::no_weight_decay_names(*model));
    Tensor x = randn({batch, cfg.in_chans, cfg.img_size, cfg.img_size}, DType::f32, gen);
    Tensor y = randperm(batch, gen);
    y = from_vector(
        [&] {
          std::vector<double> v = y.to_vector();
          for (double& e : v) e = double(int64_t(e) % cfg.num_classes);
          return v;
        }(),
        {batch}, DType::i64);
    x = x.to(device);
    // y stays on the host, as the trainer's labels: cross_entropy checks it there and copies it
    // to the device without waiting for the forward (so host_ms is the host's queueing time).
    // Memory in bytes, as torch.cuda's counters (on the CPU: the caching allocator's live bytes):
    // what tensors hold now, their peak since reset_peak().
    const bool cuda = device.type == DeviceType::cuda;
    auto allocated = [&] {
      return cuda ? cuda_memory_stats(device.index).allocated
                  : int64_t(CachingAllocator::cpu().live_bytes());
    };
    auto peak = [&] {
      return cuda ? cuda_memory_stats(device.index).peak_allocated
                  : int64_t(CachingAllocator::cpu().peak_live_bytes());
    };
    auto reset_peak = [&] {
      if (cuda)
        cuda_reset_peak_memory(device.index);
      else
        CachingAllocator::cpu().reset_peak();
    };
    int64_t graph = 0, forward_peak = 0;
    std::vector<double> ms, host_ms;
    for (int i = 0; i < warmup + steps; ++i) {
      if (i == warmup) reset_peak();  // peaks over the timed steps, as bench_torch.py's
      auto t0 = std::chrono::steady_clock::now();
      for (auto& p : model->parameters()) p.zero_grad();
      const int64_t before = allocated();
      Tensor loss;
      {
        AutocastGuard ac(precision == "bf16");
        loss = cross_entropy(model->forward(x), y);
      }
      if (i == warmup) {  // what the forward keeps for backward (and the loss), and its peak
        graph = allocated() - before;
        forward_peak = peak();
      }
      loss.backward();
      if (opt) opt->step(1e-3);
      if (i >= warmup)
        host_ms.push_back(
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                .count());
      // Reading the loss waits for the device: a CUDA step is timed to its end.
      if (!device.is_host()) (void)loss.item();
      if (i + 1 == warmup) cuda_reset_op_times();  // SCION_CUDA_OP_TIMES profiles timed steps
      if (i >= warmup)
        ms.push_back(
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                .count());
    }
    std::sort(ms.begin(), ms.end());
    std::sort(host_ms.begin(), host_ms.end());
    double med = ms[ms.size() / 2];
    nlohmann::json r{{"model", cfg.name},
                     {"batch", batch},
                     {"precision", precision},
                     {"img_size", cfg.img_size},
                     {"step", step},
                     {"step_ms", med},
                     {"images_per_second", double(batch) * 1000.0 / med},
                     {"device", device.str()},
                     // The host's share: time to queue the step (equals step_ms on the CPU; on
                     // a GPU, close to step_ms means the GPU waits for the host).
                     {"host_ms", host_ms[host_ms.size() / 2]}};
    // The timed steps' peak; the first timed step's graph and the peak by the end of its forward.
    const double mib = 1 << 20;
    r["peak_memory_mib"] = double(peak()) / mib;
    r["graph_mib"] = double(graph) / mib;
    r["forward_peak_mib"] = double(forward_peak) / mib;
    if (cuda) r["peak_reserved_mib"] = double(cuda_memory_stats(device.index).peak_reserved) / mib;
    std::cout << r.dump() << std::endl;
  } catch (const InputError& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
