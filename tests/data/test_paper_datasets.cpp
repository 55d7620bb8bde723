// The readers of the paper's transfer data sets on small files in each real format
// (tests/data/paper_formats.h writes them): sizes, class counts, labels, every pixel of the binary
// formats (STL-10's column order, SVHN's MATLAB order and label 10 -> 0), the official splits
// (Flowers-102 train = trnid + valid, Pets trainval/test, DTD train1 + val1, Food-101's lists), the
// seeded EuroSAT split, and bad input: exit-2 errors naming the file and what was expected.
#include <sys/stat.h>
#include <zlib.h>

#include <algorithm>
#include <set>

#include "core/error.h"
#include "data/dataset.h"
#include "data/paper_datasets.h"
#include "tests/data/paper_formats.h"
#include "tests/support.h"

using namespace scion;
using namespace scion::data;

namespace {

std::string error_of(const std::string& kind, const std::string& root, const std::string& split) {
  try {
    open_dataset(kind, root, split);
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("stl10: the binary release's column order and labels 1..10", "[data][paper]") {
  const std::string root = test::temp_dir();
  test::write_stl10(root, "train", 12);
  test::write_stl10(root, "test", 5);
  DatasetPtr train = open_dataset("stl10", root, "train"), val = open_dataset("stl10", root, "val");
  REQUIRE(train->size() == 12);
  CHECK(val->size() == 5);  // val means the test set
  CHECK(train->num_classes() == 10);
  for (int64_t i : {0, 7, 11}) {
    Sample s = train->get(i);
    CHECK(s.label == i % 10);
    REQUIRE(s.image.height == 96);
    for (auto [r, x, c] : {std::tuple{0, 0, 0}, std::tuple{5, 90, 1}, std::tuple{95, 3, 2}})
      CHECK(s.image.pixels[size_t((r * 96 + x) * 3 + c)] ==
            test::pattern(size_t(i), size_t(c), size_t(r), size_t(x)));
  }
  // Truncated pixels, a bad label: named.
  std::vector<uint8_t> y = read_file(root + "/stl10_binary/test_y.bin");
  y[2] = 11;
  test::write_bytes(root + "/stl10_binary/test_y.bin", y);
  CHECK(error_of("stl10", root, "test").find("test_y.bin: label 11 at record 2") !=
        std::string::npos);
  test::write_bytes(root + "/stl10_binary/test_X.bin", std::vector<uint8_t>(27648 * 5 - 1));
  CHECK(error_of("stl10", root, "test").find("test_X.bin: 138239 bytes") != std::string::npos);
  CHECK(error_of("stl10", test::temp_dir(), "train").find("download.sh stl10") !=
        std::string::npos);
}

TEST_CASE("svhn: MATLAB v5 through libmatio, column-major pixels, label 10 is the digit 0",
          "[data][paper]") {
  const std::string root = test::temp_dir();
  const auto compression = GENERATE(MAT_COMPRESSION_NONE, MAT_COMPRESSION_ZLIB);
  INFO("compressed: " << (compression == MAT_COMPRESSION_ZLIB));
  test::write_svhn(root, "train", 23, compression);
  DatasetPtr d = open_dataset("svhn", root, "train");
  REQUIRE(d->size() == 23);
  CHECK(d->num_classes() == 10);
  for (int64_t i : {0, 8, 9, 22}) {
    Sample s = d->get(i);
    CHECK(s.label == (1 + i % 10) % 10);  // 10 -> 0
    for (auto [r, x, c] : {std::tuple{0, 0, 0}, std::tuple{31, 2, 1}, std::tuple{7, 30, 2}})
      CHECK(s.image.pixels[size_t((r * 32 + x) * 3 + c)] ==
            test::pattern(size_t(i), size_t(c), size_t(r), size_t(x)));
  }
  CHECK(error_of("svhn", root, "test").find("test_32x32.mat") != std::string::npos);
  test::write_bytes(root + "/test_32x32.mat", {'M', 'A', 'T', 'L', 'A', 'B', ' ', '5'});
  CHECK(error_of("svhn", root, "test").find("not a MATLAB .mat file") != std::string::npos);
  mkdir((root + "/bad").c_str(), 0755);
  mkdir((root + "/bad/train_32x32.mat").c_str(), 0755);
  CHECK(error_of("svhn", root + "/bad", "train").find("is a folder") != std::string::npos);
}

namespace {

void put_u32(std::vector<uint8_t>& out, uint32_t v) {
  for (int k = 0; k < 4; ++k) out.push_back(uint8_t(v >> (8 * k)));
}

// A little-endian MAT v5 header (version 1.0 unless told) followed by `body`.
std::vector<uint8_t> mat5(const std::vector<uint8_t>& body, uint16_t version = 0x0100) {
  std::vector<uint8_t> f(128 + body.size(), ' ');
  f[124] = uint8_t(version & 0xff);
  f[125] = uint8_t(version >> 8);
  f[126] = 'I';
  f[127] = 'M';
  std::copy(body.begin(), body.end(), f.begin() + 128);
  return f;
}

}  // namespace

// libmatio allocates what a header declares before reading it (the `mat` fuzz target found
// 4-13 TB requests); data/mat_layout.h checks every tag against its container first.
TEST_CASE("svhn: a MAT header declaring more than its file holds is refused before libmatio",
          "[data][paper]") {
  const std::string root = test::temp_dir();
  const std::string file = root + "/test_32x32.mat";
  // A 1 x 1 double named by a 4 GB name subelement inside a 40-byte matrix element.
  std::vector<uint8_t> body;
  for (uint32_t w : {14u, 40u, 6u, 8u, 6u, 0u, 5u, 8u, 1u, 1u, 1u, 0xfc000006u}) put_u32(body, w);
  test::write_bytes(file, mat5(body));
  CHECK(error_of("svhn", root, "test")
            .find("element at byte 168 declares 4227858438 bytes, more "
                  "than the 0 left in its enclosing element") != std::string::npos);
  // A compressed element whose inflated matrix claims 100 MB.
  std::vector<uint8_t> inner;
  for (uint32_t w : {14u, 100000000u, 6u, 8u, 6u, 0u}) put_u32(inner, w);
  std::vector<uint8_t> packed(compressBound(uLong(inner.size())));
  uLongf packed_size = uLongf(packed.size());
  REQUIRE(compress(packed.data(), &packed_size, inner.data(), uLong(inner.size())) == Z_OK);
  body.clear();
  put_u32(body, 15);
  put_u32(body, uint32_t(packed_size));
  body.insert(body.end(), packed.begin(), packed.begin() + long(packed_size));
  test::write_bytes(file, mat5(body));
  CHECK(error_of("svhn", root, "test")
            .find("declares 100000000 bytes, more than " + std::to_string(packed_size) +
                  " compressed bytes can inflate to") != std::string::npos);
  // The matrix element itself longer than the file.
  body.clear();
  for (uint32_t w : {14u, 4096u, 6u, 8u}) put_u32(body, w);
  test::write_bytes(file, mat5(body));
  CHECK(error_of("svhn", root, "test")
            .find("declares 4096 bytes, more than the 8 left in the file") != std::string::npos);
  // A 1 x 2852126724 double array in a 40-byte element (libmatio sizes buffers from dimensions).
  body.clear();
  for (uint32_t w : {14u, 40u, 6u, 8u, 6u, 0u, 5u, 8u, 1u, 0xaa000004u, 1u, 0u}) put_u32(body, w);
  test::write_bytes(file, mat5(body));
  CHECK(error_of("svhn", root, "test")
            .find("declares dimensions of 2852126724 elements, more than its 40 bytes can hold") !=
        std::string::npos);
  // v7.3 (HDF5) is not read: the official files are v5.
  test::write_bytes(file, mat5({}, 0x0200));
  CHECK(error_of("svhn", root, "test").find("version 2.0 is not read") != std::string::npos);
}

TEST_CASE("flowers102: the official code's split (train = trnid + valid, test = tstid)",
          "[data][paper]") {
  const std::string root = test::temp_dir();
  test::write_flowers(root, 10, {1, 2, 3}, {4, 5}, {6, 7, 8, 9, 10});
  DatasetPtr train = open_dataset("flowers102", root, "train"),
             test_set = open_dataset("flowers102", root, "test");
  REQUIRE(train->size() == 5);
  REQUIRE(test_set->size() == 5);
  CHECK(train->num_classes() == 102);
  CHECK(train->get(3).name == root + "/jpg/image_00004.jpg");
  CHECK(train->label(3) == (4 * 7) % 102);  // labels are 1-based in imagelabels.mat
  CHECK(test_set->label(4) == (10 * 7) % 102);
  CHECK(!train->get(0).encoded.empty());
  test::write_flowers(root, 10, {1, 2, 11}, {4}, {6});  // id 11 has no label
  CHECK(error_of("flowers102", root, "train").find("setid.mat: variable 'trnid' element 2 is 11") !=
        std::string::npos);
}

TEST_CASE("pets, food101, dtd: list files, classes, and bad lines named", "[data][paper]") {
  const auto jpegs = test::sample_jpegs(6);
  REQUIRE(jpegs.size() == 6);
  // Pets: annotations/{trainval,test}.txt "<name> <class> <species> <breed>".
  const std::string pets = test::temp_dir();
  test::mkdirs(pets + "/images");
  test::mkdirs(pets + "/annotations");
  const char* names[] = {"Abyssinian_1",        "Abyssinian_2", "beagle_3",
                         "yorkshire_terrier_4", "Bengal_5",     "boxer_6"};
  for (int i = 0; i < 6; ++i)
    test::copy_file(jpegs[size_t(i)], pets + "/images/" + names[i] + ".jpg");
  test::write_text_file(pets + "/annotations/trainval.txt",
                        "#Image CLASS-ID SPECIES BREED ID\nAbyssinian_1 1 1 1\nAbyssinian_2 1 1 1\n"
                        "beagle_3 11 2 4\nyorkshire_terrier_4 37 2 25\n");
  test::write_text_file(pets + "/annotations/test.txt", "Bengal_5 6 1 6\nboxer_6 13 2 6\n");
  DatasetPtr p = open_dataset("pets", pets, "train");
  REQUIRE(p->size() == 4);
  CHECK(p->num_classes() == 37);
  CHECK(p->label(3) == 36);
  CHECK(open_dataset("pets", pets, "val")->label(1) == 12);
  test::write_text_file(pets + "/annotations/test.txt", "Bengal_5 38 1 6\n");
  CHECK(error_of("pets", pets, "test").find("test.txt:1: class 38 is not in 1..37") !=
        std::string::npos);
  test::write_text_file(pets + "/annotations/test.txt", "../../etc/passwd 3 1 1\n");
  CHECK(error_of("pets", pets, "test").find("is not a file name inside the data root") !=
        std::string::npos);

  // Food-101: food-101/meta/{classes,train,test}.txt, images/<class>/<id>.jpg.
  const std::string food = test::temp_dir(), fd = food + "/food-101";
  for (const char* c : {"apple_pie", "ramen", "sushi"}) test::mkdirs(fd + "/images/" + c);
  test::mkdirs(fd + "/meta");
  test::copy_file(jpegs[0], fd + "/images/apple_pie/101.jpg");
  test::copy_file(jpegs[1], fd + "/images/ramen/202.jpg");
  test::copy_file(jpegs[2], fd + "/images/sushi/303.jpg");
  test::write_text_file(fd + "/meta/classes.txt", "apple_pie\nramen\nsushi\n");
  test::write_text_file(fd + "/meta/train.txt", "apple_pie/101\nsushi/303\n");
  test::write_text_file(fd + "/meta/test.txt", "ramen/202\n");
  DatasetPtr f = open_dataset("food101", food, "train");
  REQUIRE(f->size() == 2);
  CHECK(f->num_classes() == 3);
  CHECK(f->label(1) == 2);
  CHECK(f->get(1).name == fd + "/images/sushi/303.jpg");
  CHECK(open_dataset("food101", food, "test")->label(0) == 1);
  test::write_text_file(fd + "/meta/test.txt", "pizza/1\n");
  CHECK(error_of("food101", food, "test").find("class 'pizza' is not in meta/classes.txt") !=
        std::string::npos);

  // DTD: dtd/images/<class>/, dtd/labels/{train1,val1,test1}.txt; train = train1 + val1.
  const std::string dtd = test::temp_dir(), dd = dtd + "/dtd";
  for (const char* c : {"banded", "zigzagged"}) test::mkdirs(dd + "/images/" + c);
  test::mkdirs(dd + "/labels");
  test::copy_file(jpegs[3], dd + "/images/banded/banded_0001.jpg");
  test::copy_file(jpegs[4], dd + "/images/zigzagged/zigzagged_0002.jpg");
  test::copy_file(jpegs[5], dd + "/images/banded/banded_0003.jpg");
  test::write_text_file(dd + "/labels/train1.txt", "banded/banded_0001.jpg\n");
  test::write_text_file(dd + "/labels/val1.txt", "zigzagged/zigzagged_0002.jpg\n");
  test::write_text_file(dd + "/labels/test1.txt", "banded/banded_0003.jpg\n");
  DatasetPtr t = open_dataset("dtd", dtd, "train");
  REQUIRE(t->size() == 2);
  CHECK(t->num_classes() == 2);
  CHECK(t->label(1) == 1);
  CHECK(open_dataset("dtd", dtd, "test")->size() == 1);
  test::write_text_file(dd + "/labels/test1.txt", "");
  CHECK(error_of("dtd", dtd, "test").find("test1.txt: empty") != std::string::npos);
}

TEST_CASE("eurosat: a fixed seeded 80/20 split per class, the same every time", "[data][paper]") {
  const auto jpegs = test::sample_jpegs(25);
  REQUIRE(jpegs.size() == 25);
  const std::string root = test::temp_dir(), dir = root + "/2750";
  const char* classes[] = {"AnnualCrop", "Forest", "River"};
  for (int c = 0; c < 3; ++c) {
    test::mkdirs(dir + "/" + classes[c]);
    for (int k = 0; k < (c == 0 ? 10 : 7); ++k)
      test::copy_file(jpegs[size_t(c * 8 + k) % 25],
                      dir + "/" + classes[c] + "/" + classes[c] + "_" + std::to_string(k) + ".jpg");
  }
  DatasetPtr train = open_dataset("eurosat", root, "train"),
             test_set = open_dataset("eurosat", root, "test");
  CHECK(train->num_classes() == 3);
  CHECK(train->size() == 8 + 6 + 6);  // ceil(80%) of 10, 7, 7
  CHECK(test_set->size() == 2 + 1 + 1);
  std::set<std::string> all;
  for (DatasetPtr d : {train, test_set})
    for (int64_t i = 0; i < d->size(); ++i) all.insert(d->get(i).name);
  CHECK(all.size() == 24);  // disjoint and complete
  DatasetPtr again = open_dataset("eurosat", root, "test");
  for (int64_t i = 0; i < again->size(); ++i) CHECK(again->get(i).name == test_set->get(i).name);
  CHECK(error_of("eurosat", test::temp_dir(), "train").find("no class folders") !=
        std::string::npos);
}
