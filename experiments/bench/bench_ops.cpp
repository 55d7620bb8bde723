// Op micro-benchmark: times each op of experiments/bench/ops.json (forward, and forward+backward)
// in f32 and bf16 and prints one JSON line per case. experiments/bench/run_ops.py runs this and the
// same ops in PyTorch with the same thread count and prints the ratio table.
//   bench_ops --cases experiments/bench/ops.json [--threads 2] [--min-seconds 0.5]
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <fstream>
#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>

#include "core/backend.h"
#include "core/scion.h"

using namespace scion;
using nlohmann::json;

namespace {

double median_ms(const std::function<void()>& f, double min_seconds) {
  for (int i = 0; i < 3; ++i) f();  // warm-up: primitive creation, allocator cache
  std::vector<double> ms;
  auto start = std::chrono::steady_clock::now();
  while (ms.size() < 5 ||
         std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() <
             min_seconds) {
    auto t0 = std::chrono::steady_clock::now();
    f();
    ms.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    if (ms.size() >= 200) break;
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

struct Case {
  std::function<Tensor()> forward;
  std::vector<Tensor> inputs;
  double flops = 0;  // forward FLOPs (0 when not meaningful)
};

Case make_case(const std::string& op, const std::vector<int64_t>& s, DType dt, Generator& gen) {
  auto input = [&](const Shape& shape) {
    Tensor t = randn(shape, DType::f32, gen).to(dt);
    t.requires_grad_();
    return t;
  };
  Case c;
  if (op == "linear") {
    Tensor x = input({s[0], s[1]}), w = input({s[2], s[1]}), b = input({s[2]});
    c.inputs = {x, w, b};
    c.forward = [=] { return linear(x, w, b); };
    c.flops = 2.0 * double(s[0]) * double(s[1]) * double(s[2]);
  } else if (op == "bmm") {
    Tensor a = input({s[0], s[1], s[2]}), b = input({s[0], s[2], s[3]});
    c.inputs = {a, b};
    c.forward = [=] { return matmul(a, b); };
    c.flops = 2.0 * double(s[0]) * double(s[1]) * double(s[2]) * double(s[3]);
  } else if (op == "dwconv7" || op == "dwconv7_cl") {
    Tensor x = input({s[0], s[1], s[2], s[3]}), w = input({s[1], 1, 7, 7}), b = input({s[1]});
    if (op == "dwconv7_cl")  // NHWC memory, as torch's channels_last
      x = x.detach().permute({0, 2, 3, 1}).contiguous().permute({0, 3, 1, 2}).requires_grad_();
    c.inputs = {x, w, b};
    Conv2dOptions o;
    o.padding = {3, 3};
    o.groups = s[1];
    c.forward = [=] { return conv2d(x, w, b, o); };
    c.flops = 2.0 * 49.0 * double(s[0] * s[1] * s[2] * s[3]);
  } else if (op == "layer_norm") {
    Tensor x = input({s[0], s[1]}), w = input({s[1]}), b = input({s[1]});
    c.inputs = {x, w, b};
    c.forward = [=] { return layer_norm(x, {s[1]}, w, b, 1e-6); };
  } else if (op == "softmax") {
    Tensor x = input({s[0], s[1], s[2]});
    c.inputs = {x};
    c.forward = [=] { return softmax(x, -1); };
  } else if (op == "gelu") {
    Tensor x = input({s[0], s[1]});
    c.inputs = {x};
    c.forward = [=] { return gelu(x); };
  } else if (op == "add") {
    Tensor a = input({s[0], s[1]}), b = input({s[0], s[1]});
    c.inputs = {a, b};
    c.forward = [=] { return add(a, b); };
  } else if (op == "cast") {  // f32 -> bf16, or bf16 -> f32 (autocast's casts and widenings)
    Tensor x = input({s[0], s[1]});
    c.inputs = {x};
    c.forward = [=] { return x.to(dt == DType::f32 ? DType::bf16 : DType::f32); };
  } else {
    throw InputError("bench_ops: unknown op '" + op + "'");
  }
  return c;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"scion op benchmark"};
  std::string cases_path = "experiments/bench/ops.json";
  int threads = 0;
  double min_seconds = 0.5;
  std::vector<std::string> dtypes{"f32", "bf16"};
  app.add_option("--cases", cases_path, "JSON list of {op, shape}");
  app.add_option("--threads", threads, "threads (0 = all cores)");
  app.add_option("--min-seconds", min_seconds, "minimum timing per case");
  app.add_option("--dtypes", dtypes, "dtypes to run");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  try {
    set_num_threads(threads);
    std::ifstream in(cases_path);
    SCION_CHECK(in.good(), cases_path, ": cannot open");
    json cases = json::parse(in);
    Generator gen(0);
    for (const json& cj : cases) {
      std::string op = cj.at("op");
      std::vector<int64_t> shape = cj.at("shape").get<std::vector<int64_t>>();
      for (const std::string& dts : dtypes) {
        DType dt = dts == "bf16" ? DType::bf16 : DType::f32;
        Case c = make_case(op, shape, dt, gen);
        Tensor probe = c.forward();
        Tensor gout = randn(probe.shape(), DType::f32, gen).to(dt);
        double fwd = median_ms(
            [&] {
              NoGradGuard ng;
              c.forward();
            },
            min_seconds);
        double fwd_bwd = median_ms(
            [&] {
              for (Tensor& t : c.inputs) t.zero_grad();
              c.forward().backward(gout);
            },
            min_seconds);
        json r{
            {"op", op}, {"shape", shape}, {"dtype", dts}, {"fwd_ms", fwd}, {"fwd_bwd_ms", fwd_bwd}};
        if (c.flops > 0) r["fwd_gflops"] = c.flops / (fwd * 1e6);
        std::cout << r.dump() << std::endl;
      }
    }
  } catch (const InputError& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
