// safetensors I/O (the format timm and Hugging Face publish weights in):
//   8-byte little-endian header length N | N bytes of JSON header | data buffer
// The header maps each tensor name to {dtype, shape, data_offsets: [begin, end)} relative to the
// data buffer, plus an optional "__metadata__" string map. Reading memory-maps the file and
// validates everything the spec requires before any tensor is handed out: header size bound,
// valid JSON, known dtype names, offsets in bounds, tensors contiguous and non-overlapping and
// covering the buffer exactly, byte counts matching shapes. Writing goes to a temporary file in the
// same folder, which is flushed, fsync'ed and renamed over the target, so a crash never leaves a
// half-written file and an existing file survives a failed write.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace scion {

constexpr uint64_t kSafetensorsMaxHeader = 100'000'000;  // as the reference implementation

class SafetensorsFile {
 public:
  // Opens and validates `path`; throws InputError naming the file and the problem.
  static SafetensorsFile open(const std::string& path);

  const std::string& path() const { return path_; }
  // Tensor names in data order.
  const std::vector<std::string>& names() const { return names_; }
  bool contains(const std::string& name) const { return entries_.count(name) > 0; }
  // A tensor viewing the mapped file (no copy when aligned); it keeps the mapping alive.
  Tensor get(const std::string& name) const;
  DType dtype(const std::string& name) const;
  const Shape& shape(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  struct Entry {
    DType dtype;
    Shape shape;
    uint64_t begin, end;
  };
  std::string path_;
  std::shared_ptr<void> mapping_;  // munmap on release
  const char* data_ = nullptr;     // start of the data buffer
  std::vector<std::string> names_;
  std::map<std::string, Entry> entries_;
  std::map<std::string, std::string> metadata_;
};

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

// Writes tensors (any strides; written contiguous) atomically to `path`.
void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// "F32" <-> DType; unknown names are an error naming the file.
const char* safetensors_dtype_name(DType t);

}  // namespace scion
