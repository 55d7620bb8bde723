// This machine's peak, as the model benchmarks' yardstick: GEMM GFLOP/s through oneDNN (f32 and
// bf16, square sizes large enough to be compute-bound) and memory bandwidth (a STREAM-style triad
// over arrays far larger than the caches), with the thread count the models run with. One JSON
// line: the CPU model, the ISA oneDNN dispatches to and scion's kernel level (both under
// SCION_MAX_ISA / ONEDNN_MAX_CPU_ISA), whether bf16 is native (else the bf16 GEMM is oneDNN's f32
// one on widened copies, as the models run it), and the best of several repetitions.
//   bench_peak [--threads 2] [--size 2048] [--reps 5]
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/backend.h"
#include "core/cpu/isa.h"
#include "core/cpu/parallel.h"
#include "core/scion.h"

using namespace scion;

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Best GFLOP/s of an n x n x n matmul in `dt` over `reps` runs (one untimed run first).
double gemm_gflops(int64_t n, DType dt, int reps) {
  Generator g(0);
  Tensor a = randn({n, n}, DType::f32, g).to(dt), b = randn({n, n}, DType::f32, g).to(dt);
  NoGradGuard ng;
  Tensor c = matmul(a, b);
  double best = 1e30;
  for (int i = 0; i < reps; ++i) {
    auto t0 = Clock::now();
    c = matmul(a, b);
    best = std::min(best, seconds_since(t0));
  }
  return 2.0 * double(n) * double(n) * double(n) / best * 1e-9;
}

// Best GB/s of a[i] = b[i] + s * c[i] over `n` floats (12 bytes moved per element).
double triad_gbs(int64_t n, int reps) {
  std::vector<float> a(size_t(n), 0.f), b(size_t(n), 1.f), c(size_t(n), 2.f);
  auto triad = [&] {
    cpu::parallel_for(0, n, 1 << 16, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) a[size_t(i)] = b[size_t(i)] + 3.f * c[size_t(i)];
    });
  };
  triad();
  double best = 1e30;
  for (int i = 0; i < reps; ++i) {
    auto t0 = Clock::now();
    triad();
    best = std::min(best, seconds_since(t0));
  }
  return 12.0 * double(n) / best * 1e-9;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"scion: this machine's GEMM and memory-bandwidth peak"};
  int threads = 2, reps = 5;
  int64_t size = 2048, stream_mb = 768;
  app.add_option("--threads", threads, "threads (0 = all cores)")->check(CLI::Range(0, 1024));
  app.add_option("--size", size, "GEMM size (square)")->check(CLI::PositiveNumber);
  app.add_option("--reps", reps, "timed repetitions (best is kept)")->check(CLI::PositiveNumber);
  app.add_option("--stream-mb", stream_mb, "total size of the three triad arrays, MB")
      ->check(CLI::PositiveNumber);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  try {
    set_num_threads(threads);
    nlohmann::json r{{"cpu", cpu::cpu_model()},
                     {"cpu_isa", cpu::isa_name(cpu::cpu_isa())},
                     {"scion_isa", cpu::isa_name(cpu::active_isa())},
                     {"onednn_isa", cpu::onednn_isa_name()},
                     {"bf16_native", cpu::native_bf16()},
                     {"onednn_bf16", cpu::onednn_has_bf16()},
                     {"threads", num_threads()},
                     {"gemm_size", size},
                     {"gemm_f32_gflops", gemm_gflops(size, DType::f32, reps)},
                     {"gemm_bf16_gflops", gemm_gflops(size, DType::bf16, reps)},
                     {"triad_gbs", triad_gbs(stream_mb * 1000000 / 12, reps)}};
    std::cout << r.dump() << std::endl;
  } catch (const InputError& e) {
    std::cerr << "bench_peak: error: " << e.what() << std::endl;
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "bench_peak: error: " << e.what() << std::endl;
    return 1;
  }
  return 0;
}
