// safetensors reading (mmap + validation) and atomic writing.
#include "core/safetensors.h"

#include "core/files.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

namespace scion {

namespace {

using json = nlohmann::json;

bool parse_dtype(const std::string& s, DType& out) {
  static const std::map<std::string, DType> kNames = {
      {"F32", DType::f32}, {"BF16", DType::bf16}, {"F64", DType::f64},   {"I32", DType::i32},
      {"I64", DType::i64}, {"U8", DType::u8},     {"BOOL", DType::bool_}};
  auto it = kNames.find(s);
  if (it == kNames.end()) return false;
  out = it->second;
  return true;
}

bool is_spec_dtype(const std::string& s) {
  static const char* kOther[] = {"F16", "I8", "I16", "U16", "U32", "U64", "F8_E4M3", "F8_E5M2"};
  return std::any_of(std::begin(kOther), std::end(kOther), [&](const char* n) { return s == n; });
}

[[noreturn]] void fail(const std::string& path, const std::string& msg) {
  throw InputError(path + ": invalid safetensors file: " + msg);
}

// Maps the whole file read-only into `mapping` (unmapped with its last user) and returns its size.
// A FIFO or device is refused without blocking, and so is a file too short for the header length.
uint64_t map_file(const std::string& path, std::shared_ptr<void>& mapping) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) throw InputError(path + ": cannot open: " + std::strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    ::close(fd);
    throw InputError(path + ": cannot stat: " + std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw InputError(path + ": not a regular file (a safetensors file was expected)");
  }
  const uint64_t size = uint64_t(st.st_size);
  if (size < 8) {
    ::close(fd);
    fail(path,
         detail::str_cat("truncated: ", size, " bytes, shorter than the 8-byte header length"));
  }
  void* map = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (map == MAP_FAILED) throw InputError(path + ": cannot mmap: " + std::strerror(errno));
  mapping = std::shared_ptr<void>(map, [size](void* p) { munmap(p, size); });
  return size;
}

// The JSON header after the 8-byte little-endian length (returned in `header_size`): bounded,
// inside the file, without NUL bytes, a JSON object, no top-level key (tensor name) twice, since
// a repeated one would silently win.
json read_header(const std::string& path, const char* base, uint64_t size, uint64_t& header_size) {
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | uint8_t(base[i]);
  if (n > kSafetensorsMaxHeader)
    fail(path, detail::str_cat("header length ", n, " exceeds the limit of ", kSafetensorsMaxHeader,
                               " bytes"));
  if (8 + n > size)
    fail(path,
         detail::str_cat("truncated: header length ", n, " but only ", size - 8, " bytes follow"));
  if (std::memchr(base + 8, 0, n) != nullptr)
    fail(path, "the header holds a NUL byte (padding must be spaces)");
  std::set<std::string> top_keys;
  std::string duplicate;
  auto no_duplicates = [&](int depth, json::parse_event_t event, json& parsed) {
    if (depth == 1 && event == json::parse_event_t::key && parsed.is_string() &&
        !top_keys.insert(parsed.get<std::string>()).second && duplicate.empty())
      duplicate = parsed.get<std::string>();
    return true;
  };
  json header;
  try {
    header = json::parse(base + 8, base + 8 + n, no_duplicates);
  } catch (const json::exception& e) {
    fail(path, std::string("header is not valid JSON: ") + e.what());
  }
  if (!duplicate.empty()) fail(path, "duplicate tensor name '" + duplicate + "' in the header");
  if (!header.is_object()) fail(path, "header is not a JSON object");
  header_size = n;
  return header;
}

// __metadata__: a map of strings to strings.
std::map<std::string, std::string> read_metadata(const std::string& path, const json& v) {
  if (!v.is_object()) fail(path, "__metadata__ is not an object");
  std::map<std::string, std::string> metadata;
  for (auto m = v.begin(); m != v.end(); ++m) {
    if (!m.value().is_string())
      fail(path, "__metadata__ value for '" + m.key() + "' is not a string");
    metadata[m.key()] = m.value().get<std::string>();
  }
  return metadata;
}

struct Record {
  DType dtype;
  Shape shape;
  uint64_t begin, end;
};

// One tensor's {dtype, shape, data_offsets}: a dtype scion reads, a shape whose element and byte
// counts fit, offsets inside the `data_size`-byte buffer spanning exactly the shape's bytes.
Record read_record(const std::string& path, const std::string& name, const json& v,
                   uint64_t data_size) {
  const std::string where = "tensor '" + name + "': ";
  if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets"))
    fail(path, where + "expected an object with dtype, shape and data_offsets");
  if (!v["dtype"].is_string()) fail(path, where + "dtype is not a string");
  const std::string dt = v["dtype"].get<std::string>();
  Record r;
  if (!parse_dtype(dt, r.dtype)) {
    if (is_spec_dtype(dt)) fail(path, where + "dtype " + dt + " is not supported by scion");
    fail(path, where + "unknown dtype '" + dt + "'");
  }
  if (!v["shape"].is_array()) fail(path, where + "shape is not an array");
  uint64_t numel = 1;
  for (const json& s : v["shape"]) {
    if (!s.is_number_unsigned()) fail(path, where + "shape entries must be non-negative integers");
    const uint64_t d = s.get<uint64_t>();
    // Sizes and element counts must fit int64 (the tensor's index type).
    if (d > uint64_t(INT64_MAX) || (d != 0 && numel > uint64_t(INT64_MAX) / d))
      fail(path, where + "shape overflows");
    numel *= d;
    r.shape.push_back(int64_t(d));
  }
  const json& off = v["data_offsets"];
  if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() ||
      !off[1].is_number_unsigned())
    fail(path, where + "data_offsets must be two non-negative integers");
  r.begin = off[0].get<uint64_t>();
  r.end = off[1].get<uint64_t>();
  if (r.begin > r.end) fail(path, where + "data_offsets begin > end");
  if (r.end > data_size)
    fail(path, detail::str_cat(where, "data_offsets [", r.begin, ", ", r.end,
                               ") out of bounds of the ", data_size, "-byte data buffer"));
  if (numel > UINT64_MAX / dtype_size(r.dtype))
    fail(path, where + "shape " + shape_str(r.shape) + " overflows its byte size");
  const uint64_t want = numel * dtype_size(r.dtype);
  if (r.end - r.begin != want)
    fail(path, detail::str_cat(where, "shape ", shape_str(r.shape), " of ", dt, " needs ", want,
                               " bytes but data_offsets span ", r.end - r.begin));
  return r;
}

