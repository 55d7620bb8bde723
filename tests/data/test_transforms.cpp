// Transforms: resize within 1/255 mean absolute difference of PIL (fixtures from
// tests/golden/make_golden_data.py), flip is exact, random crops stay in bounds, same seed gives
// the same output, RandAugment spec parsing, RandomErasing, Mixup/CutMix targets, ImageNet photos
// through RandomResizedCrop, and the DataLoader's determinism across worker counts.
#include <dirent.h>
#include <zlib.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "data/loader.h"
#include "tests/data/support_data.h"
#include "tests/support.h"

using namespace scion;
using namespace scion::data;

namespace {

Image test_image(int h, int w, uint64_t seed) {
  Image img(h, w, 3);
  Generator g(seed);
  for (auto& p : img.pixels) p = uint8_t(g.next_u32() & 0xff);
  return img;
}

}  // namespace

TEST_CASE("bicubic and bilinear resize match PIL within 1/255 on real images", "[data][shared]") {
  SafetensorsFile f = SafetensorsFile::open(std::string(SCION_GOLDEN_DIR) + "/data.safetensors");
  auto cases = nlohmann::json::parse(f.metadata().at("cases"));
  for (size_t i = 0; i < cases.size(); ++i) {
    std::string path = test::shared_data(cases[i]["path"].get<std::string>());
    SCION_REQUIRE_DATA(path);
    Image src = load_image(path);
    int h = cases[i]["height"], w = cases[i]["width"];
    for (std::string mode : {"bicubic", "bilinear"}) {
      INFO(path << " -> " << h << "x" << w << " " << mode);
      Image ours = resize(src, h, w, parse_interp(mode));
      Tensor ref = f.get("case" + std::to_string(i) + "." + mode);
      REQUIRE(ref.shape() == Shape({h, w, 3}));
      const uint8_t* r = ref.data<uint8_t>();
      double mad = 0;
      for (size_t k = 0; k < ours.pixels.size(); ++k)
        mad += std::fabs(double(ours.pixels[k]) - r[k]);
      mad /= double(ours.pixels.size());
      INFO("mean absolute difference " << mad << " (of 255)");
      CHECK(mad <= 1.0);
    }
  }
}

TEST_CASE("flip is exact and crops stay in bounds", "[data]") {
  Image img = test_image(5, 7, 1);
  Image f = hflip(img);
  for (int y = 0; y < 5; ++y)
    for (int x = 0; x < 7; ++x)
      for (int c = 0; c < 3; ++c) CHECK(f.at(y, x, c) == img.at(y, 6 - x, c));
  CHECK(hflip(f).pixels == img.pixels);
  Generator g(3);
  for (int i = 0; i < 2000; ++i) {
    int h = 20 + i % 300, w = 15 + (i * 7) % 400;
    CropBox b = random_resized_crop_box(h, w, 0.08, 1.0, 3.0 / 4, 4.0 / 3, g);
    CHECK((b.top >= 0 && b.left >= 0 && b.height > 0 && b.width > 0 && b.top + b.height <= h &&
           b.left + b.width <= w));
  }
  Image c = crop(img, -1, 2, 3, 3, 9);
  CHECK(int(c.at(0, 0, 0)) == 9);  // row above the image: fill
  CHECK(c.at(1, 0, 0) == img.at(0, 2, 0));
}

TEST_CASE("the same seed gives the same augmentation, values are normalized floats", "[data]") {
  PipelineConfig pc;
  pc.img_size = 32;
  pc.randaugment = "rand-m9-mstd0.5-inc1";
  pc.reprob = 0.25;
  Pipeline p(pc);
  Sample s;
  s.image = test_image(40, 48, 7);
  std::vector<float> a(3 * 32 * 32), b(a.size()), c(a.size());
  Generator g1(11), g2(11), g3(12);
  p(s, g1, a.data());
  p(s, g2, b.data());
  p(s, g3, c.data());
  CHECK(a == b);
  CHECK(a != c);
  for (float v : a) CHECK((std::isfinite(v) && v > -10 && v < 10));
}

