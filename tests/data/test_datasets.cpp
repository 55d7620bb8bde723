// Dataset readers on real data (../shared/data: CIFAR-10 as JPEG folders, the Tiny ImageNet subset,
// Fashion-MNIST from Debian when installed), CIFAR-100 files written here in the official binary
// format, class-balanced subsets, and bad input.
#include <fstream>

#include "data/dataset.h"
#include "tests/data/support_data.h"
#include "tests/support.h"

using namespace scion;
using namespace scion::data;

namespace {

// Official CIFAR-100 binary records: coarse label, fine label, 1024 R, 1024 G, 1024 B bytes.
std::string write_cifar100(const std::string& dir, const std::string& file, int records,
                           int extra_bytes = 0) {
  mkdir(dir.c_str(), 0755);
  std::string path = dir + "/" + file;
  std::ofstream f(path, std::ios::binary);
  for (int r = 0; r < records; ++r) {
    f.put(char(r % 20));         // coarse
    f.put(char((r * 7) % 100));  // fine
    for (int c = 0; c < 3; ++c)
      for (int p = 0; p < 1024; ++p) f.put(char((r + c * 50 + p) & 0xff));
  }
  for (int i = 0; i < extra_bytes; ++i) f.put(0);
  return path;
}

}  // namespace

TEST_CASE("CIFAR-100 official binary format: labels, coarse labels, pixels", "[data]") {
  std::string root = test::tmp() + "/scion_cifar100";
  mkdir(root.c_str(), 0755);
  write_cifar100(root + "/cifar-100-binary", "train.bin", 30);
  write_cifar100(root + "/cifar-100-binary", "test.bin", 10);
  DatasetPtr train = open_dataset("cifar100", root, "train");
  CHECK(train->size() == 30);
  CHECK(train->num_classes() == 100);
  CHECK(train->label(3) == 21);
  CHECK(cifar100_coarse_label(*train, 3) == 3);
  Sample s = train->get(3);
  CHECK(s.label == 21);
  REQUIRE(s.image.height == 32);
  // Pixel (y=0, x=5): R plane byte 5, G plane byte 5, B plane byte 5 of record 3.
  CHECK(int(s.image.at(0, 5, 0)) == ((3 + 0 + 5) & 0xff));
  CHECK(int(s.image.at(0, 5, 1)) == ((3 + 50 + 5) & 0xff));
  CHECK(int(s.image.at(0, 5, 2)) == ((3 + 100 + 5) & 0xff));
  CHECK(open_dataset("cifar100", root, "val")->size() == 10);  // val = test for CIFAR
  write_cifar100(test::tmp() + "/scion_cifar100_bad", "train.bin", 2, 17);
  CHECK_THROWS_WITH(open_dataset("cifar100", test::tmp() + "/scion_cifar100_bad", "train"),
                    Catch::Contains("train.bin") && Catch::Contains("whole number of 3074-byte"));
}

TEST_CASE("image folders: CIFAR-10 JPEG from ../shared/data", "[data][shared]") {
  std::string root = test::shared_data("cifar10-jpg");
  SCION_REQUIRE_DATA(root);
  DatasetPtr train = open_dataset("image_folder", root, "train");
  DatasetPtr test_set = open_dataset("image_folder", root, "test");
  CHECK(train->size() == 50000);
  CHECK(test_set->size() == 10000);
  CHECK(train->num_classes() == 10);
  CHECK(train->label(0) == 0);      // airplane: classes are sorted folder names
  CHECK(train->label(49999) == 9);  // truck
  Sample s = test_set->get(3000);   // class 3 = cat
  CHECK(s.label == 3);
  CHECK(s.name.find("/test/cat/") != std::string::npos);
  Image img = decode_image(s.encoded, s.name);
  CHECK(img.height == 32);
  CHECK(img.width == 32);
  DatasetPtr sub = balanced_subset(train, 1000, 0);
  CHECK(sub->size() == 1000);
  std::vector<int> counts(10, 0);
  for (int64_t i = 0; i < sub->size(); ++i) ++counts[size_t(sub->label(i))];
  for (int c : counts) CHECK(c == 100);
  DatasetPtr again = balanced_subset(train, 1000, 0), other = balanced_subset(train, 1000, 1);
  CHECK(again->get(17).name == sub->get(17).name);
  bool differs = false;
  for (int64_t i = 0; i < 1000 && !differs; ++i) differs = other->get(i).name != sub->get(i).name;
  CHECK(differs);
}

