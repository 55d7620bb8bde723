// The core-only demo (`build/bin/mlp_demo`, the first `make demo`; README "Core-only demo"): a
// 2-layer MLP (784 -> 256 -> 10, ReLU) trained with plain minibatch SGD on Fashion-MNIST using only
// scion's core (tensors, autograd, ops, RNG), written top to bottom as a first example to read.
// Prints test accuracy per epoch. Parameters are initialized like torch.nn.Linear (uniform in
// +-1/sqrt(fan_in)).
#include <CLI/CLI.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>

#include "core/backend.h"
#include "core/scion.h"
#include "data/idx.h"

using namespace scion;

namespace {

// u8 images (N, 28, 28) -> normalized f32 (N, 784) with Fashion-MNIST's mean/std.
Tensor prepare(const Tensor& images) {
  Tensor x = images.to(DType::f32).reshape({images.size(0), 784});
  return (x * (1.0 / 255.0) - 0.2860) * (1.0 / 0.3530);
}

double accuracy(const Tensor& logits, const Tensor& labels) {
  Tensor pred = argmax(logits, 1);
  Tensor hit = eq(pred, labels.to(DType::i64));
  return sum(hit.to(DType::f32)).item() / double(labels.numel());
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Train a 2-layer MLP on Fashion-MNIST with scion's core"};
  std::string root = "/usr/share/datasets/fashion-mnist";
  int epochs = 2, batch = 64, hidden = 256, threads = 0;
  double lr = 0.1;
  uint64_t seed = 0;
  app.add_option("--data", root, "folder with the IDX files (gzip or plain)");
  app.add_option("--epochs", epochs, "epochs")->check(CLI::PositiveNumber);
  app.add_option("--batch", batch, "batch size")->check(CLI::PositiveNumber);
  app.add_option("--hidden", hidden, "hidden units")->check(CLI::PositiveNumber);
  app.add_option("--lr", lr, "SGD learning rate")->check(CLI::PositiveNumber);
  app.add_option("--seed", seed, "seed for init and shuffling");
  app.add_option("--threads", threads, "threads (0 = all cores)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  try {
    set_num_threads(threads);
    auto train = data::load_mnist(root, "train");
    auto test = data::load_mnist(root, "test");
    Tensor xtr = prepare(train.images), ytr = train.labels.to(DType::i64);
    Tensor xte = prepare(test.images), yte = test.labels.to(DType::i64);
    std::printf(
        "Fashion-MNIST: %lld train, %lld test images; MLP 784-%d-10, SGD lr %.3g, batch %d\n",
        (long long)xtr.size(0), (long long)xte.size(0), hidden, lr, batch);

    Generator gen(seed);
    auto linear_init = [&](int64_t out, int64_t in, Tensor& w, Tensor& b) {
      double bound = 1.0 / std::sqrt(double(in));
      w = empty({out, in});
      b = empty({out});
      uniform_(w, -bound, bound, gen);
      uniform_(b, -bound, bound, gen);
      w.requires_grad_();
      b.requires_grad_();
    };
    Tensor w1, b1, w2, b2;
    linear_init(hidden, 784, w1, b1);
    linear_init(10, hidden, w2, b2);
    std::vector<Tensor> params{w1, b1, w2, b2};
    auto forward = [&](const Tensor& x) { return linear(relu(linear(x, w1, b1)), w2, b2); };

    int64_t n = xtr.size(0), steps = n / batch;
    for (int epoch = 1; epoch <= epochs; ++epoch) {
      auto t0 = std::chrono::steady_clock::now();
      Tensor perm = randperm(n, gen);
      double loss_sum = 0;
      for (int64_t s = 0; s < steps; ++s) {
        Tensor idx = perm.narrow(0, s * batch, batch);
        Tensor loss = cross_entropy(forward(index_select(xtr, 0, idx)), index_select(ytr, 0, idx));
        for (Tensor& p : params) p.zero_grad();
        loss.backward();
        NoGradGuard ng;
        for (Tensor& p : params) p.add_(p.grad(), -lr);
        loss_sum += loss.item();
      }
      double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      NoGradGuard ng;
      double acc = accuracy(forward(xte), yte);
      std::printf("epoch %d  train loss %.4f  test accuracy %.2f%%  (%.1f s, %.0f images/s)\n",
                  epoch, loss_sum / double(steps), 100.0 * acc, secs, double(steps * batch) / secs);
      if (epoch == epochs) std::printf("final test accuracy: %.2f%%\n", 100.0 * acc);
    }
  } catch (const InputError& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
