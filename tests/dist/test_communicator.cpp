// The MPI communicator and what data-parallel training builds on it, run as real ranks:
// ctest launches this binary with `mpirun -np 2` (and -np 3). Every rank runs every test case;
// collectives inside a case are matched across ranks, so a case never returns early on one rank.
#include <catch2/catch.hpp>
#include <cmath>
#include <set>
#include <sstream>

#include "core/autograd.h"
#include "core/ops.h"
#include "core/rng.h"
#include "data/loader.h"
#include "tests/dist/dist_test.h"
#include "tests/support.h"
#include "train/dist.h"

using namespace scion;
using namespace scion::train;
using scion::test::world;

TEST_CASE("dist: the job is a real multi-process MPI job", "[dist]") {
  REQUIRE(world().backend() == "mpi");
  REQUIRE(world().size() >= 2);
  std::vector<std::string> ranks = world().allgather(std::to_string(world().rank()), "ranks");
  for (int r = 0; r < world().size(); ++r) CHECK(ranks[size_t(r)] == std::to_string(r));
}

TEST_CASE("dist: allreduce sums f32, f64 and bf16 tensors over the ranks, in place", "[dist]") {
  const int r = world().rank(), n = world().size();
  for (DType dt : {DType::f32, DType::f64, DType::bf16}) {
    INFO(dtype_name(dt));
    // Small integers times powers of two: every partial sum is exact in every order.
    Tensor t = empty({1000}, DType::f64);
    double* p = t.data<double>();
    for (int i = 0; i < 1000; ++i) p[i] = double((i % 7) * (r + 1)) * std::ldexp(1.0, i % 5 - 2);
    Tensor x = t.to(dt);
    world().allreduce_sum(x, "test sum")->wait();
    std::vector<double> got = x.to_vector();
    const double ranks_sum = n * (n + 1) / 2.0;
    for (int i = 0; i < 1000; ++i)
      REQUIRE(got[size_t(i)] == double(i % 7) * ranks_sum * std::ldexp(1.0, i % 5 - 2));
  }
  SECTION("bf16 rounds each addition to bf16, as NCCL") {
    // 1 + 3 * 2^-9 is not a bf16; two ranks' sum rounds to nearest even.
    Tensor x = full({4}, r == 0 ? 1.0 : 3.0 * std::ldexp(1.0, -9), DType::bf16);
    const float rank1 = float(BFloat16(float(3.0 * std::ldexp(1.0, -9))));
    world().allreduce_sum(x, "bf16 rounding")->wait();
    if (n == 2) CHECK(x.to_vector()[0] == double(float(BFloat16(1.0f + rank1))));
    CHECK(x.to_vector()[0] != 1.0 + 3.0 * std::ldexp(1.0, -9));  // never the exact f32 sum
  }
}

TEST_CASE("dist: asynchronous allreduces complete in issue order and overlap the caller",
          "[dist]") {
  std::vector<Tensor> ts;
  std::vector<dist::WorkPtr> works;
  for (int k = 0; k < 8; ++k) {
    ts.push_back(full({100000}, double(k + world().rank()), DType::f32));
    works.push_back(world().allreduce_sum(ts.back(), "bucket " + std::to_string(k)));
  }
  for (int k = 7; k >= 0; --k) works[size_t(k)]->wait();  // waiting in any order is fine
  const int n = world().size();
  for (int k = 0; k < 8; ++k)
    CHECK(ts[size_t(k)].to_vector()[99999] == double(k * n + n * (n - 1) / 2));
}

TEST_CASE("dist: broadcast and allgather", "[dist]") {
  const int r = world().rank(), n = world().size();
  Tensor t = full({3, 5}, double(r + 7), DType::i64);
  world().broadcast(t, n - 1, "test broadcast");
  for (double v : t.to_vector()) CHECK(v == double(n - 1 + 7));
  std::string s = r == 0 ? std::string("state \0 with a NUL and \xff", 24) : "";
  dist::broadcast_string(world(), s, 0, "test string");
  CHECK(s == std::string("state \0 with a NUL and \xff", 24));
  // Different lengths, one empty.
  std::vector<std::string> all = world().allgather(std::string(size_t(r * 3), char('a' + r)), "g");
  REQUIRE(all.size() == size_t(n));
  for (int k = 0; k < n; ++k) CHECK(all[size_t(k)] == std::string(size_t(k * 3), char('a' + k)));
}