TEST_CASE("RandAugment parses timm's spec strings", "[data]") {
  RandAugment ra("rand-m9-mstd0.5-inc1", {124, 116, 104}, Interp::bicubic);
  CHECK(ra.ops().size() == 15);
  CHECK(ra.magnitude() == 9);
  CHECK(ra.magnitude_std() == 0.5);
  CHECK(ra.num_layers() == 2);
  CHECK(std::find(ra.ops().begin(), ra.ops().end(), "PosterizeIncreasing") != ra.ops().end());
  RandAugment plain("rand-m7-n3", {0, 0, 0}, Interp::bilinear);
  CHECK(plain.num_layers() == 3);
  CHECK(std::find(plain.ops().begin(), plain.ops().end(), "Posterize") != plain.ops().end());
  CHECK_THROWS_WITH(RandAugment("rand-m9-zz3", {0, 0, 0}, Interp::bicubic), Catch::Contains("zz3"));
  CHECK_THROWS_WITH(RandAugment("autoaug-v0", {0, 0, 0}, Interp::bicubic),
                    Catch::Contains("rand-"));
  // Ops with PIL's semantics on known values.
  Image img(1, 4, 3);
  img.pixels = {0, 10, 20, 100, 110, 120, 200, 210, 220, 250, 251, 252};
  CHECK(invert(img).pixels[0] == 255);
  CHECK(solarize(img, 128).pixels[6] == 55);
  CHECK(posterize(img, 4).pixels[4] == 96);
  CHECK(solarize_add(img, 30).pixels[3] == 130);
  Image ac = auto_contrast(img);
  CHECK(ac.pixels[0] == 0);
  CHECK(ac.pixels[9] == 255);
  Image rot = rotate(test_image(16, 16, 2), 0.0, Interp::bilinear, {0, 0, 0});
  CHECK(rot.pixels == test_image(16, 16, 2).pixels);  // a zero rotation is the identity
}

TEST_CASE("RandomErasing fills one box with noise, probability 0 changes nothing", "[data]") {
  std::vector<float> x(3 * 20 * 20, 5.0f);
  Generator g(1);
  random_erasing(x.data(), 3, 20, 20, 0.0, g);
  CHECK(std::count(x.begin(), x.end(), 5.0f) == int64_t(x.size()));
  random_erasing(x.data(), 3, 20, 20, 1.0, g);
  int64_t changed = int64_t(x.size()) - std::count(x.begin(), x.end(), 5.0f);
  CHECK(changed >= 3 * 8);  // at least 2% of the area, in every channel
  CHECK(changed <= int64_t(x.size()) / 3 + 60);
}

TEST_CASE("Mixup/CutMix: soft targets sum to one and mix the reversed batch", "[data]") {
  Tensor labels = from_vector({0, 1, 2, 3}, {4}, DType::i64);
  MixupConfig mc;
  mc.mixup_alpha = 0.8;
  mc.cutmix_alpha = 1.0;
  mc.label_smoothing = 0.1;
  for (uint64_t seed = 0; seed < 20; ++seed) {
    Tensor x = empty({4, 1, 8, 8});
    float* p = x.data<float>();
    for (int i = 0; i < 4; ++i)
      for (int j = 0; j < 64; ++j) p[i * 64 + j] = float(i);
    Generator g(seed);
    Tensor t = mixup_batch(x, labels, 5, mc, g);
    std::vector<double> tv = t.to_vector();
    for (int i = 0; i < 4; ++i) {
      double s = 0;
      for (int k = 0; k < 5; ++k) s += tv[size_t(i * 5 + k)];
      CHECK(s == Approx(1.0));
      // Image i is a mix of images i and 3 - i; its mean pixel equals lam*i + (1-lam)*(3-i),
      // and lam is also the weight of label i in the target (minus smoothing).
      double mean_px = 0;
      for (int j = 0; j < 64; ++j) mean_px += p[i * 64 + j] / 64.0;
      double w_i = (tv[size_t(i * 5 + i)] - 0.1 / 5) / 0.9;
      if (i != 3 - i) CHECK(mean_px == Approx(w_i * i + (1 - w_i) * (3 - i)).margin(1e-5));
    }
  }
  Generator g(1);
  CHECK(std::fabs([&] {
          double s = 0;
          for (int i = 0; i < 4000; ++i) s += sample_beta(0.8, 0.8, g);
          return s / 4000;
        }() - 0.5) < 0.02);
}

