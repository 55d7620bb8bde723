// Geometric and color transforms with PIL's arithmetic (see transforms.h).
#include "data/transforms.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace scion::data {

namespace {

uint8_t clip8(double v) {
  return uint8_t(std::min(255.0, std::max(0.0, v)));
}
uint8_t round8(double v) {
  return uint8_t(std::min(255.0, std::max(0.0, std::floor(v + 0.5))));
}

double filter_value(Interp interp, double x) {
  x = std::fabs(x);
  if (interp == Interp::bilinear) return x < 1.0 ? 1.0 - x : 0.0;
  if (interp == Interp::bicubic) {
    constexpr double a = -0.5;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
  }
  return (x >= -0.5 && x < 0.5) ? 1.0 : 0.0;  // box (nearest neighbour support)
}

double filter_support(Interp interp) {
  return interp == Interp::bicubic ? 2.0 : interp == Interp::bilinear ? 1.0 : 0.5;
}

struct Taps {
  std::vector<int> first, count;
  std::vector<double> weights;  // count[i] weights starting at i * stride
  int stride;
};

// PIL's precompute_coeffs: output pixel i reads input [first, first + count) with these weights.
Taps coefficients(int in_size, int out_size, Interp interp) {
  double scale = double(in_size) / out_size;
  double filterscale = std::max(scale, 1.0);
  double support = filter_support(interp) * filterscale;
  Taps t;
  t.stride = int(std::ceil(support)) * 2 + 1;
  t.first.resize(out_size);
  t.count.resize(out_size);
  t.weights.assign(size_t(out_size) * t.stride, 0.0);
  for (int i = 0; i < out_size; ++i) {
    double center = (i + 0.5) * scale;
    int lo = std::max(int(center - support + 0.5), 0);
    int hi = std::min(int(center + support + 0.5), in_size);
    double total = 0;
    double* w = &t.weights[size_t(i) * t.stride];
    for (int x = lo; x < hi; ++x) {
      w[x - lo] = filter_value(interp, (x - center + 0.5) / filterscale);
      total += w[x - lo];
    }
    if (total != 0)
      for (int x = 0; x < hi - lo; ++x) w[x] /= total;
    t.first[i] = lo;
    t.count[i] = hi - lo;
  }
  return t;
}

}  // namespace

Interp parse_interp(const std::string& name) {
  if (name == "bilinear") return Interp::bilinear;
  if (name == "bicubic") return Interp::bicubic;
  if (name == "nearest") return Interp::nearest;
  throw InputError("interpolation: expected bilinear, bicubic or nearest, got '" + name + "'");
}

Image resize(const Image& img, int out_h, int out_w, Interp interp) {
  SCION_CHECK(out_h > 0 && out_w > 0 && img.height > 0 && img.width > 0, "resize: bad size ", out_h,
              "x", out_w, " from ", img.height, "x", img.width);
  if (out_h == img.height && out_w == img.width) return img;
  const int c = img.channels;
  if (interp == Interp::nearest) {
    Image out(out_h, out_w, c);
    for (int y = 0; y < out_h; ++y)
      for (int x = 0; x < out_w; ++x) {
        int sy = std::min(img.height - 1, int((y + 0.5) * img.height / out_h));
        int sx = std::min(img.width - 1, int((x + 0.5) * img.width / out_w));
        for (int k = 0; k < c; ++k) out.at(y, x, k) = img.at(sy, sx, k);
      }
    return out;
  }
  // Horizontal pass (rounded to 8 bits like PIL), then vertical.
  Image mid(img.height, out_w, c);
  Taps th = coefficients(img.width, out_w, interp);
  for (int y = 0; y < img.height; ++y) {
    const uint8_t* in = img.row(y);
    uint8_t* o = mid.row(y);
    for (int x = 0; x < out_w; ++x) {
      const double* w = &th.weights[size_t(x) * th.stride];
      for (int k = 0; k < c; ++k) {
        double s = 0;
        for (int j = 0; j < th.count[x]; ++j) s += w[j] * in[(th.first[x] + j) * c + k];
        o[x * c + k] = round8(s);
      }
    }
  }
  Image out(out_h, out_w, c);
  Taps tv = coefficients(img.height, out_h, interp);
  std::vector<double> acc(size_t(out_w) * c);
  for (int y = 0; y < out_h; ++y) {
    std::fill(acc.begin(), acc.end(), 0.0);
    const double* w = &tv.weights[size_t(y) * tv.stride];
    for (int j = 0; j < tv.count[y]; ++j) {
      const uint8_t* in = mid.row(tv.first[y] + j);
      for (size_t i = 0; i < acc.size(); ++i) acc[i] += w[j] * in[i];
    }
    uint8_t* o = out.row(y);
    for (size_t i = 0; i < acc.size(); ++i) o[i] = round8(acc[i]);
  }
  return out;
}