TEST_CASE("dist: agree turns one rank's failure into the same outcome on every rank", "[dist]") {
  const int r = world().rank();
  // Only the last rank fails: it reports its own InputError, the others stop quietly.
  try {
    dist::agree(world(), "test step", [&] {
      if (r == world().size() - 1) throw InputError("data.root: /nowhere does not exist");
    });
    FAIL("agree returned although a rank failed");
  } catch (const dist::PeerFailed& e) {
    CHECK(r != world().size() - 1);
    CHECK(e.failed_rank == world().size() - 1);
    CHECK(e.exit_status == 2);
  } catch (const InputError& e) {
    CHECK(r == world().size() - 1);
    CHECK(std::string(e.what()) == "data.root: /nowhere does not exist");
  }
  // The same error on every rank is reported once, by rank 0.
  try {
    dist::agree(world(), "test step", [&] { throw Error("out of memory"); });
    FAIL("agree returned although every rank failed");
  } catch (const dist::PeerFailed& e) {
    CHECK(r != 0);
    CHECK(e.exit_status == 1);
  } catch (const Error& e) {
    CHECK(r == 0);
  }
  dist::agree(world(), "test step", [] {});  // nobody fails: nothing thrown
}

TEST_CASE("dist: the state check passes identical ranks and names the tensor that differs",
          "[dist]") {
  NamedTensors state{{"model.a", full({64}, 1.5)},
                     {"model.b", full({3, 3}, -2.0)},
                     {"optim.b.exp_avg", full({3, 3}, 0.25)}};
  CHECK_NOTHROW(dist::check_identical(world(), state, "epoch check"));
  if (world().rank() == 1) state[1].second.data<float>()[4] = std::nextafter(-2.0f, 0.0f);
  try {
    dist::check_identical(world(), state, "epoch check");
    FAIL("a differing state passed the check");
  } catch (const dist::PeerFailed&) {
    CHECK(world().rank() != 0);
  } catch (const Error& e) {
    REQUIRE(world().rank() == 0);
    CHECK_THAT(e.what(), Catch::Contains("rank 1") && Catch::Contains("model.b"));
  }
  CHECK(dist::checksum(state) != dist::checksum({state[0], state[2], state[1]}));
}

namespace {

// A two-layer perceptron on raw tensors, plus a parameter the loss never uses.
struct Mlp {
  NamedTensors params;
  Mlp() {
    Generator g(11);
    auto param = [&](const std::string& name, const Shape& shape) {
      Tensor t = empty(shape);
      uniform_(t, -0.5, 0.5, g);
      t.requires_grad_();
      params.emplace_back(name, t);
    };
    param("fc1.weight", {12, 16});
    param("fc1.bias", {16});
    param("fc2.weight", {16, 5});
    param("fc2.bias", {5});
    param("unused", {7});
  }
  Tensor loss(const Tensor& x, const Tensor& y) {
    Tensor h = gelu(matmul(x, params[0].second) + params[1].second);
    return cross_entropy(matmul(h, params[2].second) + params[3].second, y);
  }
  void zero_grad() {
    for (auto& [n, p] : params) p.zero_grad();
  }
};

}  // namespace

