// Image: 8-bit pixels in HWC order (like a PIL image), 1 (grayscale) or 3 (RGB) channels.
// Transforms work on Images with PIL's semantics and rounding; only the last step turns them into
// normalized float CHW data.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace scion::data {

struct Image {
  int height = 0, width = 0, channels = 3;
  std::vector<uint8_t> pixels;  // (H, W, C)

  Image() = default;
  Image(int h, int w, int c) : height(h), width(w), channels(c), pixels(size_t(h) * w * c) {}
  uint8_t* row(int y) { return pixels.data() + size_t(y) * width * channels; }
  const uint8_t* row(int y) const { return pixels.data() + size_t(y) * width * channels; }
  uint8_t& at(int y, int x, int c) { return pixels[(size_t(y) * width + x) * channels + c]; }
  uint8_t at(int y, int x, int c) const { return pixels[(size_t(y) * width + x) * channels + c]; }
};

// The largest image decoded by default, in pixels: PIL's DecompressionBombError threshold
// (2 x Image.MAX_IMAGE_PIXELS), far above ImageNet's largest photos (under 40 Mpx). Checked from the
// header before any pixel is decoded, so a small file claiming a huge image costs nothing.
constexpr int64_t kDefaultMaxImagePixels = 178956970;

// Decodes JPEG (libjpeg-turbo) or PNG (stb_image) bytes to RGB; another format is an InputError.
// `min_width` and `min_height`, when given, let a JPEG decode at the smallest DCT scale (1/8 .. 1)
// that keeps at least that size (much faster for large photos resized down). An image of more than
// `max_pixels` pixels is an InputError. Errors name `name`.
Image decode_image(const std::vector<uint8_t>& bytes, const std::string& name, int min_width = 0,
                   int min_height = 0, int64_t max_pixels = kDefaultMaxImagePixels);
// Width and height without decoding the pixels (the JPEG or PNG header).
void image_size(const std::vector<uint8_t>& bytes, const std::string& name, int& width,
                int& height);
std::vector<uint8_t> read_file(const std::string& path);
Image load_image(const std::string& path);

}  // namespace scion::data
