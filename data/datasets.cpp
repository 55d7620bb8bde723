// Dataset readers (see dataset.h).
#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <sstream>

#include "core/error.h"
#include "core/files.h"
#include "core/rng.h"
#include "data/dataset.h"
#include "data/folders.h"
#include "data/idx.h"
#include "data/paper_datasets.h"

namespace scion::data {

namespace {

void check_split(const std::string& split) {
  SCION_CHECK(split == "train" || split == "val" || split == "test",
              "data split must be train, val or test, got '", split, "'");
}

size_t file_size(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  return size_t(in.tellg());
}

// CIFAR binary: records of [coarse label,] label, 3072 bytes (R plane, G plane, B plane of 32x32).
class CifarDataset : public Dataset {
 public:
  CifarDataset(const std::vector<std::string>& files, bool cifar100) : cifar100_(cifar100) {
    const size_t record = cifar100 ? 3074 : 3073;
    for (const std::string& f : files) {
      const std::string kind = special_file_kind(f);
      SCION_CHECK(kind.empty(), f, ": is ", kind, "; expected a CIFAR binary file");
      std::ifstream in(f, std::ios::binary | std::ios::ate);
      SCION_CHECK(in.good(), f, ": cannot open CIFAR file");
      size_t bytes = size_t(in.tellg());
      SCION_CHECK(bytes > 0 && bytes % record == 0, f, ": size ", bytes,
                  " is not a whole number of ", record, "-byte CIFAR-", cifar100 ? 100 : 10,
                  " records");
      size_t at = data_.size();
      data_.resize(at + bytes);
      in.seekg(0);
      in.read(reinterpret_cast<char*>(data_.data() + at), std::streamsize(bytes));
      SCION_CHECK(in.good(), f, ": read error");
    }
    n_ = int64_t(data_.size() / record);
    record_ = record;
    int64_t first = 0;  // index of the first record of the current file
    for (const std::string& f : files) {
      int64_t count = int64_t(file_size(f) / record);
      for (int64_t i = first; i < first + count; ++i)
        SCION_CHECK(label(i) < num_classes(), f, ": label ", label(i), " of record ", i - first,
                    " out of range for ", num_classes(), " classes");
      first += count;
    }
  }
  int64_t size() const override { return n_; }
  int64_t num_classes() const override { return cifar100_ ? 100 : 10; }
  int64_t label(int64_t i) const override {
    return data_[size_t(i) * record_ + (cifar100_ ? 1 : 0)];
  }
  int64_t coarse(int64_t i) const { return data_[size_t(i) * record_]; }
  Sample get(int64_t i) const override {
    Sample s;
    s.label = label(i);
    s.name = "cifar record " + std::to_string(i);
    s.image = Image(32, 32, 3);
    const uint8_t* px = &data_[size_t(i) * record_ + (cifar100_ ? 2 : 1)];
    for (int c = 0; c < 3; ++c)
      for (int p = 0; p < 1024; ++p) s.image.pixels[size_t(p) * 3 + c] = px[c * 1024 + p];
    return s;
  }

 private:
  bool cifar100_;
  std::vector<uint8_t> data_;
  size_t record_ = 3073;
  int64_t n_ = 0;
};

class MnistDataset : public Dataset {
 public:
  explicit MnistDataset(MnistSplit s) : s_(std::move(s)) {}
  int64_t size() const override { return s_.images.size(0); }
  int64_t num_classes() const override { return 10; }
  int64_t label(int64_t i) const override { return s_.labels.data<uint8_t>()[i]; }
  Sample get(int64_t i) const override {
    Sample s;
    s.label = label(i);
    s.name = "mnist image " + std::to_string(i);
    int h = int(s_.images.size(1)), w = int(s_.images.size(2));
    s.image = Image(h, w, 1);
    const uint8_t* p = s_.images.data<uint8_t>() + i * h * w;
    std::copy(p, p + h * w, s.image.pixels.begin());
    return s;
  }

 private:
  MnistSplit s_;
};

class SubsetDataset : public Dataset {
 public:
  SubsetDataset(DatasetPtr base, std::vector<int64_t> idx)
      : base_(std::move(base)), idx_(std::move(idx)) {}
  int64_t size() const override { return int64_t(idx_.size()); }
  int64_t num_classes() const override { return base_->num_classes(); }
  int64_t label(int64_t i) const override { return base_->label(idx_[size_t(i)]); }
  Sample get(int64_t i) const override { return base_->get(idx_[size_t(i)]); }

