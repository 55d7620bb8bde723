// Test helpers: closeness with atol + rtol * |ref|, a finite-difference gradient check, and access
// to the PyTorch-generated golden fixtures in tests/golden/.
#pragma once

#include <catch2/catch.hpp>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "core/scion.h"
#include "tests/temp_dirs.h"

namespace scion::test {

// |a - b| <= tol (max|b| + |b|) everywhere (test_backend_ops' rule), no NaN (an output a kernel
// left unwritten, filled with NaN beforehand, fails): the emulated-GPU kernel tests, as
// CHECK(near(a, b, tol, "what")). When it fails, the worst element goes to the failing assertion's
// message.
inline bool near(const Tensor& a, const Tensor& b, double tol, const char* what) {
  if (a.shape() != b.shape()) {
    UNSCOPED_INFO(what << ": shape " << shape_str(a.shape()) << " vs " << shape_str(b.shape()));
    return false;
  }
  const std::vector<double> x = a.to_vector(), y = b.to_vector();
  double scale = 0, worst = 0;
  for (double v : y) scale = std::max(scale, std::fabs(v));
  int64_t bad = -1;
  for (size_t i = 0; i < x.size(); ++i) {
    const double excess =
        std::isnan(x[i]) ? INFINITY : std::fabs(x[i] - y[i]) - tol * (scale + std::fabs(y[i]));
    if (excess > worst) worst = excess, bad = int64_t(i);
  }
  if (bad >= 0)
    UNSCOPED_INFO(what << ": worst element " << bad << ": " << x[size_t(bad)] << " vs "
                       << y[size_t(bad)] << " (tolerance " << tol << " of scale " << scale << ")");
  return bad < 0;
}

// Whether a CUDA device is there for a [cuda] test; without one, prints one line saying which
// test was skipped and why, and the test returns (passes) without checking anything else.
inline bool cuda_or_skip(const std::string& what) {
  if (cuda_device_count() > 0) return true;
  WARN("SKIPPED [cuda] " << what << ": "
                         << (cuda_built() ? "no CUDA device on this machine"
                                          : "this build has no CUDA backend"));
  return false;
}

// max |t|.
inline double max_abs(const Tensor& t) {
  double m = 0;
  for (double v : t.to_vector()) m = std::max(m, std::fabs(v));
  return m;
}

// Largest violation of |a - b| <= atol + rtol * |b| (<= 0 means all close); reports the worst
// index.
struct Closeness {
  double worst_excess = -1;
  double max_abs_err = 0;
  int64_t worst_index = -1;
  bool ok() const { return worst_excess <= 0; }
};

inline Closeness compare(const Tensor& a, const Tensor& b, double atol, double rtol) {
  REQUIRE(a.shape() == b.shape());
  std::vector<double> x = a.to_vector(), y = b.to_vector();
  Closeness c;
  c.worst_excess = x.empty() ? 0 : -INFINITY;
  for (size_t i = 0; i < x.size(); ++i) {
    double err = std::fabs(x[i] - y[i]);
    double excess = std::isnan(err) ? INFINITY : err - (atol + rtol * std::fabs(y[i]));
    c.max_abs_err = std::max(c.max_abs_err, err);
    if (excess > c.worst_excess) c.worst_excess = excess, c.worst_index = int64_t(i);
  }
  return c;
}

#define CHECK_CLOSE(a, b, atol, rtol)                                             \
  do {                                                                            \
    auto _c = ::scion::test::compare((a), (b), (atol), (rtol));                   \
    INFO("max abs err " << _c.max_abs_err << ", worst index " << _c.worst_index); \
    CHECK(_c.ok());                                                               \
  } while (0)

// Random f64 tensor in [lo, hi) with a fixed seed.
inline Tensor rand_f64(const Shape& shape, uint64_t seed, double lo = -1.0, double hi = 1.0) {
  Generator g(seed);
  Tensor t = empty(shape, DType::f64);
  uniform_(t, lo, hi, g);
  return t;
}

// Central-difference gradient check of f at f64 inputs: compares d sum(f(x) * R) / dx (R a fixed
// random weighting, so every output element matters) against autograd. Returns the worst relative
// error max |num - ana| / max(1, |num|) over all inputs that require grad.
inline double gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                        std::vector<Tensor> inputs, double eps = 1e-6) {
  for (Tensor& t : inputs) REQUIRE(t.dtype() == DType::f64);
  Tensor out = f(inputs);
  Tensor r = rand_f64(out.shape(), 12345, 0.5, 1.5);
  Tensor loss = sum(out * r);
  for (Tensor& t : inputs)
    if (t.requires_grad()) t.zero_grad();
  loss.backward();
  double worst = 0;
  for (size_t k = 0; k < inputs.size(); ++k) {
    Tensor& x = inputs[k];
    if (!x.requires_grad()) continue;
    REQUIRE(x.grad().defined());
    Tensor ana = x.grad().contiguous();
    REQUIRE(x.is_contiguous());
    double* p = x.data<double>();
    const double* g = ana.data<double>();
    for (int64_t i = 0; i < x.numel(); ++i) {
      double keep = p[i];
      double plus, minus;
      {
        NoGradGuard ng;
        p[i] = keep + eps;
        plus = sum(f(inputs) * r).item();
        p[i] = keep - eps;
        minus = sum(f(inputs) * r).item();
        p[i] = keep;
      }
      double num = (plus - minus) / (2 * eps);
      double err = std::fabs(num - g[i]) / std::max(1.0, std::fabs(num));
      if (err > worst) {
        worst = err;
        UNSCOPED_INFO("input " << k << " element " << i << ": numeric " << num << " analytic "
                               << g[i]);
      }
    }
  }
  return worst;
}

// A fresh folder of this test's own (mkdtemp), so tests running in parallel never collide;
// removed when the test run passes, kept when it fails (tests/temp_dirs.h).
inline std::string temp_dir() {
  const std::string d = TempDirs::process().make();
  REQUIRE(!d.empty());
  return d;
}

// This test process's own scratch folder (one mkdtemp per process; ctest runs each test case in
// its own process), for paths that several steps of a test share.
inline const std::string& tmp() {
  static const std::string dir = temp_dir();
  return dir;
}

// Fixtures written by tests/golden/make_golden.py.
inline const SafetensorsFile& golden_ops() {
  static SafetensorsFile f =
      SafetensorsFile::open(std::string(SCION_GOLDEN_DIR) + "/ops.safetensors");
  return f;
}

}  // namespace scion::test
