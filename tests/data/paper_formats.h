// Writes small data sets in the real formats of the paper's transfer data sets (the layouts their
// official downloads produce): STL-10 binaries, SVHN and Flowers-102 MATLAB v5 files (through
// libmatio, as MATLAB/scipy write them), and Pets/Food-101/DTD/EuroSAT list files and folders with
// real JPEGs (copied from ../shared/data/cifar10-jpg). Labels and pixels follow fixed rules so the
// tests can check every image the readers return.
#pragma once

#include <matio.h>
#include <sys/stat.h>

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include "tests/data/support_data.h"
#include "tests/support.h"

namespace scion::test {

inline void mkdirs(const std::string& path) {
  std::string cur;
  for (size_t i = 0; i <= path.size(); ++i) {
    if ((i == path.size() || path[i] == '/') && !cur.empty()) mkdir(cur.c_str(), 0755);
    if (i < path.size()) cur.push_back(path[i]);
  }
}

inline void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
}

inline void write_text_file(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
}

// Pixel value of image n, channel c, row r, column x in the generated binary data sets.
inline uint8_t pattern(size_t n, size_t c, size_t r, size_t x) {
  return uint8_t((n * 31 + c * 71 + r * 5 + x * 3) % 256);
}

// stl10_binary/{split}_X.bin + _y.bin: n images, labels 1 + i % 10, stored as the release does
// (per image 3 channels of 96 x 96, each channel column by column).
inline void write_stl10(const std::string& root, const std::string& split, size_t n) {
  mkdirs(root + "/stl10_binary");
  std::vector<uint8_t> x(n * 3 * 96 * 96), y(n);
  for (size_t i = 0; i < n; ++i) {
    y[i] = uint8_t(1 + i % 10);
    for (size_t c = 0; c < 3; ++c)
      for (size_t col = 0; col < 96; ++col)
        for (size_t row = 0; row < 96; ++row)
          x[i * 27648 + c * 9216 + col * 96 + row] = pattern(i, c, row, col);
  }
  write_bytes(root + "/stl10_binary/" + split + "_X.bin", x);
  write_bytes(root + "/stl10_binary/" + split + "_y.bin", y);
}

inline void mat_write(mat_t* m, const char* name, matio_classes cls, matio_types type,
                      std::vector<size_t> dims, void* data,
                      matio_compression compression = MAT_COMPRESSION_NONE) {
  matvar_t* v = Mat_VarCreate(name, cls, type, int(dims.size()), dims.data(), data, 0);
  REQUIRE(v != nullptr);
  REQUIRE(Mat_VarWrite(m, v, compression) == 0);
  Mat_VarFree(v);
}

// {split}_32x32.mat: X 32 x 32 x 3 x n uint8 (column-major), y n x 1 double labels 1..10
// (image i has label 1 + i % 10; 10 stands for the digit 0); compressed as MATLAB's default
// (-v7) saves, or not (-v6).
inline void write_svhn(const std::string& root, const std::string& split, size_t n,
                       matio_compression compression = MAT_COMPRESSION_NONE) {
  mkdirs(root);
  std::vector<uint8_t> x(32 * 32 * 3 * n);
  std::vector<double> y(n);
  for (size_t i = 0; i < n; ++i) {
    y[i] = double(1 + i % 10);
    for (size_t c = 0; c < 3; ++c)
      for (size_t col = 0; col < 32; ++col)
        for (size_t row = 0; row < 32; ++row)
          x[row + 32 * (col + 32 * (c + 3 * i))] = pattern(i, c, row, col);
  }
  const std::string path = root + "/" + split + "_32x32.mat";
  mat_t* m = Mat_CreateVer(path.c_str(), nullptr, MAT_FT_MAT5);
  REQUIRE(m != nullptr);
  mat_write(m, "X", MAT_C_UINT8, MAT_T_UINT8, {32, 32, 3, n}, x.data(), compression);
  mat_write(m, "y", MAT_C_DOUBLE, MAT_T_DOUBLE, {n, 1}, y.data(), compression);
  Mat_Close(m);
}

// The real JPEGs the folder data sets are built from.
inline std::vector<std::string> sample_jpegs(size_t count) {
  const std::string dir = shared_data("cifar10-jpg") + "/test";
  std::vector<std::string> out;
  for (const char* cls : {"airplane", "automobile", "bird", "cat", "deer", "dog"}) {
    for (int k = 0; k < 100 && out.size() < count; ++k) {
      char name[64];
      std::snprintf(name, sizeof name, "/%s/%04d.jpg", cls, k);
      if (exists(dir + name)) out.push_back(dir + name);
    }
  }
  return out;
}

inline void copy_file(const std::string& from, const std::string& to) {
  std::ifstream in(from, std::ios::binary);
  std::ofstream(to, std::ios::binary) << in.rdbuf();
}

// Flowers-102: jpg/image_%05d.jpg for ids 1..n, imagelabels.mat (1 x n, label of id k is
// 1 + (k * 7) % 102), setid.mat with trnid/valid/tstid as given.
inline void write_flowers(const std::string& root, size_t n, const std::vector<double>& trn,
                          const std::vector<double>& val, const std::vector<double>& tst) {
  mkdirs(root + "/jpg");
  const auto jpegs = sample_jpegs(n);
  REQUIRE(jpegs.size() == n);
  std::vector<double> labels(n);
  for (size_t k = 1; k <= n; ++k) {
    char name[48];  // room for any size_t
    std::snprintf(name, sizeof name, "/jpg/image_%05zu.jpg", k);
    copy_file(jpegs[k - 1], root + name);
    labels[k - 1] = double(1 + (k * 7) % 102);
  }
  mat_t* m = Mat_CreateVer((root + "/imagelabels.mat").c_str(), nullptr, MAT_FT_MAT5);
  REQUIRE(m != nullptr);
  mat_write(m, "labels", MAT_C_DOUBLE, MAT_T_DOUBLE, {1, n}, labels.data());
  Mat_Close(m);
  m = Mat_CreateVer((root + "/setid.mat").c_str(), nullptr, MAT_FT_MAT5);
  REQUIRE(m != nullptr);
  auto ids = [&](const char* name, std::vector<double> v) {
    mat_write(m, name, MAT_C_DOUBLE, MAT_T_DOUBLE, {1, v.size()}, v.data());
  };
  ids("trnid", trn);
  ids("valid", val);
  ids("tstid", tst);
  Mat_Close(m);
}

}  // namespace scion::test