 private:
  DatasetPtr base_;
  std::vector<int64_t> idx_;
};

DatasetPtr open_cifar(const std::string& root, const std::string& split, bool cifar100) {
  // Accept the extracted folder itself or its parent.
  std::string dir = root;
  std::string sub = cifar100 ? "cifar-100-binary" : "cifar-10-batches-bin";
  if (is_dir(root + "/" + sub)) dir = root + "/" + sub;
  std::vector<std::string> files;
  if (cifar100) {
    files.push_back(dir + (split == "train" ? "/train.bin" : "/test.bin"));
  } else if (split == "train") {
    for (int i = 1; i <= 5; ++i) files.push_back(dir + "/data_batch_" + std::to_string(i) + ".bin");
  } else {
    files.push_back(dir + "/test_batch.bin");
  }
  for (const auto& f : files)
    SCION_CHECK(is_file(f), f, ": CIFAR-", cifar100 ? 100 : 10,
                " file not found (expected the official "
                "binary release in ",
                root, "; data/download.sh fetches it)");
  return std::make_shared<CifarDataset>(files, cifar100);
}

DatasetPtr open_image_folder(const std::string& root, const std::string& split) {
  std::string dir = root + "/" + split;
  SCION_CHECK(is_dir(dir), dir, ": split folder not found (image_folder expects root/", split,
              "/<class>/*.jpg)");
  std::vector<std::string> classes = list_dir(dir, true);
  SCION_CHECK(!classes.empty(), dir, ": no class folders");
  std::vector<std::string> files;
  std::vector<int64_t> labels;
  for (size_t c = 0; c < classes.size(); ++c) {
    std::string cdir = dir + "/" + classes[c];
    size_t before = files.size();
    for (const std::string& f : list_dir(cdir, false))
      if (image_extension(f)) files.push_back(cdir + "/" + f), labels.push_back(int64_t(c));
    SCION_CHECK(files.size() > before, cdir, ": class folder has no .jpg/.jpeg/.png images");
  }
  return std::make_shared<FileListDataset>(files, labels, int64_t(classes.size()));
}

DatasetPtr open_tiny_imagenet(const std::string& root, const std::string& split) {
  SCION_CHECK(path_exists(root + "/wnids.txt"), root,
              "/wnids.txt: not found (Tiny ImageNet root expected)");
  std::istringstream wn(read_text_file(root + "/wnids.txt", "Tiny ImageNet's class list"));
  std::vector<std::string> wnids;  // class index = line number, as the standard loaders
  std::map<std::string, int64_t> index;
  std::string line;
  while (std::getline(wn, line)) {
    std::string id = line.substr(0, line.find_first_of(" \t\r"));
    if (id.empty()) continue;
    SCION_CHECK(index.emplace(id, int64_t(wnids.size())).second, root, "/wnids.txt: class '", id,
                "' listed twice");
    SCION_CHECK(id.find('/') == std::string::npos && id != ".." && id != ".", root,
                "/wnids.txt: class '", id, "' is not a folder name");
    wnids.push_back(id);
  }
  SCION_CHECK(!wnids.empty(), root, "/wnids.txt: empty");
  std::vector<std::string> files;
  std::vector<int64_t> labels;
  if (split == "train") {
    for (size_t c = 0; c < wnids.size(); ++c) {
      std::string dir = root + "/train/" + wnids[c] + "/images";
      SCION_CHECK(is_dir(dir), dir, ": missing class folder");
      size_t before = files.size();
      for (const std::string& f : list_dir(dir, false))
        if (image_extension(f)) files.push_back(dir + "/" + f), labels.push_back(int64_t(c));
      SCION_CHECK(files.size() > before, dir, ": no images");
    }
  } else if (split == "val") {
    std::string ann = root + "/val/val_annotations.txt";
    SCION_CHECK(path_exists(ann), ann, ": not found");
    std::istringstream in(read_text_file(ann, "Tiny ImageNet's validation labels"));
    int64_t line_no = 0;
    while (std::getline(in, line)) {
      ++line_no;
      if (line.empty()) continue;
      std::istringstream ss(line);
      std::string file, wnid;
      ss >> file >> wnid;
      // Only a plain file name inside val/images: never a path out of the data root.
      SCION_CHECK(
          !file.empty() && file.find('/') == std::string::npos && file != ".." && file != ".", ann,
          ":", line_no, ": '", file, "' is not a file name in val/images");
      auto it = index.find(wnid);
      SCION_CHECK(it != index.end(), ann, ":", line_no, ": class '", wnid, "' is not in wnids.txt");
      files.push_back(root + "/val/images/" + file);
      labels.push_back(it->second);
    }
  } else {
    throw InputError(root + ": Tiny ImageNet's test split has no labels; use train or val");
  }
  return std::make_shared<FileListDataset>(files, labels, int64_t(index.size()));
}

}  // namespace

DatasetPtr open_dataset(const std::string& kind, const std::string& root,
                        const std::string& split) {
  check_split(split);
  SCION_CHECK(is_dir(root), root, ": data root not found for dataset '", kind, "'",
              kind == "cifar10" || kind == "cifar100" ||
                      std::count(paper_dataset_names().begin(), paper_dataset_names().end(), kind)
                  ? " (run data/download.sh " + kind + " to fetch it)"
                  : "",
              kind == "fashion_mnist" ? " (apt-get install dataset-fashion-mnist)" : "",
              kind == "image_folder"
                  ? " (expected root/<split>/<class>/*.jpg; for ImageNet-1k see data/download.sh)"
                  : "");
  std::string s = split == "val" && (kind == "cifar10" || kind == "cifar100" ||
                                     kind == "fashion_mnist" || kind == "mnist")
                      ? "test"
                      : split;
  if (kind == "cifar10") return open_cifar(root, s, false);
  if (kind == "cifar100") return open_cifar(root, s, true);
  if (kind == "image_folder") return open_image_folder(root, s);
  if (kind == "tiny_imagenet") return open_tiny_imagenet(root, s);
  if (kind == "fashion_mnist" || kind == "mnist")
    return std::make_shared<MnistDataset>(load_mnist(root, s));
  const auto& paper = paper_dataset_names();
  if (std::find(paper.begin(), paper.end(), kind) != paper.end())
    return open_paper_dataset(kind, root, split);
  std::string known = "cifar10, cifar100, image_folder, tiny_imagenet, fashion_mnist, mnist";
  for (const auto& n : paper) known += ", " + n;
  throw InputError("data.dataset: unknown dataset '" + kind + "' (known: " + known + ")");
}

DatasetPtr balanced_subset(DatasetPtr base, int64_t count, uint64_t seed) {
  int64_t k = base->num_classes();
  SCION_CHECK(count > 0 && count <= base->size(), "data.train_subset: ", count, " is not in [1, ",
              base->size(), "]");
  std::vector<std::vector<int64_t>> by_class(static_cast<size_t>(k));
  for (int64_t i = 0; i < base->size(); ++i) by_class[size_t(base->label(i))].push_back(i);
  Generator gen(seed, 0x5B5E7);
  std::vector<int64_t> chosen;
  for (int64_t c = 0; c < k; ++c) {
    int64_t want = count / k + (c < count % k ? 1 : 0);
    auto& idx = by_class[size_t(c)];
    SCION_CHECK(want <= int64_t(idx.size()), "data.train_subset: ", count, " needs ", want,
                " images of class ", c, " but it has ", idx.size());
    for (int64_t j = int64_t(idx.size()) - 1; j > 0;
         --j)  // seeded Fisher-Yates, then the first `want`
      std::swap(idx[size_t(j)], idx[size_t(gen.next_uniform() * double(j + 1))]);
    chosen.insert(chosen.end(), idx.begin(), idx.begin() + want);
  }
  std::sort(chosen.begin(), chosen.end());
  return std::make_shared<SubsetDataset>(base, chosen);
}

int64_t cifar100_coarse_label(const Dataset& dataset, int64_t index) {
  auto* c = dynamic_cast<const CifarDataset*>(&dataset);
  SCION_CHECK(c != nullptr && c->num_classes() == 100, "coarse labels exist only for cifar100");
  return c->coarse(index);
}

}  // namespace scion::data
