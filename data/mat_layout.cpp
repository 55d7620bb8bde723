// The MAT v5 layout (MathWorks, "MAT-File Format", R2024a, chapter 1): a 128-byte header (text,
// subsystem offset, version 0x0100, endian indicator "IM" little-endian / "MI" big-endian), then
// data elements, each an 8-byte tag (type, byte count) and its data padded to 8 bytes, or a small
// element (byte count <= 4 in the tag's upper half, data in its lower 4 bytes). A matrix element
// (miMATRIX, 14) holds subelements (array flags, dimensions, name, data, or a struct's fields,
// themselves matrices); a compressed element (miCOMPRESSED, 15) holds one zlib-deflated element.
#include "data/mat_layout.h"

#include <zlib.h>

#include <cstdint>
#include <cstdio>
#include <memory>
#include <vector>

#include "core/error.h"

namespace scion::data {

namespace {

constexpr uint32_t kMatrix = 14, kCompressed = 15;
constexpr uint64_t kZlibMaxRatio = 1032;     // deflate's largest expansion
constexpr size_t kInflatedPrefix = 1 << 16;  // of a compressed element: its headers, not its data
constexpr int kMaxDepth = 32;

uint32_t word(const uint8_t* p, bool swap) {
  return swap ? uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3]
              : uint32_t(p[3]) << 24 | uint32_t(p[2]) << 16 | uint32_t(p[1]) << 8 | p[0];
}

struct Tag {
  uint32_t type;
  uint64_t bytes;  // of data
  uint64_t total;  // tag, data and padding
};

Tag parse_tag(const uint8_t* p, bool swap) {
  const uint32_t a = word(p, swap);
  if (a >> 16) return {a & 0xffff, a >> 16, 8};  // small element
  const uint64_t bytes = word(p + 4, swap);
  return {a, bytes, 8 + (a == kCompressed ? bytes : (bytes + 7) / 8 * 8)};
}

// Bytes of the file, or of a compressed element's inflated prefix: `available` of them can be
// looked at, positions past it only bounded by their container.
struct Source {
  std::FILE* file = nullptr;
  std::vector<uint8_t> memory;
  uint64_t available = 0;
  bool get(uint64_t at, uint8_t* out, size_t n) const {
    if (at + n > available) return false;
    if (!file) {
      std::copy(memory.begin() + long(at), memory.begin() + long(at + n), out);
      return true;
    }
    return fseeko(file, off_t(at), SEEK_SET) == 0 && std::fread(out, 1, n, file) == n;
  }
};

struct Walker {
  std::string path;
  bool swap = false;

  [[noreturn]] void fail(const std::string& where, uint64_t at, const std::string& what) const {
    throw InputError(detail::str_cat(path, ": ", where, "element at byte ", at, " ", what,
                                     " (a damaged MAT file)"));
  }

  // The elements in [begin, end) of `s`; `where` prefixes messages ("" in the file itself).
  void walk(const Source& s, uint64_t begin, uint64_t end, int depth, const std::string& where) {
    if (depth > kMaxDepth) fail(where, begin, detail::str_cat("is nested deeper than ", kMaxDepth));
    for (uint64_t at = begin; at < end;) {
      uint8_t raw[8];
      if (end - at < 8) {
        if (depth == 0) return;  // trailing bytes after the last element: libmatio stops there
        fail(where, at, detail::str_cat("has ", end - at, " bytes left, less than a tag"));
      }
      if (!s.get(at, raw, 8)) return;  // past an inflated prefix: bounded by the container only
      const Tag t = parse_tag(raw, swap);
      if (t.bytes > end - at - 8)
        fail(where, at,
             detail::str_cat("declares ", t.bytes, " bytes, more than the ", end - at - 8,
                             depth == 0 ? " left in the file" : " left in its enclosing element"));
      if (t.type == kMatrix && t.total > 8) {
        check_dimensions(s, at, t.bytes, where);
        walk(s, at + 8, at + 8 + t.bytes, depth + 1, where);
      }
      if (t.type == kCompressed && t.total > 8) {
        if (depth > 0 || s.file == nullptr)
          fail(where, at, "is a compressed element inside another");
        check_compressed(s, at, t.bytes);
      }
      at += std::min(t.total, end - at);
    }
  }

