// IDX reading through zlib's gz* API, which passes plain files through unchanged.
#include "data/idx.h"

#include <sys/stat.h>
#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

namespace scion::data {

namespace {

bool exists(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0;
}

uint32_t be32(const unsigned char* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}

}  // namespace

Tensor read_idx(const std::string& path) {
  std::unique_ptr<gzFile_s, int (*)(gzFile)> f(gzopen(path.c_str(), "rb"), gzclose);
  SCION_CHECK(f != nullptr, path, ": cannot open IDX file");
  unsigned char head[4];
  SCION_CHECK(gzread(f.get(), head, 4) == 4, path, ": truncated IDX file (no magic number)");
  uint32_t magic = be32(head);
  SCION_CHECK((magic >> 16) == 0 && ((magic >> 8) & 0xff) == 0x08 && (magic & 0xff) >= 1 &&
                  (magic & 0xff) <= 4,
              path, ": wrong IDX magic 0x", std::hex, magic,
              ", expected 0x0000080N (unsigned bytes, N dims)");
  int nd = int(magic & 0xff);
  std::vector<unsigned char> dims_raw(size_t(4 * nd));
  SCION_CHECK(gzread(f.get(), dims_raw.data(), unsigned(dims_raw.size())) == int(dims_raw.size()),
              path, ": truncated IDX header");
  Shape shape;
  int64_t n = 1, span = 1;  // span: the product with empty dims counted as 1 (the strides)
  for (int i = 0; i < nd; ++i) {
    shape.push_back(int64_t(be32(&dims_raw[size_t(4 * i)])));
    SCION_CHECK(!__builtin_mul_overflow(span, std::max<int64_t>(shape.back(), 1), &span), path,
                ": IDX header ", shape_str(shape), " announces more bytes than fit in 64 bits");
    n *= shape.back();  // n <= span
  }
  // Read in chunks and grow with what arrives, so a small file announcing a huge tensor fails as
  // truncated without first allocating what it announces.
  std::vector<unsigned char> bytes;
  while (int64_t(bytes.size()) < n) {
    size_t at = bytes.size();
    size_t chunk = size_t(std::min<int64_t>(n - int64_t(at), 1 << 26));
    bytes.resize(at + chunk);
    int r = gzread(f.get(), bytes.data() + at, unsigned(chunk));
    SCION_CHECK(r > 0, path, ": truncated IDX data: header ", shape_str(shape), " needs ", n,
                " bytes, file has ", at);
    bytes.resize(at + size_t(r));
  }
  Tensor t = empty(shape, DType::u8);
  if (n > 0) std::memcpy(t.raw_data(), bytes.data(), size_t(n));
  unsigned char extra;
  SCION_CHECK(gzread(f.get(), &extra, 1) == 0, path, ": trailing bytes after the ", n,
              " bytes announced by the header ", shape_str(shape));
  return t;
}

MnistSplit load_mnist(const std::string& root, const std::string& split) {
  SCION_CHECK(split == "train" || split == "test", "mnist: split must be train or test, got '",
              split, "'");
  SCION_CHECK(exists(root), root,
              ": Fashion-MNIST/MNIST folder not found (on Debian: "
              "apt-get install dataset-fashion-mnist, files in /usr/share/datasets/fashion-mnist)");
  std::string prefix = root + "/" + (split == "train" ? "train" : "t10k");
  auto pick = [&](const std::string& stem) {
    std::string gz = prefix + stem + ".gz", plain = prefix + stem;
    if (exists(gz)) return gz;
    SCION_CHECK(exists(plain), root, ": missing ", stem.substr(1), "[.gz] for split ", split);
    return plain;
  };
  const std::string labels_path = pick("-labels-idx1-ubyte");
  MnistSplit s{read_idx(pick("-images-idx3-ubyte")), read_idx(labels_path)};
  SCION_CHECK(s.images.dim() == 3 && s.labels.dim() == 1 && s.images.size(0) == s.labels.size(0),
              root, ": ", split, " images ", shape_str(s.images.shape()), " and labels ",
              shape_str(s.labels.shape()), " do not match");
  SCION_CHECK(s.labels.dtype() == DType::u8, labels_path, ": labels must be unsigned bytes");
  const uint8_t* l = s.labels.data<uint8_t>();
  for (int64_t i = 0; i < s.labels.size(0); ++i)
    SCION_CHECK(l[i] < 10, labels_path, ": label ", int(l[i]), " of item ", i,
                " out of range for 10 classes");
  return s;
}

}  // namespace scion::data