TEST_CASE("ImageNet photos through RandomResizedCrop (with JPEG DCT scaling) and eval resize",
          "[data][shared]") {
  std::string root = test::shared_data("imagenet-sample");
  SCION_REQUIRE_DATA(root);
  PipelineConfig train_cfg;
  train_cfg.img_size = 224;
  train_cfg.randaugment = "rand-m9-mstd0.5-inc1";
  Pipeline train_p(train_cfg);
  PipelineConfig eval_cfg = train_cfg;
  eval_cfg.train = false;
  Pipeline eval_p(eval_cfg);
  int seen = 0;
  std::vector<float> out(3 * 224 * 224);
  for (const char* wnid : {"n01440764", "n01443537", "n01484850"}) {
    std::string dir = root + "/" + wnid;
    std::unique_ptr<DIR, int (*)(DIR*)> d(opendir(dir.c_str()), closedir);
    REQUIRE(d);
    while (dirent* e = readdir(d.get())) {
      std::string n = e->d_name;
      if (n.size() < 5 || n.substr(n.size() - 5) != ".JPEG") continue;
      Sample s;
      s.name = dir + "/" + n;
      s.encoded = read_file(s.name);
      int w, h;
      image_size(s.encoded, s.name, w, h);
      CHECK(w > 224);
      for (uint64_t seed = 0; seed < 5; ++seed) {
        Generator g(seed);
        Image img = train_p.augment(s, g);
        CHECK(img.height == 224);
        CHECK(img.width == 224);
      }
      Generator g(0);
      eval_p(s, g, out.data());
      for (float v : out) CHECK(std::isfinite(v));
      ++seen;
    }
  }
  CHECK(seen == 3);
}

TEST_CASE("DataLoader: batches identical for any worker count, keyed by seed and epoch", "[data]") {
  std::string root = test::tmp() + "/scion_cifar100_loader";
  mkdir(root.c_str(), 0755);
  {
    std::ofstream f(root + "/train.bin", std::ios::binary);
    for (int r = 0; r < 50; ++r) {
      f.put(char(r % 20));
      f.put(char(r % 100));
      for (int p = 0; p < 3072; ++p) f.put(char((r * 31 + p) & 0xff));
    }
  }
  DatasetPtr ds = open_dataset("cifar100", root, "train");
  PipelineConfig pc;
  pc.img_size = 32;
  pc.train_crop = "random_crop";
  pc.randaugment = "rand-m9-mstd0.5-inc1";
  pc.reprob = 0.25;
  MixupConfig mc;
  mc.mixup_alpha = 0.8;
  mc.cutmix_alpha = 1.0;
  auto run = [&](int workers, int64_t epoch) {
    LoaderOptions o;
    o.batch_size = 8;
    o.workers = workers;
    o.seed = 5;
    DataLoader dl(ds, Pipeline(pc), o, mc);
    CHECK(dl.num_batches() == 6);  // 50 / 8 with drop_last
    dl.start_epoch(epoch);
    std::vector<double> all;
    Batch b;
    int64_t expect = 0;
    while (dl.next(b)) {
      CHECK(b.index == expect++);
      CHECK(b.images.shape() == Shape({8, 3, 32, 32}));
      CHECK(b.targets.shape() == Shape({8, 100}));
      for (double v : b.images.to_vector()) all.push_back(v);
      for (double v : b.labels.to_vector()) all.push_back(v);
      for (double v : b.targets.to_vector()) all.push_back(v);
    }
    CHECK(expect == 6);
    return all;
  };
  auto w0 = run(0, 1), w1 = run(1, 1), w2 = run(2, 1), other_epoch = run(2, 2);
  CHECK(w0 == w1);
  CHECK(w0 == w2);
  CHECK(w0 != other_epoch);
  // Skipping batches (resume inside an epoch) yields the same later batches.
  LoaderOptions o;
  o.batch_size = 8;
  o.seed = 5;
  DataLoader dl(ds, Pipeline(pc), o, mc);
  dl.start_epoch(1, 4);
  Batch b;
  REQUIRE(dl.next(b));
  CHECK(b.index == 4);
}