Image crop(const Image& img, int top, int left, int h, int w, uint8_t fill) {
  Image out(h, w, img.channels);
  std::fill(out.pixels.begin(), out.pixels.end(), fill);
  for (int y = 0; y < h; ++y) {
    int sy = top + y;
    if (sy < 0 || sy >= img.height) continue;
    int x0 = std::max(0, -left), x1 = std::min(w, img.width - left);
    if (x1 <= x0) continue;
    std::copy(img.row(sy) + size_t(left + x0) * img.channels,
              img.row(sy) + size_t(left + x1) * img.channels,
              out.row(y) + size_t(x0) * img.channels);
  }
  return out;
}

Image hflip(const Image& img) {
  Image out(img.height, img.width, img.channels);
  for (int y = 0; y < img.height; ++y)
    for (int x = 0; x < img.width; ++x)
      for (int k = 0; k < img.channels; ++k) out.at(y, img.width - 1 - x, k) = img.at(y, x, k);
  return out;
}

CropBox random_resized_crop_box(int height, int width, double scale_lo, double scale_hi,
                                double ratio_lo, double ratio_hi, Generator& gen) {
  double area = double(height) * width;
  double log_lo = std::log(ratio_lo), log_hi = std::log(ratio_hi);
  for (int attempt = 0; attempt < 10; ++attempt) {
    double target = (scale_lo + (scale_hi - scale_lo) * gen.next_uniform()) * area;
    double aspect = std::exp(log_lo + (log_hi - log_lo) * gen.next_uniform());
    int w = int(std::lround(std::sqrt(target * aspect)));
    int h = int(std::lround(std::sqrt(target / aspect)));
    if (w <= width && h <= height && w > 0 && h > 0) {
      int top = int(gen.next_uniform() * (height - h + 1));
      int left = int(gen.next_uniform() * (width - w + 1));
      return {top, left, h, w};
    }
  }
  double in_ratio = double(width) / height;
  int w = width, h = height;
  if (in_ratio < ratio_lo) {
    h = int(std::lround(w / ratio_lo));
  } else if (in_ratio > ratio_hi) {
    w = int(std::lround(h * ratio_hi));
  }
  return {(height - h) / 2, (width - w) / 2, h, w};
}

namespace {

// PIL's Image.blend(degenerate, img, factor): degenerate + factor * (img - degenerate), truncated.
Image blend(const Image& degenerate, const Image& img, double factor) {
  Image out(img.height, img.width, img.channels);
  for (size_t i = 0; i < img.pixels.size(); ++i) {
    double v = degenerate.pixels[i] + factor * (double(img.pixels[i]) - degenerate.pixels[i]);
    out.pixels[i] = clip8(v);
  }
  return out;
}

// PIL's L conversion of RGB: (R*19595 + G*38470 + B*7471 + 0x8000) >> 16.
uint8_t luma(const uint8_t* p) {
  return uint8_t((p[0] * 19595 + p[1] * 38470 + p[2] * 7471 + 0x8000) >> 16);
}

Image grayscale_rgb(const Image& img) {
  Image out(img.height, img.width, img.channels);
  for (size_t i = 0; i < size_t(img.height) * img.width; ++i) {
    uint8_t l = img.channels == 3 ? luma(&img.pixels[3 * i]) : img.pixels[i];
    for (int k = 0; k < img.channels; ++k) out.pixels[i * img.channels + k] = l;
  }
  return out;
}

Image apply_lut(const Image& img, const std::array<std::array<uint8_t, 256>, 3>& lut) {
  Image out(img.height, img.width, img.channels);
  for (size_t i = 0; i < img.pixels.size(); ++i)
    out.pixels[i] = lut[i % img.channels][img.pixels[i]];
  return out;
}

std::array<std::array<int64_t, 256>, 3> histograms(const Image& img) {
  std::array<std::array<int64_t, 256>, 3> h{};
  for (size_t i = 0; i < img.pixels.size(); ++i) ++h[i % img.channels][img.pixels[i]];
  return h;
}

}  // namespace

Image enhance_color(const Image& img, double factor) {
  return blend(grayscale_rgb(img), img, factor);
}

Image enhance_contrast(const Image& img, double factor) {
  double sum = 0;
  size_t n = size_t(img.height) * img.width;
  for (size_t i = 0; i < n; ++i)
    sum += img.channels == 3 ? luma(&img.pixels[3 * i]) : img.pixels[i];
  Image mean(img.height, img.width, img.channels);
  std::fill(mean.pixels.begin(), mean.pixels.end(), uint8_t(int(sum / double(n) + 0.5)));
  return blend(mean, img, factor);
}

