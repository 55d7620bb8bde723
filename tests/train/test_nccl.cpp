// The NCCL communicator (train/dist_nccl.cpp) on one GPU: a one-rank communicator over the
// single-process bootstrap runs NCCL's real collectives and the gradient reducer's buckets on the
// device. Several ranks need several GPUs (NCCL takes one GPU per rank); the collectives' order
// and the reducer's arithmetic are the MPI tests' (tests/dist), which share the code above them.
#include "tests/support.h"
#include "train/dist.h"

using namespace scion;
using namespace scion::train;

TEST_CASE("nccl: one-rank collectives and the gradient reducer on the GPU", "[cuda]") {
  if (!test::cuda_or_skip("NCCL communicator")) return;
  std::unique_ptr<dist::Communicator> boot = dist::connect(60);
  std::unique_ptr<dist::Communicator> nccl = dist::connect_nccl(*boot, 0, 60);
  REQUIRE(nccl);  // a CUDA build finds NCCL beside the toolkit
  CHECK(nccl->backend() == "nccl");
  CHECK(nccl->size() == 1);
  CHECK(nccl->local_rank() == 0);
  const Device gpu = parse_device("cuda");
  for (DType dt : {DType::f32, DType::bf16, DType::f64}) {
    INFO(dtype_name(dt));
    Tensor host = test::rand_f64({1000}, 3).to(dt);
    Tensor t = host.to(gpu);
    nccl->allreduce_sum(t, "test allreduce")->wait();  // the sum over one rank
    CHECK_CLOSE(t.cpu(), host, 0.0, 0.0);
    nccl->broadcast(t, 0, "test broadcast");
    CHECK_CLOSE(t.cpu(), host, 0.0, 0.0);
  }
  CHECK(nccl->allgather("abc", "test allgather") == std::vector<std::string>{"abc"});

  // The reducer's buckets are copied, reduced through NCCL and averaged on the device.
  Generator g(5);
  Tensor x = empty({8, 12}), w0 = empty({12, 5}), b0 = empty({5});
  uniform_(x, -2, 2, g), uniform_(w0, -0.5, 0.5, g), uniform_(b0, -0.5, 0.5, g);
  Tensor y = from_vector({0, 1, 2, 3, 4, 0, 1, 2}, {8}, DType::i64);
  auto grads = [&](dist::Communicator* comm, bool bf16) {
    std::vector<std::pair<std::string, Tensor>> params{{"w", w0.to(gpu).requires_grad_()},
                                                       {"b", b0.to(gpu).requires_grad_()}};
    std::unique_ptr<dist::GradReducer> reducer;
    if (comm) reducer = std::make_unique<dist::GradReducer>(*comm, params, 1e-4, bf16);
    if (reducer) reducer->prepare(true);
    cross_entropy(matmul(x.to(gpu), params[0].second) + params[1].second, y.to(gpu)).backward();
    if (reducer) reducer->finish();
    return std::vector<Tensor>{params[0].second.grad().cpu(), params[1].second.grad().cpu()};
  };
  std::vector<Tensor> plain = grads(nullptr, false), reduced = grads(nccl.get(), false),
                      compressed = grads(nccl.get(), true);
  for (size_t k = 0; k < 2; ++k) {
    CHECK_CLOSE(reduced[k], plain[k], 0.0, 0.0);  // an average over one rank changes nothing
    CHECK_CLOSE(compressed[k], plain[k], 0.0, 1.0 / 256);  // rounded to bf16 on the way
  }
}