TEST_CASE("DataLoader shards: the slices of N shards are the one-process batch, Mixup included",
          "[data]") {
  std::string root = test::tmp() + "/scion_cifar100_shards";
  mkdir(root.c_str(), 0755);
  {
    std::ofstream f(root + "/train.bin", std::ios::binary);
    for (int r = 0; r < 45; ++r) {
      f.put(char(r % 20));
      f.put(char(r % 100));
      for (int p = 0; p < 3072; ++p) f.put(char((r * 37 + p * 3) & 0xff));
    }
  }
  DatasetPtr ds = open_dataset("cifar100", root, "train");
  PipelineConfig pc;
  pc.img_size = 32;
  pc.train_crop = "random_crop";
  MixupConfig mc;
  mc.mixup_alpha = 0.8;
  mc.cutmix_alpha = 1.0;
  // One pass of an epoch: every batch's images, labels and targets (concatenated over shards).
  auto epoch = [&](int shards, bool train) {
    std::vector<std::vector<Batch>> per_shard(static_cast<size_t>(shards));
    for (int k = 0; k < shards; ++k) {
      LoaderOptions o;
      o.batch_size = 12;
      o.seed = 3;
      o.shard = k;
      o.shards = shards;
      o.shuffle = train;
      o.drop_last = train;
      PipelineConfig p = pc;
      p.train = train;
      DataLoader dl(ds, Pipeline(p), o, mc);
      dl.start_epoch(2);
      Batch b;
      while (dl.next(b)) per_shard[size_t(k)].push_back(b);
    }
    std::vector<Batch> whole;
    for (size_t i = 0; i < per_shard[0].size(); ++i) {
      std::vector<Tensor> im, lb, tg;
      for (auto& s : per_shard) {
        REQUIRE(s.size() == per_shard[0].size());
        im.push_back(s[i].images);
        lb.push_back(s[i].labels);
        if (s[i].targets.defined()) tg.push_back(s[i].targets);
      }
      Batch b;
      b.images = cat(im, 0);
      b.labels = cat(lb, 0);
      if (!tg.empty()) b.targets = cat(tg, 0);
      whole.push_back(b);
    }
    return whole;
  };
  for (bool train : {true, false}) {
    INFO((train ? "training (Mixup/CutMix, drop_last)" : "evaluation (last batch partial)"));
    std::vector<Batch> one = epoch(1, train);
    for (int shards : {2, 3}) {
      INFO(shards << " shards");
      std::vector<Batch> many = epoch(shards, train);
      REQUIRE(many.size() == one.size());
      CHECK(one.size() == (train ? 3u : 4u));
      for (size_t i = 0; i < one.size(); ++i) {
        CHECK(many[i].images.to_vector() == one[i].images.to_vector());
        CHECK(many[i].labels.to_vector() == one[i].labels.to_vector());
        REQUIRE(many[i].targets.defined() == train);
        if (train) CHECK(many[i].targets.to_vector() == one[i].targets.to_vector());
      }
    }
  }
}

TEST_CASE("decompression bombs: images over the pixel limit are refused from their header",
          "[data]") {
  // A PNG header (signature + IHDR with its CRC) claiming 18000 x 18000, no pixel data.
  std::vector<uint8_t> png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n', 0, 0, 0, 13};
  std::vector<uint8_t> ihdr = {'I', 'H',  'D',  'R', 0, 0, 0x46, 0x50, 0,
                               0,   0x46, 0x50, 8,   2, 0, 0,    0};
  png.insert(png.end(), ihdr.begin(), ihdr.end());
  uint32_t crc = uint32_t(crc32(0, ihdr.data(), uInt(ihdr.size())));
  for (int i = 3; i >= 0; --i) png.push_back(uint8_t(crc >> (8 * i)));
  CHECK_THROWS_WITH(decode_image(png, "bomb.png"), Catch::Contains("bomb.png") &&
                                                       Catch::Contains("18000 x 18000") &&
                                                       Catch::Contains("max_image_pixels"));
  // A real CIFAR-10 JPEG whose frame header is patched to claim 65500 x 65500.
  std::string path = test::shared_data("cifar10-jpg/test/cat/0000.jpg");
  SCION_REQUIRE_DATA(path);
  std::vector<uint8_t> jpg = read_file(path);
  CHECK_NOTHROW(decode_image(jpg, "ok.jpg"));
  bool patched = false;
  for (size_t i = 0; i + 8 < jpg.size() && !patched; ++i)
    if (jpg[i] == 0xFF && (jpg[i + 1] == 0xC0 || jpg[i + 1] == 0xC2)) {  // SOF0 / SOF2
      jpg[i + 5] = jpg[i + 7] = 0xFF;
      jpg[i + 6] = jpg[i + 8] = 0xDC;  // 65500
      patched = true;
    }
  REQUIRE(patched);
  CHECK_THROWS_WITH(decode_image(jpg, "bomb.jpg"),
                    Catch::Contains("bomb.jpg") && Catch::Contains("65500 x 65500"));
  // The limit is configurable: a lower one refuses the 32 x 32 original.
  CHECK_THROWS_WITH(decode_image(read_file(path), "small.jpg", 0, 0, 1000),
                    Catch::Contains("1000-pixel limit"));
}
