// safetensors: round trips for every dtype with metadata, files written by the reference Python
// implementation (the golden fixtures), atomic writes, and each kind of malformed file rejected
// with an InputError that names the file and the problem.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>

#include "tests/support.h"

using namespace scion;

namespace {

std::string temp_dir() {
  return test::tmp();
}

// Writes an 8-byte length, the header text (as given) and `data_bytes` zero bytes.
std::string write_raw(const std::string& name, const std::string& header, size_t data_bytes,
                      int64_t claimed_len = -1) {
  std::string path = temp_dir() + "/" + name;
  std::ofstream f(path, std::ios::binary);
  uint64_t n = claimed_len >= 0 ? uint64_t(claimed_len) : header.size();
  for (int i = 0; i < 8; ++i) f.put(char(n >> (8 * i)));
  f << header << std::string(data_bytes, '\0');
  return path;
}

bool file_exists(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0;
}

void expect_bad(const std::string& path, const std::string& fragment) {
  INFO("file " << path);
  CHECK_THROWS_AS(SafetensorsFile::open(path), InputError);
  CHECK_THROWS_WITH(SafetensorsFile::open(path),
                    Catch::Contains(path) && Catch::Contains(fragment));
}

}  // namespace

TEST_CASE("safetensors round trip keeps names, dtypes, shapes, values and metadata",
          "[safetensors]") {
  std::string path = temp_dir() + "/roundtrip.safetensors";
  NamedTensors ts;
  ts.emplace_back("w.f32", arange(0, 12, 1, DType::f32).reshape({3, 4}).t());  // non-contiguous
  ts.emplace_back("b.bf16", from_vector({1.5, -2.0}, {2}, DType::bf16));
  ts.emplace_back("d.f64", from_vector({3.25}, {1}, DType::f64));
  ts.emplace_back("i.i32", from_vector({-7, 8}, {2}, DType::i32));
  ts.emplace_back("l.i64", from_vector({1LL << 40}, {1}, DType::i64));
  ts.emplace_back("u.u8", from_vector({0, 255}, {2}, DType::u8));
  ts.emplace_back("m.bool", from_vector({1, 0, 1}, {3}, DType::bool_));
  ts.emplace_back("scalar", scalar_tensor(4.0));
  ts.emplace_back("empty", zeros({0, 3}));
  save_safetensors(path, ts, {{"epoch", "3"}, {"format", "pt"}});
  SafetensorsFile f = SafetensorsFile::open(path);
  CHECK(f.names().size() == ts.size());
  for (const auto& [name, t] : ts) {
    INFO(name);
    REQUIRE(f.contains(name));
    Tensor got = f.get(name);
    CHECK(got.dtype() == t.dtype());
    CHECK(got.shape() == t.shape());
    CHECK(got.to_vector() == t.to_vector());
  }
  CHECK(f.metadata().at("epoch") == "3");
  CHECK(f.metadata().at("format") == "pt");
  // The header is padded to a multiple of 8 bytes, so the data buffer starts aligned.
  std::ifstream in(path, std::ios::binary);
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t(uint8_t(in.get())) << (8 * i);
  CHECK(n % 8 == 0);
}

TEST_CASE("files from the reference safetensors implementation load", "[safetensors]") {
  const SafetensorsFile& f = scion::test::golden_ops();
  CHECK(f.names().size() > 100);
  Tensor t = f.get("matmul_2d.in0");
  CHECK(t.shape() == Shape{4, 6});
  CHECK(f.get("softmax_bf16.out").dtype() == DType::bf16);
}

TEST_CASE("safetensors writes are atomic and leave no temporary files", "[safetensors]") {
  std::string path = temp_dir() + "/atomic.safetensors";
  save_safetensors(path, {{"x", ones({2})}});
  // A failing write (an invalid name is rejected before anything is written) keeps the old file.
  CHECK_THROWS_AS(save_safetensors(path, {{"__metadata__", zeros({3})}}), InputError);
  CHECK(SafetensorsFile::open(path).get("x").to_vector() == std::vector<double>{1, 1});
  save_safetensors(path, {{"y", zeros({3})}});
  SafetensorsFile f = SafetensorsFile::open(path);
  CHECK(f.contains("y"));
  CHECK_FALSE(f.contains("x"));
  CHECK_FALSE(file_exists(path + ".tmp." + std::to_string(getpid())));
  // A folder that does not exist: an error naming the path, nothing created.
  std::string bad = temp_dir() + "/missing/dir/w.safetensors";
  CHECK_THROWS_WITH(save_safetensors(bad, {{"x", ones({1})}}), Catch::Contains(bad));
  CHECK_FALSE(file_exists(bad));
}

