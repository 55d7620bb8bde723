// Tensor basics: creation, dtypes, views share storage and compute the right strides, contiguous
// copies, dtype conversion (bf16 rounding), the caching allocator and the counter-based RNG.
#include <cstring>

#include "core/backend.h"
#include "tests/support.h"

using namespace scion;

TEST_CASE("creation and dtypes", "[tensor]") {
  Tensor z = zeros({2, 3});
  CHECK(z.shape() == Shape{2, 3});
  CHECK(z.strides() == Shape{3, 1});
  CHECK(z.dtype() == DType::f32);
  CHECK(sum(z).item() == 0.0);
  CHECK(ones({4}, DType::f64).to_vector() == std::vector<double>{1, 1, 1, 1});
  CHECK(full({2}, 7.5, DType::bf16).to_vector() == std::vector<double>{7.5, 7.5});
  CHECK(arange(0, 5).to_vector() == std::vector<double>{0, 1, 2, 3, 4});
  CHECK(arange(1, 2, 0.25, DType::f32).to_vector() == std::vector<double>{1, 1.25, 1.5, 1.75});
  CHECK(arange(0, 3, 1, DType::i32).dtype() == DType::i32);
  for (DType t :
       {DType::f32, DType::bf16, DType::f64, DType::i32, DType::i64, DType::u8, DType::bool_})
    CHECK(empty({3}, t).numel() == 3);
  CHECK(dtype_size(DType::bf16) == 2);
  float buf[4] = {1, 2, 3, 4};
  Tensor b = from_blob(buf, {2, 2}, DType::f32);
  CHECK(b.data<float>() == buf);
  CHECK_THROWS_AS(empty({-1}), InputError);
}

TEST_CASE("storage is 64-byte aligned and reused by the caching allocator", "[tensor]") {
  void* first;
  {
    Tensor t = empty({1000});
    first = t.storage()->data();
    CHECK(reinterpret_cast<uintptr_t>(first) % 64 == 0);
  }
  Tensor again = empty({1000});
  CHECK(again.storage()->data() == first);
  CHECK(CachingAllocator::round_size(5000) >= 5000);
}

TEST_CASE("the caching allocator's peak: the most live bytes since the last reset", "[tensor]") {
  auto& alloc = CachingAllocator::cpu();
  const size_t big = CachingAllocator::round_size(1 << 20);
  alloc.reset_peak();
  const size_t start = alloc.live_bytes();
  CHECK(alloc.peak_live_bytes() == start);
  {
    Tensor a = empty({1 << 18});  // 1 MiB of f32
    Tensor b = empty({1 << 18});
    CHECK(alloc.peak_live_bytes() == start + 2 * big);
  }
  Tensor c = empty({1 << 18});
  CHECK(alloc.live_bytes() == start + big);
  CHECK(alloc.peak_live_bytes() == start + 2 * big);  // kept after the release
  alloc.reset_peak();
  CHECK(alloc.peak_live_bytes() == start + big);  // now live, not zero
}

TEST_CASE("views share storage and have torch's strides", "[tensor]") {
  Tensor x = arange(0, 24, 1, DType::f32).reshape({2, 3, 4});
  CHECK(x.strides() == Shape{12, 4, 1});
  Tensor p = x.permute({2, 0, 1});
  CHECK(p.shape() == Shape{4, 2, 3});
  CHECK(p.strides() == Shape{1, 12, 4});
  CHECK(p.storage() == x.storage());
  CHECK_FALSE(p.is_contiguous());
  Tensor pc = p.contiguous();
  CHECK(pc.is_contiguous());
  CHECK(pc.to_vector()[1] == 4.0);  // p[0][0][1] = x[0][1][0]
  Tensor t = x.transpose(0, 2);
  CHECK(t.shape() == Shape{4, 3, 2});
  Tensor n = x.narrow(2, 1, 2);
  CHECK(n.shape() == Shape{2, 3, 2});
  CHECK(n.offset() == 1);
  CHECK(n.to_vector()[0] == 1.0);
  CHECK(x.slice(1, 0, 3, 2).to_vector() ==
        std::vector<double>{0, 1, 2, 3, 8, 9, 10, 11, 12, 13, 14, 15, 20, 21, 22, 23});
  CHECK(x.select(0, 1).to_vector()[0] == 12.0);
  Tensor e = arange(0, 3, 1, DType::f32).reshape({3, 1}).expand({2, 3, 4});
  CHECK(e.strides() == Shape{0, 1, 0});
  CHECK(e.contiguous().to_vector()[5] == 1.0);
  CHECK(x.unsqueeze(1).shape() == Shape{2, 1, 3, 4});
  CHECK(x.unsqueeze(-1).shape() == Shape{2, 3, 4, 1});
  CHECK(x.unsqueeze(1).squeeze(1).shape() == Shape{2, 3, 4});
  CHECK(x.reshape({6, -1}).shape() == Shape{6, 4});
  CHECK(x.view({4, 6}).storage() == x.storage());
  CHECK_THROWS_AS(p.view({24}), InputError);  // not viewable: reshape copies instead
  CHECK(p.reshape({24}).to_vector()[1] == 4.0);
  CHECK(x.flatten(1).shape() == Shape{2, 12});
  CHECK_THROWS_AS(x.reshape({5, 5}), InputError);
  CHECK_THROWS_AS(x.expand({3, 3, 4}), InputError);
  CHECK_THROWS_AS(x.permute({0, 0, 1}), InputError);
}