TEST_CASE("dist: the reducer's averaged shard gradients are the whole batch's gradients",
          "[dist]") {
  const int r = world().rank(), n = world().size();
  const int64_t rows = 4, global = rows * n;
  Generator g(5);
  Tensor x = empty({2, global, 12});  // two micro-batches (gradient accumulation)
  uniform_(x, -2, 2, g);
  Tensor y = empty({2, global}, DType::i64);
  for (int64_t i = 0; i < 2 * global; ++i) y.data<int64_t>()[i] = (i * 7) % 5;
  for (bool bf16 : {false, true}) {
    INFO((bf16 ? "bf16 compression" : "f32"));
    Mlp whole, shard;
    // The reference: one process, each micro-batch's mean loss halved (accumulation of 2).
    for (int m = 0; m < 2; ++m) (whole.loss(x.select(0, m), y.select(0, m)) * 0.5).backward();
    // Buckets of >= 10 floats: {unused, fc2.bias}, {fc2.weight}, {fc1.bias}, {fc1.weight}.
    dist::GradReducer reducer(world(), shard.params, 10 * 4 / (1024.0 * 1024.0), bf16);
    CHECK(reducer.num_buckets() == 4);
    for (int m = 0; m < 2; ++m) {
      reducer.prepare(/*sync=*/m == 1);
      Tensor xs = x.select(0, m).narrow(0, r * rows, rows).contiguous();
      Tensor ys = y.select(0, m).narrow(0, r * rows, rows).contiguous();
      (shard.loss(xs, ys) * 0.5).backward();
      reducer.finish();
      if (m == 0) {  // no_sync: the first micro-batch's gradients are still this shard's own
        Tensor own = shard.params[0].second.grad();
        std::vector<double> mine = own.to_vector();
        std::vector<std::string> all = world().allgather(std::to_string(mine[0]), "m0");
        CHECK(all[0] != all[size_t(n - 1)]);
      }
    }
    for (size_t k = 0; k < 4; ++k) {
      INFO(whole.params[k].first);
      // f32: the same sums in another order (rounding only); bf16: each gradient rounded to bf16
      // (relative 2^-9) before the sum.
      Tensor ref = whole.params[k].second.grad();
      double scale = 0;
      for (double v : ref.to_vector()) scale = std::max(scale, std::fabs(v));
      CHECK_CLOSE(shard.params[k].second.grad(), ref, bf16 ? scale / 64 : 1e-7,
                  bf16 ? 1.0 / 64 : 1e-5);
    }
    CHECK_FALSE(shard.params[4].second.grad().defined());  // never used: no gradient made up
  }
}

TEST_CASE("dist: dropout masks under a batch shard are the whole batch's rows", "[dist]") {
  const int r = world().rank(), n = world().size();
  const int64_t rows = 3;
  Generator a(21), b(21);
  Tensor whole = bernoulli({rows * n, 4, 5}, 0.5, DType::f32, a);
  Tensor mine;
  {
    BatchShardGuard guard({rows * n, rows * r, rows});
    mine = bernoulli({rows, 4, 5}, 0.5, DType::f32, b);
    Tensor other = bernoulli({2, 4}, 0.5, DType::f32, b);  // not batch-shaped: drawn as usual
    CHECK(other.numel() == 8);
  }
  CHECK(mine.to_vector() == whole.narrow(0, rows * r, rows).contiguous().to_vector());
  CHECK(b.offset() == a.offset() + 8);  // the generators stay in step with the one-process run
}

namespace {

// n samples whose label is their index: which samples a loader returned is visible in the labels.
class IndexDataset : public data::Dataset {
 public:
  explicit IndexDataset(int64_t n) : n_(n) {}
  int64_t size() const override { return n_; }
  int64_t label(int64_t i) const override { return i; }
  data::Sample get(int64_t i) const override {
    data::Sample s;
    s.image = data::Image(4, 4, 3);
    s.label = i;
    s.name = "sample " + std::to_string(i);
    return s;
  }
  int64_t num_classes() const override { return n_; }

 private:
  int64_t n_;
};

}  // namespace

TEST_CASE("dist: every sample is in exactly one rank's shard, once per epoch", "[dist]") {
  const int n = world().size();
  auto ds = std::make_shared<IndexDataset>(50);
  data::PipelineConfig pc;
  pc.img_size = 4;
  for (bool train : {true, false}) {
    INFO((train ? "training: shuffled, drop_last" : "evaluation: in order, last batch partial"));
    data::LoaderOptions o;
    o.batch_size = 6 * n;
    o.seed = 9;
    o.shard = world().rank();
    o.shards = n;
    o.shuffle = o.drop_last = train;
    o.workers = 1;
    data::PipelineConfig p = pc;
    p.train = train;
    data::DataLoader dl(ds, data::Pipeline(p), o);
    for (int64_t epoch : {0, 1}) {
      dl.start_epoch(epoch);
      std::string seen;
      data::Batch b;
      while (dl.next(b))
        for (double v : b.labels.to_vector()) seen += std::to_string(int64_t(v)) + " ";
      std::vector<std::string> all = world().allgather(seen, "labels");
      std::multiset<int64_t> labels;
      for (const std::string& s : all) {
        std::istringstream in(s);
        for (int64_t v; in >> v;) labels.insert(v);
      }
      const int64_t expected = train ? 50 / (6 * n) * (6 * n) : 50;
      CHECK(int64_t(labels.size()) == expected);
      for (int64_t v : labels) CHECK(labels.count(v) == 1);
      if (!train) CHECK(*labels.rbegin() == 49);
    }
  }
}