  // A matrix's dimensions (its second subelement, after the array flags) against its size: every
  // element takes at least a byte (MATLAB stores doubles as small integer types when it can), so
  // a dense, cell or struct array of n elements needs n bytes; libmatio sizes buffers from the
  // dimensions. Sparse arrays (class 5) hold only their nonzeros and are not checked.
  void check_dimensions(const Source& s, uint64_t at, uint64_t bytes, const std::string& where) {
    uint8_t flags[16], dims_tag[8];
    if (bytes < 24 || !s.get(at + 8, flags, 16) || !s.get(at + 24, dims_tag, 8)) return;
    if ((word(flags + 8, swap) & 0xff) == 5) return;
    const Tag t = parse_tag(dims_tag, swap);
    const uint64_t first = t.total == 8 && t.bytes <= 4 ? at + 28 : at + 32;
    uint64_t n = 1;
    for (uint64_t k = 0; k + 4 <= std::min<uint64_t>(t.bytes, 4 * 32); k += 4) {
      uint8_t d[4];
      if (!s.get(first + k, d, 4)) return;
      const uint64_t dim = word(d, swap), cap = uint64_t(1) << 62;
      if (dim == 0) return;  // an empty array
      n = n > cap / dim ? cap : n * dim;
    }
    if (n > bytes)
      fail(where, at,
           detail::str_cat("declares dimensions of ", n, " elements, more than its ", bytes,
                           " bytes can hold"));
  }

  // The element deflated in the `bytes` after the tag at `at`: its own tag, and the headers in its
  // first kInflatedPrefix inflated bytes.
  void check_compressed(const Source& file, uint64_t at, uint64_t bytes) {
    const std::string where = detail::str_cat("compressed element at byte ", at, ": inner ");
    Source inner;
    inner.memory.resize(kInflatedPrefix);
    z_stream z{};
    if (inflateInit(&z) != Z_OK) throw Error("zlib: inflateInit failed");
    std::unique_ptr<z_stream, int (*)(z_stream*)> guard(&z, inflateEnd);
    std::vector<uint8_t> in(1 << 16);
    uint64_t read = 0;
    z.next_out = inner.memory.data();
    z.avail_out = uInt(inner.memory.size());
    int rc = Z_OK;
    while (z.avail_out > 0 && rc == Z_OK && read < bytes) {
      const size_t n = size_t(std::min<uint64_t>(in.size(), bytes - read));
      if (!file.get(at + 8 + read, in.data(), n)) break;
      read += n;
      z.next_in = in.data();
      z.avail_in = uInt(n);
      while (z.avail_in > 0 && z.avail_out > 0 && rc == Z_OK) rc = inflate(&z, Z_NO_FLUSH);
    }
    if (rc != Z_OK && rc != Z_STREAM_END)
      throw InputError(detail::str_cat(path, ": compressed element at byte ", at,
                                       " is not a valid zlib stream (a damaged MAT file)"));
    inner.available = inner.memory.size() - z.avail_out;
    uint8_t raw[8];
    if (!inner.get(0, raw, 8))
      throw InputError(detail::str_cat(path, ": compressed element at byte ", at,
                                       " inflates to less than a tag (a damaged MAT file)"));
    const Tag t = parse_tag(raw, swap);
    if (t.bytes > bytes * kZlibMaxRatio)
      fail(where, 0,
           detail::str_cat("declares ", t.bytes, " bytes, more than ", bytes,
                           " compressed bytes can inflate to"));
    if (t.type == kCompressed) fail(where, 0, "is compressed again");
    walk(inner, 0, 8 + t.bytes, 1, where);
  }
};

}  // namespace

uint64_t check_mat5_layout(const std::string& path) {
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(path.c_str(), "rb"), std::fclose);
  SCION_CHECK(f != nullptr, path, ": cannot be opened");
  uint8_t header[128];
  SCION_CHECK(std::fread(header, 1, 128, f.get()) == 128, path,
              ": not a MATLAB .mat file (shorter than the 128-byte header)");
  const bool little = header[126] == 'I' && header[127] == 'M';
  const bool big = header[126] == 'M' && header[127] == 'I';
  SCION_CHECK(little || big, path,
              ": not a MATLAB v5 .mat file (no endian indicator at byte 126; v4 files are not "
              "read, the data sets' official files are v5)");
  const uint16_t version =
      little ? uint16_t(header[124] | header[125] << 8) : uint16_t(header[124] << 8 | header[125]);
  SCION_CHECK(version == 0x0100, path, ": MAT file version ", version / 256, ".", version % 256,
              " is not read (v7.3 HDF5 files are not: the data sets' official files are v5, 1.0)");
  SCION_CHECK(fseeko(f.get(), 0, SEEK_END) == 0, path, ": cannot be read");
  Source s;
  s.file = f.get();
  s.available = uint64_t(ftello(f.get()));
  Walker w{path, big};
  w.walk(s, 128, s.available, 0, "");
  return s.available;
}

}  // namespace scion::data
