// IDX reading: the real Fashion-MNIST files when installed, plain and gzip, and bad files.
#include <sys/stat.h>

#include <fstream>

#include "data/idx.h"
#include "tests/data/support_data.h"
#include "tests/support.h"

using namespace scion;

namespace {

std::string write_file(const std::string& name, const std::vector<unsigned char>& bytes) {
  std::string p = test::tmp() + "/scion_idx_" + name;
  std::ofstream f(p, std::ios::binary);
  f.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  return p;
}

}  // namespace

TEST_CASE("IDX: plain files with the right header load with their shape", "[data][idx]") {
  std::vector<unsigned char> b = {0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 3};
  for (int i = 0; i < 12; ++i) b.push_back(uint8_t(i));
  Tensor t = data::read_idx(write_file("ok.idx", b));
  CHECK(t.shape() == Shape{2, 2, 3});
  CHECK(t.dtype() == DType::u8);
  CHECK(t.to_vector()[11] == 11.0);
}

TEST_CASE("IDX: wrong magic, truncated data and trailing bytes are errors naming the file",
          "[data][idx]") {
  std::string magic = write_file("magic.idx", {0, 0, 9, 1, 0, 0, 0, 1, 5});
  CHECK_THROWS_WITH(data::read_idx(magic), Catch::Contains(magic) && Catch::Contains("magic"));
  std::string trunc = write_file("trunc.idx", {0, 0, 8, 1, 0, 0, 0, 4, 1, 2});
  CHECK_THROWS_WITH(data::read_idx(trunc), Catch::Contains(trunc) && Catch::Contains("truncated"));
  std::string extra = write_file("extra.idx", {0, 0, 8, 1, 0, 0, 0, 1, 1, 2});
  CHECK_THROWS_WITH(data::read_idx(extra), Catch::Contains("trailing"));
  CHECK_THROWS_AS(data::load_mnist("/nonexistent/fashion", "train"), InputError);
}

TEST_CASE("IDX: Fashion-MNIST from the Debian package", "[data][idx]") {
  const std::string root = "/usr/share/datasets/fashion-mnist";
  SCION_REQUIRE_DATA(root);
  auto test = data::load_mnist(root, "test");
  CHECK(test.images.shape() == Shape{10000, 28, 28});
  CHECK(test.labels.shape() == Shape{10000});
  std::vector<double> counts(10, 0);
  for (double l : test.labels.to_vector()) counts[size_t(l)] += 1;
  for (double c : counts) CHECK(c == 1000);  // Fashion-MNIST's test split is balanced
}