TEST_CASE("dtype conversion rounds f32 to bf16 to nearest even", "[tensor]") {
  CHECK(float(BFloat16(1.0f)) == 1.0f);
  // 1 + 2^-8 is halfway between bf16 neighbours 1 and 1 + 2^-7: ties go to the even one (1).
  CHECK(float(BFloat16(1.0f + 1.0f / 256)) == 1.0f);
  CHECK(float(BFloat16(1.0f + 3.0f / 256)) == 1.0f + 1.0f / 64);
  CHECK(std::isnan(float(BFloat16(NAN))));
  Tensor x = from_vector({0.1, -2.5, 3.14159}, {3});
  Tensor b = x.to(DType::bf16);
  CHECK(b.dtype() == DType::bf16);
  CHECK(b.to(DType::f32).to_vector()[1] == -2.5);
  CHECK(std::fabs(b.to_vector()[2] - 3.14159) < 0.02);
  CHECK(x.to(DType::i64).to_vector() == std::vector<double>{0, -2, 3});
}

TEST_CASE("in-place helpers", "[tensor]") {
  Tensor x = ones({2, 3});
  x.add_(full({3}, 2.0), 0.5);
  CHECK(x.to_vector() == std::vector<double>(6, 2.0));
  x.mul_(3.0);
  CHECK(x.to_vector()[0] == 6.0);
  x.narrow(1, 0, 1).fill_(-1);
  CHECK(x.to_vector() == std::vector<double>{-1, 6, 6, -1, 6, 6});
}

TEST_CASE("RNG is counter-based: same seed, same numbers, on any thread count", "[tensor][rng]") {
  auto draw = [](int threads) {
    set_num_threads(threads);
    Generator g(42);
    Tensor u = rand({100000}, DType::f32, g);
    Tensor n = randn({100000}, DType::f32, g);
    set_num_threads(0);
    return std::make_pair(u.to_vector(), n.to_vector());
  };
  auto one = draw(1), two = draw(2);
  CHECK(one.first == two.first);
  CHECK(one.second == two.second);
  Generator g1(1), g2(2);
  CHECK(rand({8}, DType::f32, g1).to_vector() != rand({8}, DType::f32, g2).to_vector());
  // Moments.
  Tensor u = from_vector(one.first, {100000}, DType::f64),
         n = from_vector(one.second, {100000}, DType::f64);
  CHECK(std::fabs(mean(u).item() - 0.5) < 0.01);
  CHECK(std::fabs(mean(n).item()) < 0.01);
  CHECK(std::fabs(var(n).item() - 1.0) < 0.02);
  CHECK(max(u).item() < 1.0);
}

TEST_CASE("trunc_normal, bernoulli and randperm", "[tensor][rng]") {
  Generator g(7);
  Tensor t = empty({50000}, DType::f64);
  trunc_normal_(t, 0.0, 1.0, -2.0, 2.0, g);
  std::vector<double> v = t.to_vector();
  CHECK(*std::min_element(v.begin(), v.end()) >= -2.0);
  CHECK(*std::max_element(v.begin(), v.end()) <= 2.0);
  // Variance of N(0,1) truncated to [-2, 2] is 0.7737.
  CHECK(std::fabs(var(t).item() - 0.7737) < 0.02);
  Tensor small = empty({20000}, DType::f32);
  trunc_normal_(small, 0.0, 0.02, -2.0, 2.0, g);  // timm's default: bounds far outside std
  CHECK(std::fabs(var(small.to(DType::f64)).item() - 0.0004) < 0.00004);
  Tensor b = bernoulli({100000}, 0.3, DType::f32, g);
  CHECK(std::fabs(mean(b).item() - 0.3) < 0.01);
  Tensor p = randperm(1000, g);
  std::vector<double> pv = p.to_vector();
  std::sort(pv.begin(), pv.end());
  for (int i = 0; i < 1000; ++i) CHECK(pv[size_t(i)] == double(i));
  Generator a(3), c(3);
  CHECK(randperm(50, a).to_vector() == randperm(50, c).to_vector());
}