Image enhance_brightness(const Image& img, double factor) {
  Image black(img.height, img.width, img.channels);
  return blend(black, img, factor);
}

Image enhance_sharpness(const Image& img, double factor) {
  // PIL's SMOOTH filter [[1,1,1],[1,5,1],[1,1,1]] / 13 on the interior; borders keep the original.
  Image smooth = img;
  const int c = img.channels;
  for (int y = 1; y + 1 < img.height; ++y)
    for (int x = 1; x + 1 < img.width; ++x)
      for (int k = 0; k < c; ++k) {
        int s = 0;
        for (int dy = -1; dy <= 1; ++dy)
          for (int dx = -1; dx <= 1; ++dx)
            s += img.at(y + dy, x + dx, k) * (dy == 0 && dx == 0 ? 5 : 1);
        smooth.at(y, x, k) = round8(s / 13.0);
      }
  return blend(smooth, img, factor);
}

Image color_jitter(const Image& img, double brightness, double contrast, double saturation,
                   Generator& gen) {
  // torchvision draws the order, then each factor uniformly in [max(0, 1 - v), 1 + v].
  std::array<int, 4> order{0, 1, 2, 3};
  for (int i = 3; i > 0; --i) std::swap(order[i], order[int(gen.next_uniform() * (i + 1))]);
  auto factor = [&](double v) {
    return std::max(0.0, 1 - v) + (1 + v - std::max(0.0, 1 - v)) * gen.next_uniform();
  };
  double fb = brightness > 0 ? factor(brightness) : 1, fc = contrast > 0 ? factor(contrast) : 1;
  double fs = saturation > 0 ? factor(saturation) : 1;
  Image out = img;
  for (int op : order) {
    if (op == 0 && brightness > 0) out = enhance_brightness(out, fb);
    if (op == 1 && contrast > 0) out = enhance_contrast(out, fc);
    if (op == 2 && saturation > 0 && out.channels == 3) out = enhance_color(out, fs);
  }
  return out;
}

Image auto_contrast(const Image& img) {
  auto h = histograms(img);
  std::array<std::array<uint8_t, 256>, 3> lut{};
  for (int k = 0; k < img.channels; ++k) {
    int lo = 0, hi = 255;
    while (lo < 256 && h[k][lo] == 0) ++lo;
    while (hi >= 0 && h[k][hi] == 0) --hi;
    for (int v = 0; v < 256; ++v) {
      if (hi <= lo) {
        lut[k][v] = uint8_t(v);
      } else {
        double scale = 255.0 / (hi - lo), offset = -lo * scale;
        lut[k][v] = uint8_t(std::clamp(int(v * scale + offset), 0, 255));
      }
    }
  }
  return apply_lut(img, lut);
}

Image equalize(const Image& img) {
  auto h = histograms(img);
  std::array<std::array<uint8_t, 256>, 3> lut{};
  for (int k = 0; k < img.channels; ++k) {
    int64_t total = 0, last = 0;
    int nonzero = 0;
    for (int v = 0; v < 256; ++v)
      if (h[k][v]) total += h[k][v], last = h[k][v], ++nonzero;
    int64_t step = nonzero <= 1 ? 0 : (total - last) / 255;
    int64_t n = step / 2;
    for (int v = 0; v < 256; ++v) {
      if (step == 0) {
        lut[k][v] = uint8_t(v);
      } else {
        lut[k][v] = uint8_t(std::min<int64_t>(255, n / step));
        n += h[k][v];
      }
    }
  }
  return apply_lut(img, lut);
}

Image posterize(const Image& img, int bits) {
  if (bits >= 8) return img;
  uint8_t mask = uint8_t(~((1 << (8 - bits)) - 1));
  Image out = img;
  for (auto& p : out.pixels) p &= mask;
  return out;
}

Image solarize(const Image& img, int threshold) {
  Image out = img;
  for (auto& p : out.pixels) p = p < threshold ? p : uint8_t(255 - p);
  return out;
}

Image solarize_add(const Image& img, int add, int threshold) {
  Image out = img;
  for (auto& p : out.pixels) p = p < threshold ? uint8_t(std::min(255, p + add)) : p;
  return out;
}

Image invert(const Image& img) {
  Image out = img;
  for (auto& p : out.pixels) p = uint8_t(255 - p);
  return out;
}

