// Helpers the data set readers share (data/datasets.cpp, data/paper_datasets.cpp): file tests,
// sorted folder listings, image file names, and a data set of image files decoded on demand.
#pragma once

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/files.h"
#include "data/dataset.h"

namespace scion::data {

inline bool is_dir(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

inline bool is_file(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// The names of the sub-folders (dirs) or regular files in `path`, sorted.
inline std::vector<std::string> list_dir(const std::string& path, bool dirs) {
  std::vector<std::string> out;
  std::unique_ptr<DIR, int (*)(DIR*)> d(opendir(path.c_str()), closedir);
  SCION_CHECK(d != nullptr, path, ": cannot list folder");
  while (dirent* e = readdir(d.get())) {
    std::string n = e->d_name;
    if (n == "." || n == "..") continue;
    if (dirs ? is_dir(path + "/" + n) : is_file(path + "/" + n)) out.push_back(n);
  }
  std::sort(out.begin(), out.end());
  return out;
}

// A .jpg, .jpeg or .png file name (any case).
inline bool image_extension(const std::string& name) {
  auto dot = name.rfind('.');
  if (dot == std::string::npos) return false;
  std::string ext = name.substr(dot + 1);
  std::transform(ext.begin(), ext.end(), ext.begin(), ::tolower);
  return ext == "jpg" || ext == "jpeg" || ext == "png";
}

// Image files with their labels, read (not decoded) on demand: the loader's workers decode.
class FileListDataset : public Dataset {
 public:
  FileListDataset(std::vector<std::string> files, std::vector<int64_t> labels, int64_t classes)
      : files_(std::move(files)), labels_(std::move(labels)), classes_(classes) {}
  int64_t size() const override { return int64_t(files_.size()); }
  int64_t num_classes() const override { return classes_; }
  int64_t label(int64_t i) const override { return labels_[size_t(i)]; }
  Sample get(int64_t i) const override {
    Sample s;
    s.name = files_[size_t(i)];
    s.encoded = read_file(s.name);
    s.label = labels_[size_t(i)];
    return s;
  }

 private:
  std::vector<std::string> files_;
  std::vector<int64_t> labels_;
  int64_t classes_;
};

}  // namespace scion::data
