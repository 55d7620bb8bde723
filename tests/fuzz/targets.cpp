// The fuzz targets of targets.h: each writes its input to a scratch file, runs the reader a user
// would run on it, and checks what comes back (a safetensors file re-reads byte for byte after a
// save, an accepted config round-trips through to_yaml, a decoded image has its header's size).
#include "tests/fuzz/targets.h"

#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "core/safetensors.h"
#include "data/dataset.h"
#include "data/idx.h"
#include "data/image.h"
#include "train/config.h"

namespace scion::fuzz {
namespace {

// A failed property: a bug, never the input's fault; escapes like any non-InputError exception.
#define FUZZ_EXPECT(cond, what)                                                        \
  do {                                                                                 \
    if (!(cond)) throw std::logic_error(std::string("fuzz property failed: ") + what); \
  } while (0)

// This process's scratch folder, removed at exit.
const std::string& scratch() {
  static const std::string dir = [] {
    char tmpl[] = "/tmp/scion_fuzz_XXXXXX";
    const char* d = mkdtemp(tmpl);
    if (d == nullptr) throw std::runtime_error("mkdtemp failed");
    std::string path = d;
    static std::string to_remove = path;
    atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(to_remove, ec);
    });
    return path;
  }();
  return dir;
}

void write(const std::string& path, const void* data, size_t size) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(static_cast<const char*>(data), std::streamsize(size));
  if (!out.good()) throw std::runtime_error("cannot write " + path);
}

// Splits at the first NUL: (before, after); after is empty when there is none.
std::pair<std::string, std::string> split_nul(const uint8_t* data, size_t size) {
  std::string all(reinterpret_cast<const char*>(data), size);
  size_t nul = all.find('\0');
  if (nul == std::string::npos) return {all, ""};
  return {all.substr(0, nul), all.substr(nul + 1)};
}

// Runs `body`; an InputError is the expected rejection of bad input.
template <class F>
void expect_input_error_or_success(F&& body) {
  try {
    body();
  } catch (const InputError&) {
  }
}

}  // namespace

void safetensors(const uint8_t* data, size_t size) {
  const std::string path = scratch() + "/in.safetensors";
  write(path, data, size);
  expect_input_error_or_success([&] {
    SafetensorsFile f = SafetensorsFile::open(path);
    NamedTensors all;
    for (const std::string& name : f.names()) {
      Tensor t = f.get(name);
      FUZZ_EXPECT(t.dtype() == f.dtype(name) && t.shape() == f.shape(name), name);
      all.emplace_back(name, t);
    }
    const std::string copy = scratch() + "/copy.safetensors";
    save_safetensors(copy, all, f.metadata());
    SafetensorsFile g = SafetensorsFile::open(copy);
    FUZZ_EXPECT(g.names().size() == all.size() && g.metadata() == f.metadata(), "re-read");
    for (const auto& [name, t] : all) {
      Tensor u = g.get(name);
      size_t bytes = size_t(t.numel()) * dtype_size(t.dtype());
      FUZZ_EXPECT(u.shape() == t.shape() && u.dtype() == t.dtype() &&
                      (bytes == 0 || std::memcmp(u.raw_data(), t.raw_data(), bytes) == 0),
                  "bytes of " + name + " after a save");
    }
  });
}

void config(const uint8_t* data, size_t size) {
  const auto parts = split_nul(data, size);
  const std::string &yaml = parts.first, &sets = parts.second;
  std::vector<std::string> overrides;
  for (size_t at = 0; at < sets.size();) {
    size_t end = sets.find('\n', at);
    if (end == std::string::npos) end = sets.size();
    overrides.push_back(sets.substr(at, end - at));
    at = end + 1;
  }
  expect_input_error_or_success([&] {
    train::Config c = train::parse_config(yaml, "fuzz.yaml", overrides);
    std::string text = train::to_yaml(c);
    std::string again = train::to_yaml(train::parse_config(text, "round trip"));
    FUZZ_EXPECT(again == text,
                "to_yaml round trip changed the config:\n" + text + "\n---\n" + again);
  });
}

void cifar(const uint8_t* data, size_t size) {
  const std::string root10 = scratch() + "/cifar10", root100 = scratch() + "/cifar100";
  write(root10 + "/cifar-10-batches-bin/test_batch.bin", data, size);
  write(root100 + "/test.bin", data, size);
  for (const auto& kind_root : {std::pair{"cifar10", root10}, std::pair{"cifar100", root100}}) {
    expect_input_error_or_success([&] {
      const auto& [kind, root] = kind_root;
      data::DatasetPtr d = data::open_dataset(kind, root, "val");
      FUZZ_EXPECT(d->size() > 0, "an empty CIFAR file was accepted");
      for (int64_t i = 0; i < d->size(); ++i)
        FUZZ_EXPECT(d->label(i) >= 0 && d->label(i) < d->num_classes(), "label out of range");
      for (int64_t i = 0; i < std::min<int64_t>(d->size(), 4); ++i) {
        data::Sample s = d->get(i);
        FUZZ_EXPECT(s.image.height == 32 && s.image.width == 32 && s.image.channels == 3, "size");
      }
    });
  }
}