Image affine(const Image& img, const std::array<double, 6>& m, Interp interp,
             std::array<uint8_t, 3> fill) {
  // PIL's Image.transform(AFFINE): output pixel centre (x + .5, y + .5) maps to input point
  // (a x + b y + c, d x + e y + f); points outside the input take the fill colour.
  Image out(img.height, img.width, img.channels);
  const int c = img.channels;
  for (int y = 0; y < img.height; ++y)
    for (int x = 0; x < img.width; ++x) {
      double xs = m[0] * (x + 0.5) + m[1] * (y + 0.5) + m[2];
      double ys = m[3] * (x + 0.5) + m[4] * (y + 0.5) + m[5];
      uint8_t* o = &out.pixels[(size_t(y) * img.width + x) * c];
      if (xs < 0 || ys < 0 || xs >= img.width || ys >= img.height) {
        for (int k = 0; k < c; ++k) o[k] = fill[size_t(std::min(k, 2))];
        continue;
      }
      if (interp == Interp::nearest) {
        for (int k = 0; k < c; ++k) o[k] = img.at(int(ys), int(xs), k);
        continue;
      }
      double fx = xs - 0.5, fy = ys - 0.5;
      int x0 = int(std::floor(fx)), y0 = int(std::floor(fy));
      double dx = fx - x0, dy = fy - y0;
      auto px = [&](int yy, int xx, int k) {
        return double(
            img.at(std::clamp(yy, 0, img.height - 1), std::clamp(xx, 0, img.width - 1), k));
      };
      for (int k = 0; k < c; ++k) {
        double v;
        if (interp == Interp::bilinear) {
          v = (px(y0, x0, k) * (1 - dx) + px(y0, x0 + 1, k) * dx) * (1 - dy) +
              (px(y0 + 1, x0, k) * (1 - dx) + px(y0 + 1, x0 + 1, k) * dx) * dy;
        } else {
          // PIL's geometry bicubic (a = -1).
          auto cubic = [](double v1, double v2, double v3, double v4, double d) {
            double p1 = v2, p2 = -v1 + v3, p3 = 2 * (v1 - v2) + v3 - v4, p4 = -v1 + v2 - v3 + v4;
            return p1 + d * (p2 + d * (p3 + d * p4));
          };
          double r[4];
          for (int j = 0; j < 4; ++j)
            r[j] = cubic(px(y0 - 1 + j, x0 - 1, k), px(y0 - 1 + j, x0, k),
                         px(y0 - 1 + j, x0 + 1, k), px(y0 - 1 + j, x0 + 2, k), dx);
          v = cubic(r[0], r[1], r[2], r[3], dy);
        }
        o[k] = round8(v);
      }
    }
  return out;
}

Image rotate(const Image& img, double degrees, Interp interp, std::array<uint8_t, 3> fill) {
  // PIL's Image.rotate: counter-clockwise about the centre, as an inverse affine map.
  double a = -degrees * M_PI / 180.0, cx = img.width / 2.0, cy = img.height / 2.0;
  std::array<double, 6> m{std::cos(a), std::sin(a), 0.0, -std::sin(a), std::cos(a), 0.0};
  m[2] = m[0] * -cx + m[1] * -cy + cx;
  m[5] = m[3] * -cx + m[4] * -cy + cy;
  return affine(img, m, interp, fill);
}

void to_chw(const Image& img, const std::array<float, 3>& mean, const std::array<float, 3>& std,
            float* out) {
  const size_t plane = size_t(img.height) * img.width;
  for (int k = 0; k < img.channels; ++k) {
    float scale = 1.0f / (255.0f * std[size_t(k)]), shift = mean[size_t(k)] / std[size_t(k)];
    float* o = out + k * plane;
    for (size_t i = 0; i < plane; ++i)
      o[i] = float(img.pixels[i * img.channels + k]) * scale - shift;
  }
}

void random_erasing(float* chw, int channels, int height, int width, double probability,
                    Generator& gen) {
  if (gen.next_uniform() >= probability) return;
  double area = double(height) * width;
  double log_lo = std::log(0.3), log_hi = std::log(1.0 / 0.3);
  for (int attempt = 0; attempt < 10; ++attempt) {
    double target = (0.02 + (1.0 / 3 - 0.02) * gen.next_uniform()) * area;
    double aspect = std::exp(log_lo + (log_hi - log_lo) * gen.next_uniform());
    int h = int(std::lround(std::sqrt(target * aspect)));
    int w = int(std::lround(std::sqrt(target / aspect)));
    if (w < width && h < height) {
      int top = int(gen.next_uniform() * (height - h + 1));
      int left = int(gen.next_uniform() * (width - w + 1));
      for (int k = 0; k < channels; ++k)
        for (int y = top; y < top + h; ++y)
          for (int x = left; x < left + w; ++x)
            chw[(size_t(k) * height + y) * width + x] = float(gen.next_normal());
      return;
    }
  }
}

}  // namespace scion::data