TEST_CASE("Tiny ImageNet subset: counts and validation labels", "[data][shared]") {
  std::string root = test::shared_data("tiny-imagenet-200-subset");
  SCION_REQUIRE_DATA(root);
  DatasetPtr train = open_dataset("tiny_imagenet", root, "train");
  DatasetPtr val = open_dataset("tiny_imagenet", root, "val");
  CHECK(train->num_classes() == 200);
  CHECK(train->size() == 10000);
  CHECK(val->size() == 10000);
  // val_0.JPEG is n03444034 in val_annotations.txt; its class index is its line in wnids.txt.
  std::ifstream wn(root + "/wnids.txt");
  std::string line;
  int64_t index = -1;
  for (int64_t i = 0; std::getline(wn, line); ++i)
    if (line.rfind("n03444034", 0) == 0) index = i;
  CHECK(val->label(0) == index);
  CHECK(val->get(0).name.find("val_0.JPEG") != std::string::npos);
  std::vector<int> per_class(200, 0);
  for (int64_t i = 0; i < val->size(); ++i) ++per_class[size_t(val->label(i))];
  for (int c : per_class) CHECK(c == 50);
  CHECK_THROWS_WITH(open_dataset("tiny_imagenet", root, "test"), Catch::Contains("no labels"));
}

TEST_CASE("Fashion-MNIST through the dataset interface", "[data]") {
  std::string root = "/usr/share/datasets/fashion-mnist";
  SCION_REQUIRE_DATA(root);
  DatasetPtr train = open_dataset("fashion_mnist", root, "train");
  CHECK(train->size() == 60000);
  Sample s = train->get(0);
  CHECK(s.image.channels == 1);
  CHECK(s.image.height == 28);
}

TEST_CASE("bad data input gets clear errors", "[data]") {
  CHECK_THROWS_WITH(open_dataset("cifar10", "/nonexistent/cifar", "train"),
                    Catch::Contains("/nonexistent/cifar") && Catch::Contains("download.sh"));
  CHECK_THROWS_WITH(open_dataset("imagenet21k", "/tmp", "train"),
                    Catch::Contains("unknown dataset"));
  CHECK_THROWS_WITH(open_dataset("image_folder", "/tmp", "holdout"),
                    Catch::Contains("train, val or test"));
  std::string root = test::tmp() + "/scion_folder";
  mkdir(root.c_str(), 0755);
  CHECK_THROWS_WITH(open_dataset("image_folder", root, "val"),
                    Catch::Contains(test::tmp() + "/scion_folder/val"));
  mkdir((root + "/train").c_str(), 0755);
  mkdir((root + "/train/empty_class").c_str(), 0755);
  CHECK_THROWS_WITH(open_dataset("image_folder", root, "train"), Catch::Contains("empty_class"));
  // A truncated JPEG and a file that is no image: errors name the file.
  std::string src = test::shared_data("cifar10-jpg/test/cat/0000.jpg");
  if (test::exists(src)) {
    std::vector<uint8_t> bytes = read_file(src);
    bytes.resize(bytes.size() / 2);
    CHECK_THROWS_WITH(decode_image(bytes, "half.jpg"), Catch::Contains("half.jpg"));
  }
  std::vector<uint8_t> junk{'n', 'o', 't', ' ', 'a', 'n', ' ', 'i', 'm', 'a', 'g', 'e'};
  CHECK_THROWS_AS(decode_image(junk, "junk.png"), InputError);
  CHECK_THROWS_WITH(decode_image(junk, "junk.png"), Catch::Contains("junk.png"));
}

TEST_CASE("CIFAR-10 official binary format: five training batches and the test batch", "[data]") {
  std::string dir = test::tmp() + "/scion_cifar10/cifar-10-batches-bin";
  system(("mkdir -p " + test::tmp() + "/scion_cifar10/cifar-10-batches-bin").c_str());
  auto write = [&](const std::string& file, int records, int first) {
    std::ofstream f(dir + "/" + file, std::ios::binary);
    for (int r = 0; r < records; ++r) {
      f.put(char((first + r) % 10));  // label
      for (int p = 0; p < 3072; ++p) f.put(char((first + r + p) & 0xff));
    }
  };
  for (int b = 1; b <= 5; ++b) write("data_batch_" + std::to_string(b) + ".bin", 4, 4 * (b - 1));
  write("test_batch.bin", 3, 100);
  DatasetPtr train = open_dataset("cifar10", test::tmp() + "/scion_cifar10", "train");
  CHECK(train->size() == 20);
  CHECK(train->num_classes() == 10);
  CHECK(train->label(13) == 3);
  CHECK(int(train->get(13).image.at(0, 1, 2)) == ((13 + 2048 + 1) & 0xff));  // B plane, pixel 1
  CHECK(open_dataset("cifar10", test::tmp() + "/scion_cifar10/cifar-10-batches-bin", "test")
            ->size() == 3);
  CHECK_THROWS_WITH(cifar100_coarse_label(*train, 0), Catch::Contains("cifar100"));
}
