// MNIST / Fashion-MNIST IDX files, gzip-compressed or plain (zlib reads both). An IDX file is a
// big-endian header (magic 0x00000800 | type << 8 | ndim, then ndim u32 sizes) followed by the
// data; only unsigned-byte data (type 0x08) occurs in these data sets.
#pragma once

#include <string>

#include "core/tensor.h"

namespace scion::data {

// Reads an unsigned-byte IDX file into a u8 tensor of its stored shape, checking the magic,
// the dimensions and that the file holds exactly the data the header announces.
Tensor read_idx(const std::string& path);

struct MnistSplit {
  Tensor images;  // (N, 28, 28) u8
  Tensor labels;  // (N) u8
};

// Loads "train" or "test" from a folder with the four standard files
// ({train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]).
MnistSplit load_mnist(const std::string& root, const std::string& split);

}  // namespace scion::data
