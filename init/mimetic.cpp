// Mimetic initialization (Trockman & Kolter, "Mimetic Initialization of Self-Attention Layers",
// ICML 2023), data-free: in every ViT block, per head h, W_q,h^T W_k,h is the rank-k truncation of
// alpha1 Z1 + beta1 I, and W_v^T W_proj^T = alpha2 Z2 - beta2 I, with Z entries N(0, 1/d) (d the
// embedding width, k the head width), factored through the SVD M = U S V^T as U sqrt(S) and
// sqrt(S) V^T. The paper's vision constants: alpha1 = beta1 = 0.7, alpha2 = beta2 = 0.4. (timm's
// Linear computes x W^T, so the attention logits are x W_q^T W_k x^T and the value path
// x W_v^T W_proj^T.) The qkv and proj biases are zero; everything else is timm's trunc-normal.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/autograd.h"
#include "core/error.h"
#include "init/initializers.h"
#include "nn/vit.h"

namespace scion::init {

void svd_square(const std::vector<double>& a, int64_t n, std::vector<double>& u,
                std::vector<double>& s, std::vector<double>& v) {
  // One-sided Jacobi (Hestenes): rotate column pairs of W = A until they are orthogonal; then
  // A V = W, s_j = |w_j|, u_j = w_j / s_j. Columns sorted by decreasing s.
  std::vector<double> w = a;  // row-major n x n
  v.assign(size_t(n * n), 0.0);
  for (int64_t i = 0; i < n; ++i) v[size_t(i * n + i)] = 1.0;
  for (int sweep = 0; sweep < 60; ++sweep) {
    double off = 0;
    for (int64_t p = 0; p < n - 1; ++p)
      for (int64_t q = p + 1; q < n; ++q) {
        double alpha = 0, beta = 0, gamma = 0;
        for (int64_t r = 0; r < n; ++r) {
          const double wp = w[size_t(r * n + p)], wq = w[size_t(r * n + q)];
          alpha += wp * wp;
          beta += wq * wq;
          gamma += wp * wq;
        }
        if (gamma == 0 || std::fabs(gamma) <= 1e-15 * std::sqrt(alpha * beta)) continue;
        off = std::max(off, std::fabs(gamma) / std::sqrt(alpha * beta));
        const double zeta = (beta - alpha) / (2 * gamma);
        const double t = (zeta >= 0 ? 1.0 : -1.0) / (std::fabs(zeta) + std::sqrt(1 + zeta * zeta));
        const double c = 1 / std::sqrt(1 + t * t), sn = c * t;
        for (int64_t r = 0; r < n; ++r) {
          double& wp = w[size_t(r * n + p)];
          double& wq = w[size_t(r * n + q)];
          const double x = wp, y = wq;
          wp = c * x - sn * y;
          wq = sn * x + c * y;
          double& vp = v[size_t(r * n + p)];
          double& vq = v[size_t(r * n + q)];
          const double vx = vp, vy = vq;
          vp = c * vx - sn * vy;
          vq = sn * vx + c * vy;
        }
      }
    if (off < 1e-14) break;
  }
  std::vector<double> norms(static_cast<size_t>(n));
  for (int64_t j = 0; j < n; ++j) {
    double acc = 0;
    for (int64_t r = 0; r < n; ++r) acc += w[size_t(r * n + j)] * w[size_t(r * n + j)];
    norms[size_t(j)] = std::sqrt(acc);
  }
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t x, int64_t y) { return norms[size_t(x)] > norms[size_t(y)]; });
  u.assign(size_t(n * n), 0.0);
  s.assign(size_t(n), 0.0);
  std::vector<double> v_sorted(static_cast<size_t>(n * n));
  for (int64_t k = 0; k < n; ++k) {
    const int64_t j = order[size_t(k)];
    s[size_t(k)] = norms[size_t(j)];
    for (int64_t r = 0; r < n; ++r) {
      u[size_t(r * n + k)] = norms[size_t(j)] > 0 ? w[size_t(r * n + j)] / norms[size_t(j)] : 0.0;
      v_sorted[size_t(r * n + k)] = v[size_t(r * n + j)];
    }
  }
  v = v_sorted;
}