// The tensors' names in data order, once their byte ranges are seen to tile the buffer exactly:
// no overlap, no gap, nothing left over at the end.
template <class Entries>
std::vector<std::string> names_in_data_order(const std::string& path, const Entries& entries,
                                             uint64_t data_size) {
  std::vector<std::string> names;
  for (const auto& [name, e] : entries) names.push_back(name);
  std::sort(names.begin(), names.end(), [&](const std::string& a, const std::string& b) {
    const auto &ea = entries.at(a), &eb = entries.at(b);
    return ea.begin != eb.begin ? ea.begin < eb.begin : ea.end < eb.end;
  });
  uint64_t at = 0;
  for (const std::string& name : names) {
    const auto& e = entries.at(name);
    if (e.begin < at) fail(path, "tensor '" + name + "' overlaps the previous tensor");
    if (e.begin > at)
      fail(path, detail::str_cat("gap in the data buffer before tensor '", name, "' (bytes ", at,
                                 " to ", e.begin, " unused)"));
    at = e.end;
  }
  if (at != data_size)
    fail(path, detail::str_cat("data buffer has ", data_size, " bytes but tensors cover ", at));
  return names;
}

}  // namespace

const char* safetensors_dtype_name(DType t) {
  switch (t) {
    case DType::f32:
      return "F32";
    case DType::bf16:
      return "BF16";
    case DType::f64:
      return "F64";
    case DType::i32:
      return "I32";
    case DType::i64:
      return "I64";
    case DType::u8:
      return "U8";
    case DType::bool_:
      return "BOOL";
  }
  return "?";
}

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  SafetensorsFile f;
  f.path_ = path;
  const uint64_t size = map_file(path, f.mapping_);
  const char* base = static_cast<const char*>(f.mapping_.get());
  uint64_t header_size = 0;
  const json header = read_header(path, base, size, header_size);
  f.data_ = base + 8 + header_size;
  const uint64_t data_size = size - 8 - header_size;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      f.metadata_ = read_metadata(path, it.value());
      continue;
    }
    const Record r = read_record(path, it.key(), it.value(), data_size);
    f.entries_[it.key()] = Entry{r.dtype, r.shape, r.begin, r.end};
  }
  f.names_ = names_in_data_order(path, f.entries_, data_size);
  return f;
}

DType SafetensorsFile::dtype(const std::string& name) const {
  auto it = entries_.find(name);
  SCION_CHECK(it != entries_.end(), path_, ": no tensor named '", name, "'");
  return it->second.dtype;
}

const Shape& SafetensorsFile::shape(const std::string& name) const {
  auto it = entries_.find(name);
  SCION_CHECK(it != entries_.end(), path_, ": no tensor named '", name, "'");
  return it->second.shape;
}

Tensor SafetensorsFile::get(const std::string& name) const {
  auto it = entries_.find(name);
  SCION_CHECK(it != entries_.end(), path_, ": no tensor named '", name, "'");
  const Entry& e = it->second;
  const char* p = data_ + e.begin;
  if (reinterpret_cast<uintptr_t>(p) % dtype_size(e.dtype) == 0)
    return from_blob(const_cast<char*>(p), e.shape, e.dtype, mapping_);
  Tensor t = empty(e.shape, e.dtype);
  std::memcpy(t.raw_data(), p, e.end - e.begin);
  return t;
}

void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<Tensor> data;
  uint64_t at = 0;
  for (const auto& [name, t] : tensors) {
    SCION_CHECK(!name.empty() && name != "__metadata__", path, ": invalid tensor name '", name,
                "'");
    SCION_CHECK(!header.contains(name), path, ": duplicate tensor name '", name, "'");
    Tensor c = t.detach().cpu().contiguous();  // tensors on any device are written from the CPU
    uint64_t bytes = uint64_t(c.numel()) * dtype_size(c.dtype());
    header[name] = {{"dtype", safetensors_dtype_name(c.dtype())},
                    {"shape", c.shape()},
                    {"data_offsets", {at, at + bytes}}};
    at += bytes;
    data.push_back(c);
  }
  std::string h = header.dump();
  while (h.size() % 8 != 0) h.push_back(' ');
  write_file_atomic(path, [&](std::FILE* f) {
    uint64_t n = h.size();
    unsigned char len[8];
    for (int i = 0; i < 8; ++i) len[i] = uint8_t(n >> (8 * i));
    bool ok = std::fwrite(len, 1, 8, f) == 8;
    ok &= std::fwrite(h.data(), 1, h.size(), f) == h.size();
    for (const Tensor& t : data) {
      size_t bytes = size_t(t.numel()) * dtype_size(t.dtype());
      if (bytes) ok &= std::fwrite(t.raw_data(), 1, bytes, f) == bytes;
    }
    return ok;
  });
}

}  // namespace scion
