// Image decoding: JPEG through TurboJPEG (DCT-domain downscaling when a minimum size is given;
// grayscale and CMYK are converted to RGB), PNG through stb_image (data/stb_image.cpp). Corrupt or
// truncated files raise InputError naming the file.
#include <turbojpeg.h>

#include <cstdint>
#include <cstdio>
#include <memory>

#include "core/error.h"
#include "data/image.h"

#define STBI_NO_STDIO
#define STBI_FAILURE_USERMSG
#include <stb/stb_image.h>  // implementation in data/stb_image.cpp

namespace scion::data {

namespace {

bool is_jpeg(const std::vector<uint8_t>& b) {
  return b.size() > 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF;
}

struct TjHandle {
  tjhandle h = tjInitDecompress();
  ~TjHandle() {
    if (h) tjDestroy(h);
  }
};

thread_local TjHandle t_handle;

// One decompressor per thread: TurboJPEG handles are not thread-safe, creating one per image is
// slow.
tjhandle decompressor() {
  SCION_ASSERT(t_handle.h != nullptr, "tjInitDecompress failed: ", tjGetErrorStr());
  return t_handle.h;
}

// After a failed decode the handle is left unusable ("Invalid argument" on the next image), so the
// failing thread gets a fresh one before the error is reported.
[[noreturn]] void fail_and_reset(const std::string& msg) {
  tjDestroy(t_handle.h);
  t_handle.h = tjInitDecompress();
  throw InputError(msg);
}

void check_pixels(int64_t w, int64_t h, int64_t max_pixels, const std::string& name) {
  if (w * h > max_pixels)
    throw InputError(detail::str_cat(name, ": an image of ", w, " x ", h, " pixels exceeds the ",
                                     max_pixels,
                                     "-pixel limit (data.max_image_pixels); not decoded (a "
                                     "decompression bomb?)"));
}

Image decode_jpeg(const std::vector<uint8_t>& bytes, const std::string& name, int min_w, int min_h,
                  int64_t max_pixels) {
  tjhandle tj = decompressor();
  int w = 0, h = 0, subsamp = 0, colorspace = 0;
  if (tjDecompressHeader3(tj, bytes.data(), (unsigned long)bytes.size(), &w, &h, &subsamp,
                          &colorspace) != 0)
    fail_and_reset(name + ": corrupt JPEG header (" + tjGetErrorStr2(tj) + ")");
  check_pixels(w, h, max_pixels, name);
  // Smallest scale num/denom whose output still covers the requested size.
  int nf = 0;
  tjscalingfactor* factors = tjGetScalingFactors(&nf);
  tjscalingfactor best{1, 1};
  if (min_w > 0 && min_h > 0) {
    for (int i = 0; i < nf; ++i) {
      tjscalingfactor f = factors[i];
      bool smaller = double(f.num) / f.denom < double(best.num) / best.denom;
      if (smaller && TJSCALED(w, f) >= min_w && TJSCALED(h, f) >= min_h) best = f;
    }
  }
  int sw = TJSCALED(w, best), sh = TJSCALED(h, best);
  bool cmyk = colorspace == TJCS_CMYK || colorspace == TJCS_YCCK;
  int pf = cmyk ? TJPF_CMYK : TJPF_RGB, bpp = cmyk ? 4 : 3;
  std::vector<uint8_t> buf(size_t(sw) * sh * bpp);
  int rc = tjDecompress2(tj, bytes.data(), (unsigned long)bytes.size(), buf.data(), sw, 0, sh, pf,
                         TJFLAG_ACCURATEDCT | TJFLAG_STOPONWARNING);
  if (rc != 0) fail_and_reset(name + ": corrupt or truncated JPEG (" + tjGetErrorStr2(tj) + ")");
  Image img(sh, sw, 3);
  if (!cmyk) {
    img.pixels = std::move(buf);
  } else {
    // Adobe CMYK JPEGs store inverted ink values, so R = C * K / 255 etc. (as PIL's conversion).
    for (size_t i = 0, n = size_t(sw) * sh; i < n; ++i) {
      int k = buf[4 * i + 3];
      for (int c = 0; c < 3; ++c) img.pixels[3 * i + c] = uint8_t((buf[4 * i + c] * k + 127) / 255);
    }
  }
  return img;
}

}  // namespace

std::vector<uint8_t> read_file(const std::string& path) {
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "rb"), std::fclose);
  SCION_CHECK(f != nullptr, path, ": cannot open image file");
  std::vector<uint8_t> bytes;
  uint8_t chunk[65536];
  size_t n;
  while ((n = std::fread(chunk, 1, sizeof(chunk), f.get())) > 0)
    bytes.insert(bytes.end(), chunk, chunk + n);
  SCION_CHECK(!std::ferror(f.get()), path, ": read error");
  SCION_CHECK(!bytes.empty(), path, ": empty image file");
  return bytes;
}

namespace {

// stb_image's header reader, with what it leaves unchecked: a buffer it can address (int sizes)
// and a non-empty image (a PNM header may announce 0 x 0).
void stb_size(const std::vector<uint8_t>& bytes, const std::string& name, int& w, int& h) {
  int comp = 0;
  if (bytes.size() > size_t(INT32_MAX)) throw InputError(name + ": image file larger than 2 GiB");
  if (!stbi_info_from_memory(bytes.data(), int(bytes.size()), &w, &h, &comp))
    throw InputError(name + ": corrupt or unsupported image (" + stbi_failure_reason() +
                     "; JPEG and PNG are read)");
  if (w <= 0 || h <= 0)
    throw InputError(
        detail::str_cat(name, ": the header announces an empty image (", w, " x ", h, ")"));
}

}  // namespace

void image_size(const std::vector<uint8_t>& bytes, const std::string& name, int& width,
                int& height) {
  if (is_jpeg(bytes)) {
    int subsamp, colorspace;
    if (tjDecompressHeader3(decompressor(), bytes.data(), (unsigned long)bytes.size(), &width,
                            &height, &subsamp, &colorspace) != 0)
      fail_and_reset(name + ": corrupt JPEG header");
    if (width <= 0 || height <= 0)
      throw InputError(detail::str_cat(name, ": the JPEG header announces an empty image"));
    return;
  }
  stb_size(bytes, name, width, height);
}

Image decode_image(const std::vector<uint8_t>& bytes, const std::string& name, int min_w, int min_h,
                   int64_t max_pixels) {
  if (is_jpeg(bytes)) return decode_jpeg(bytes, name, min_w, min_h, max_pixels);
  int w = 0, h = 0, comp = 0;
  stb_size(bytes, name, w, h);
  check_pixels(w, h, max_pixels, name);
  std::unique_ptr<uint8_t, void (*)(void*)> p(
      stbi_load_from_memory(bytes.data(), int(bytes.size()), &w, &h, &comp, 3), stbi_image_free);
  if (!p) throw InputError(name + ": corrupt or unsupported image (" + stbi_failure_reason() + ")");
  Image img(h, w, 3);
  std::copy(p.get(), p.get() + size_t(w) * h * 3, img.pixels.begin());
  return img;
}

Image load_image(const std::string& path) {
  return decode_image(read_file(path), path);
}

}  // namespace scion::data