namespace {

// alpha Z + sign beta I with Z ~ N(0, 1/d), row-major d x d, from `gen`.
std::vector<double> target(int64_t d, double alpha, double beta, double sign, Generator& gen) {
  Tensor z = empty({d, d});
  normal_(z, 0.0, 1.0 / std::sqrt(double(d)), gen);
  std::vector<double> m = z.to_vector();
  for (double& x : m) x *= alpha;
  for (int64_t i = 0; i < d; ++i) m[size_t(i * d + i)] += sign * beta;
  return m;
}

void fill(Tensor dst, const std::vector<double>& values, int64_t row0, int64_t rows, int64_t cols) {
  Tensor src = from_vector(values, {rows, cols});
  dst.narrow(0, row0, rows).copy_(src);
}

}  // namespace

void mimetic_init(nn::Model& model, Generator& gen, const std::string& source) {
  auto* vit = dynamic_cast<nn::VisionTransformer*>(&model);
  SCION_CHECK(vit != nullptr, source,
              ": init.type mimetic initializes self-attention: ", model.config().name,
              " is not a ViT");
  trunc_normal_init(model, gen);
  const int64_t heads = vit->num_heads;
  constexpr double kAlpha1 = 0.7, kBeta1 = 0.7, kAlpha2 = 0.4, kBeta2 = 0.4;
  NoGradGuard ng;
  for (int64_t b = 0; b < vit->depth; ++b) {
    const std::string p = "blocks." + std::to_string(b) + ".attn.";
    Tensor qkv = model.find(p + "qkv.weight"), proj = model.find(p + "proj.weight");
    const int64_t d = qkv.size(1), k = d / heads;
    SCION_CHECK(qkv.size(0) == 3 * d && k * heads == d, source, ": ", p,
                "qkv.weight: unexpected shape for mimetic initialization");
    std::vector<double> u, s, v;
    for (int64_t h = 0; h < heads; ++h) {
      svd_square(target(d, kAlpha1, kBeta1, 1.0, gen), d, u, s, v);
      std::vector<double> wq(size_t(k * d)), wk(size_t(k * d));  // rows of W_q,h and W_k,h
      for (int64_t i = 0; i < k; ++i)
        for (int64_t c = 0; c < d; ++c) {
          const double r = std::sqrt(s[size_t(i)]);
          wq[size_t(i * d + c)] = u[size_t(c * d + i)] * r;  // W_q,h = (U_k sqrt(S_k))^T
          wk[size_t(i * d + c)] = v[size_t(c * d + i)] * r;  // W_k,h = sqrt(S_k) V_k^T
        }
      fill(qkv, wq, h * k, k, d);
      fill(qkv, wk, d + h * k, k, d);
    }
    svd_square(target(d, kAlpha2, kBeta2, -1.0, gen), d, u, s, v);
    std::vector<double> wv(size_t(d * d)), wp(size_t(d * d));
    for (int64_t i = 0; i < d; ++i)
      for (int64_t c = 0; c < d; ++c) {
        wv[size_t(i * d + c)] = u[size_t(c * d + i)] * std::sqrt(s[size_t(i)]);  // sqrt(S) U^T
        wp[size_t(c * d + i)] = v[size_t(c * d + i)] * std::sqrt(s[size_t(i)]);  // V sqrt(S)
      }
    fill(qkv, wv, 2 * d, d, d);
    proj.copy_(from_vector(wp, {d, d}));
    model.find(p + "qkv.bias").fill_(0.0);
    model.find(p + "proj.bias").fill_(0.0);
  }
}

}  // namespace scion::init
