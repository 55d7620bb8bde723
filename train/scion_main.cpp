// The `scion` program: tools around models and weight files (DESIGN.md "Programs").
//   scion models                  registered models with parameter counts (1000 classes, 224 px)
//   scion inspect FILE.safetensors  per tensor: name, dtype, shape, count, mean, std
// Exit status: 0 success, 2 usage or input error (the message names the file or flag), 1 failure.
#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdio>

#include "core/scion.h"
#include "nn/model.h"

using namespace scion;

namespace {

int cmd_models() {
  std::printf("%-16s %14s\n", "model", "parameters");
  for (const std::string& name : nn::model_names()) {
    nn::ModelConfig c;
    c.name = name;
    std::printf("%-16s %14lld\n", name.c_str(), (long long)nn::create_model(c)->num_parameters());
  }
  return 0;
}

int cmd_inspect(const std::string& path) {
  SafetensorsFile f = SafetensorsFile::open(path);
  std::printf("%s: %zu tensors\n", path.c_str(), f.names().size());
  for (const auto& [k, v] : f.metadata()) std::printf("  metadata %s = %s\n", k.c_str(), v.c_str());
  std::printf("%-48s %-5s %-20s %12s %13s %13s\n", "name", "dtype", "shape", "count", "mean",
              "std");
  int64_t total = 0;
  for (const std::string& name : f.names()) {
    Tensor t = f.get(name);
    double m = 0, sd = 0;
    int64_t n = t.numel();
    if (n > 0) {
      std::vector<double> v = t.to_vector();
      double s = 0, s2 = 0;
      for (double x : v) s += x;
      m = s / double(n);
      for (double x : v) s2 += (x - m) * (x - m);
      sd = n > 1 ? std::sqrt(s2 / double(n - 1)) : 0.0;  // torch.std's unbiased estimate
    }
    total += n;
    std::printf("%-48s %-5s %-20s %12lld %13.6g %13.6g\n", name.c_str(), dtype_name(t.dtype()),
                shape_str(t.shape()).c_str(), (long long)n, m, sd);
  }
  std::printf("total elements: %lld\n", (long long)total);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"scion: models and weight files"};
  app.require_subcommand(1);
  auto* models = app.add_subcommand("models", "list registered models with parameter counts");
  std::string path;
  auto* inspect = app.add_subcommand("inspect", "summarize the tensors of a safetensors file");
  inspect->add_option("file", path, "FILE.safetensors")->required();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  try {
    if (*models) return cmd_models();
    if (*inspect) return cmd_inspect(path);
  } catch (const InputError& e) {
    std::fprintf(stderr, "scion: error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "scion: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
