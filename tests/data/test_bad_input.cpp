// Readers given hostile or careless input: errors name the file at fault (and never read outside
// the data root), instead of surfacing later in cross_entropy or opening what a file names.
#include <sys/stat.h>

#include <fstream>

#include "data/dataset.h"
#include "data/idx.h"
#include "tests/data/support_data.h"
#include "tests/support.h"

using namespace scion;
using namespace scion::data;

namespace {

void write(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

// A Tiny ImageNet layout with one real JPEG per class; `val` lines as given.
std::string tiny_root(const std::string& wnids, const std::string& val_lines) {
  std::string root = test::temp_dir();
  write(root + "/wnids.txt", wnids);
  std::string jpg = test::shared_data("cifar10-jpg/test/cat/0000.jpg");
  SCION_REQUIRE_DATA(jpg);
  for (const char* w : {"n01", "n02"}) {
    std::string d = root + "/train/" + w + "/images";
    REQUIRE(std::system(("mkdir -p " + d + " && cp " + jpg + " " + d + "/a.JPEG").c_str()) == 0);
  }
  REQUIRE(std::system(("mkdir -p " + root + "/val/images && cp " + jpg + " " + root +
                       "/val/images/val_0.JPEG")
                          .c_str()) == 0);
  write(root + "/val/val_annotations.txt", val_lines);
  return root;
}

}  // namespace

TEST_CASE("Tiny ImageNet: duplicate classes and annotations that leave the root are refused",
          "[data]") {
  std::string ok = tiny_root("n01\nn02\n", "val_0.JPEG\tn02\t0\t0\t8\t8\n");
  CHECK(open_dataset("tiny_imagenet", ok, "val")->size() == 1);
  std::string dup = tiny_root("n01\nn02\nn01\n", "val_0.JPEG\tn02\n");
  CHECK_THROWS_WITH(open_dataset("tiny_imagenet", dup, "train"),
                    Catch::Contains(dup + "/wnids.txt") && Catch::Contains("listed twice"));
  std::string escape = tiny_root("n01\nn02\n", "../../../etc/passwd\tn01\n");
  CHECK_THROWS_WITH(
      open_dataset("tiny_imagenet", escape, "val"),
      Catch::Contains("val_annotations.txt:1") && Catch::Contains("not a file name in val/images"));
}

TEST_CASE("IDX labels out of range name the labels file", "[data][idx]") {
  std::string root = test::temp_dir();
  std::vector<unsigned char> images = {0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 1, 7, 9};
  std::vector<unsigned char> labels = {0, 0, 8, 1, 0, 0, 0, 2, 3, 12};
  std::ofstream(root + "/t10k-images-idx3-ubyte", std::ios::binary)
      .write(reinterpret_cast<const char*>(images.data()), std::streamsize(images.size()));
  std::ofstream(root + "/t10k-labels-idx1-ubyte", std::ios::binary)
      .write(reinterpret_cast<const char*>(labels.data()), std::streamsize(labels.size()));
  CHECK_THROWS_WITH(load_mnist(root, "test"), Catch::Contains("t10k-labels-idx1-ubyte") &&
                                                  Catch::Contains("label 12 of item 1"));
}

TEST_CASE("a CIFAR label out of range names the batch file that holds it", "[data]") {
  std::string root = test::temp_dir(), dir = root + "/cifar-10-batches-bin";
  mkdir(dir.c_str(), 0755);
  for (int b = 1; b <= 5; ++b) {
    std::ofstream f(dir + "/data_batch_" + std::to_string(b) + ".bin", std::ios::binary);
    for (int r = 0; r < 2; ++r) {
      f.put(char(b == 3 && r == 1 ? 10 : r));  // batch 3, record 1: label 10 of 10 classes
      for (int p = 0; p < 3072; ++p) f.put(0);
    }
  }
  CHECK_THROWS_WITH(open_dataset("cifar10", root, "train"),
                    Catch::Contains("data_batch_3.bin") && Catch::Contains("record 1"));
}