TEST_CASE("malformed safetensors files are rejected with a clear error", "[safetensors]") {
  const std::string ok_entry = R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  SECTION("missing file") {
    CHECK_THROWS_WITH(SafetensorsFile::open(temp_dir() + "/nope.safetensors"),
                      Catch::Contains("nope.safetensors") && Catch::Contains("cannot open"));
  }
  SECTION("truncated before the length") {
    std::string p = temp_dir() + "/short.safetensors";
    std::ofstream(p, std::ios::binary) << "abc";
    expect_bad(p, "truncated");
  }
  SECTION("header longer than the file") {
    expect_bad(write_raw("trunc_header.safetensors", "{" + ok_entry + "}", 0, 1000), "truncated");
  }
  SECTION("oversized header length") {
    expect_bad(write_raw("huge.safetensors", "{}", 0, int64_t(kSafetensorsMaxHeader) + 1),
               "exceeds the limit");
  }
  SECTION("header is not JSON") {
    expect_bad(write_raw("notjson.safetensors", "{\"a\": [", 0), "not valid JSON");
  }
  SECTION("data truncated: offsets out of range") {
    expect_bad(write_raw("oob.safetensors", "{" + ok_entry + "}", 4), "out of bounds");
  }
  SECTION("overlapping tensors") {
    std::string h = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                    R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})";
    expect_bad(write_raw("overlap.safetensors", h, 12), "overlaps");
  }
  SECTION("gap between tensors") {
    std::string h = R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                    R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})";
    expect_bad(write_raw("gap.safetensors", h, 12), "gap");
  }
  SECTION("trailing bytes not covered by any tensor") {
    expect_bad(write_raw("trailing.safetensors", "{" + ok_entry + "}", 16), "cover");
  }
  SECTION("unknown dtype") {
    std::string h = R"({"a":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}})";
    expect_bad(write_raw("dtype.safetensors", h, 8), "unknown dtype 'F33'");
  }
  SECTION("dtype in the spec that scion does not support") {
    std::string h = R"({"a":{"dtype":"F16","shape":[4],"data_offsets":[0,8]}})";
    expect_bad(write_raw("f16.safetensors", h, 8), "F16 is not supported");
  }
  SECTION("shape and byte size disagree") {
    std::string h = R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})";
    expect_bad(write_raw("mismatch.safetensors", h, 8), "needs 12 bytes");
  }
  SECTION("negative shape entry") {
    std::string h = R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})";
    expect_bad(write_raw("negshape.safetensors", h, 8), "non-negative");
  }
  SECTION("missing fields") {
    expect_bad(write_raw("fields.safetensors", R"({"a":{"dtype":"F32"}})", 0), "data_offsets");
  }
  SECTION("byte sizes that overflow to 0 (2^63 bf16, 2^62 f32 elements)") {
    std::string h = R"({"a":{"dtype":"BF16","shape":[9223372036854775808],"data_offsets":[0,0]}})";
    expect_bad(write_raw("overflow_bf16.safetensors", h, 0), "overflow");
    h = R"({"a":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,0]}})";
    expect_bad(write_raw("overflow_f32.safetensors", h, 0), "overflow");
    h = R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}})";
    expect_bad(write_raw("overflow_2d.safetensors", h, 0), "overflow");
  }
  SECTION("duplicate tensor names") {
    std::string h = "{" + ok_entry + "," + ok_entry + "}";
    expect_bad(write_raw("dup.safetensors", h, 8), "duplicate tensor name 'a'");
  }
  SECTION("a NUL-padded header") {
    std::string h = "{" + ok_entry + "}" + std::string(6, '\0');
    expect_bad(write_raw("nul.safetensors", h, 8), "NUL");
  }
  SECTION("a FIFO is not read (it would block), nor a folder") {
    std::string p = temp_dir() + "/fifo.safetensors";
    REQUIRE(mkfifo(p.c_str(), 0600) == 0);
    expect_bad(p, "not a regular file");
    expect_bad(temp_dir(), "not a regular file");
  }
  SECTION("metadata values must be strings") {
    std::string h = R"({"__metadata__":{"epoch":3},)" + ok_entry + "}";
    expect_bad(write_raw("meta.safetensors", h, 8), "__metadata__");
  }
}