void idx(const uint8_t* data, size_t size) {
  const std::string path = scratch() + "/in-idx-ubyte";
  write(path, data, size);
  expect_input_error_or_success([&] {
    Tensor t = data::read_idx(path);
    FUZZ_EXPECT(t.dtype() == DType::u8 && t.dim() >= 1 && t.dim() <= 4, "shape");
    int64_t n = 1;
    for (int64_t s : t.shape()) n *= s;
    FUZZ_EXPECT(n == t.numel(), "numel");
  });
}

void tiny_imagenet(const uint8_t* data, size_t size) {
  const auto parts = split_nul(data, size);
  const std::string &wnids = parts.first, &annotations = parts.second;
  const std::string root = scratch() + "/tiny";
  write(root + "/wnids.txt", wnids.data(), wnids.size());
  write(root + "/val/val_annotations.txt", annotations.data(), annotations.size());
  expect_input_error_or_success([&] {
    data::DatasetPtr d = data::open_dataset("tiny_imagenet", root, "val");
    for (int64_t i = 0; i < d->size(); ++i)
      FUZZ_EXPECT(d->label(i) >= 0 && d->label(i) < d->num_classes(), "label out of range");
  });
}

void image(const uint8_t* data, size_t size) {
  std::vector<uint8_t> bytes(data, data + size);
  const int64_t max_pixels = int64_t(1) << 22;  // bounds the fuzzer's memory; the check is the same
  expect_input_error_or_success([&] {
    int w = 0, h = 0;
    data::image_size(bytes, "fuzz image", w, h);
    FUZZ_EXPECT(w > 0 && h > 0,
                "image_size returned " + std::to_string(w) + "x" + std::to_string(h));
    data::Image full = data::decode_image(bytes, "fuzz image", 0, 0, max_pixels);
    FUZZ_EXPECT(full.width == w && full.height == h && full.channels == 3 &&
                    full.pixels.size() == size_t(w) * h * 3,
                "decoded " + std::to_string(full.width) + "x" + std::to_string(full.height) +
                    ", header says " + std::to_string(w) + "x" + std::to_string(h));
    data::Image small = data::decode_image(bytes, "fuzz image", 8, 8, max_pixels);
    FUZZ_EXPECT(small.width >= std::min(w, 8) && small.height >= std::min(h, 8) &&
                    small.width <= w && small.height <= h,
                "reduced decode size");
  });
}

void stl10(const uint8_t* data, size_t size) {
  // The first byte's low bits give the label count n; the next n bytes are test_y.bin and the rest
  // test_X.bin.
  const size_t n = size ? std::min<size_t>(data[0] % 4, size - 1) : 0;
  const std::string root = scratch() + "/stl10/stl10_binary";
  write(root + "/test_y.bin", data + (size ? 1 : 0), n);
  write(root + "/test_X.bin", data + (size ? 1 : 0) + n, size ? size - 1 - n : 0);
  expect_input_error_or_success([&] {
    data::DatasetPtr d = data::open_dataset("stl10", scratch() + "/stl10", "test");
    FUZZ_EXPECT(d->size() == int64_t(n), "image count differs from the label count");
    for (int64_t i = 0; i < d->size(); ++i) {
      FUZZ_EXPECT(d->label(i) >= 0 && d->label(i) < 10, "label out of range");
      data::Sample s = d->get(i);
      FUZZ_EXPECT(s.image.height == 96 && s.image.width == 96 && s.image.channels == 3, "size");
    }
  });
}

void mat(const uint8_t* data, size_t size) {
  // One MAT file read as SVHN's test_32x32.mat and as Flowers-102's imagelabels.mat and setid.mat.
  const std::string svhn = scratch() + "/svhn", flowers = scratch() + "/flowers";
  write(svhn + "/test_32x32.mat", data, size);
  write(flowers + "/imagelabels.mat", data, size);
  write(flowers + "/setid.mat", data, size);
  expect_input_error_or_success([&] {
    data::DatasetPtr d = data::open_dataset("svhn", svhn, "test");
    for (int64_t i = 0; i < std::min<int64_t>(d->size(), 8); ++i) {
      FUZZ_EXPECT(d->label(i) >= 0 && d->label(i) < 10, "label out of range");
      FUZZ_EXPECT(d->get(i).image.pixels.size() == 32 * 32 * 3, "size");
    }
  });
  expect_input_error_or_success([&] {
    data::DatasetPtr d = data::open_dataset("flowers102", flowers, "test");
    for (int64_t i = 0; i < d->size(); ++i)
      FUZZ_EXPECT(d->label(i) >= 0 && d->label(i) < 102, "label out of range");
  });
}

const std::vector<NamedTarget>& targets() {
  static const std::vector<NamedTarget> all = {
      {"safetensors", safetensors},     {"config", config}, {"cifar", cifar}, {"idx", idx},
      {"tiny_imagenet", tiny_imagenet}, {"image", image},   {"stl10", stl10}, {"mat", mat}};
  return all;
}

}  // namespace scion::fuzz
