// Fuzz targets: every parser that reads a user's file, driven by arbitrary bytes. Each target
// writes its input where the reader expects a file (the readers take paths, as users give them),
// runs the reader and checks properties of what it returns. Rejecting the input with an InputError
// is the expected outcome for bad bytes; anything else that escapes (another exception, a failed
// property, a sanitizer report) is a finding. The same functions drive the libFuzzer executables
// (tests/fuzz/fuzz_main.cpp, `make fuzz`) and the regression test over the saved inputs in
// tests/fuzz/regressions/ (tests/fuzz/test_regressions.cpp, part of `make test`).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace scion::fuzz {

using Target = void (*)(const uint8_t* data, size_t size);

struct NamedTarget {
  const char* name;
  Target run;
};

// safetensors reader: open, read every tensor, save and reopen (bytes and metadata must survive).
void safetensors(const uint8_t* data, size_t size);
// YAML config: the bytes up to the first NUL are the file, each line after it one `--set` string;
// an accepted config must round-trip through to_yaml unchanged.
void config(const uint8_t* data, size_t size);
// CIFAR-10 and CIFAR-100 binary batch files: open, read every label and the first records' pixels.
void cifar(const uint8_t* data, size_t size);
// IDX files (plain or gzip): the tensor must hold exactly the bytes the header announces.
void idx(const uint8_t* data, size_t size);
// Tiny ImageNet: wnids.txt up to the first NUL, val/val_annotations.txt after it; every label must
// be a class index.
void tiny_imagenet(const uint8_t* data, size_t size);
// Image decoding (JPEG through libjpeg-turbo, PNG through stb_image), full size and
// at a reduced JPEG scale; the decoded size must agree with the header's.
void image(const uint8_t* data, size_t size);

// STL-10 binary files (test_y.bin + test_X.bin): every image 96x96x3, every label a class.
void stl10(const uint8_t* data, size_t size);
// MATLAB .mat files through libmatio, as SVHN's test_32x32.mat and Flowers-102's label/split files.
void mat(const uint8_t* data, size_t size);

const std::vector<NamedTarget>& targets();

}  // namespace scion::fuzz
