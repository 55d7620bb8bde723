// Allreduce time through scion's MPI communicator (the path gradient buckets take), for the
// data-parallel benchmark (run_dist.py): mpirun -np N bench_allreduce [floats ...]. Rank 0 prints,
// per size, the mean seconds per f32 and bf16 allreduce and the bus bandwidth
// 2 (N - 1) / N * bytes / seconds (what each rank sends and receives in a ring allreduce).
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "core/ops.h"
#include "train/dist.h"

using namespace scion;

int main(int argc, char** argv) {
  auto comm = train::dist::connect(600);
  std::vector<int64_t> sizes;
  for (int i = 1; i < argc; ++i) sizes.push_back(std::stoll(argv[i]));
  if (sizes.empty()) sizes = {262144, 1048576, 5242880};
  const int n = comm->size();
  if (comm->is_root())
    std::printf(
        "| floats | MB (f32) | f32 ms | f32 bus GB/s | bf16 ms | bf16 bus GB/s |\n"
        "|---|---|---|---|---|---|\n");
  for (int64_t numel : sizes) {
    double ms[2] = {0, 0};
    for (int k = 0; k < 2; ++k) {
      Tensor t = full({numel}, 1.0, k == 0 ? DType::f32 : DType::bf16);
      for (int w = 0; w < 3; ++w) comm->allreduce_sum(t, "warmup")->wait();
      const int reps = 20;
      const auto t0 = std::chrono::steady_clock::now();
      for (int r = 0; r < reps; ++r) comm->allreduce_sum(t, "timed")->wait();
      ms[k] =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() /
          reps;
    }
    const double bytes = double(numel) * 4, bus = 2.0 * (n - 1) / n;
    if (comm->is_root())
      std::printf("| %lld | %.1f | %.2f | %.2f | %.2f | %.2f |\n", (long long)numel, bytes / 1e6,
                  ms[0], bus * bytes / ms[0] / 1e6, ms[1], bus * bytes / 2 / ms[1] / 1e6);
  }
  return 0;
}
