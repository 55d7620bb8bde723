// The transfer data sets of the weight-selection paper's main table (see paper_datasets.h), each in
// the layout its official download produces. Splits follow the official weight-selection code
// (OscarXZQ/weight-selection, datasets.py) where it has the data set, torchvision elsewhere.
#include "data/paper_datasets.h"

#include <matio.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <sstream>

#include "core/error.h"
#include "core/files.h"
#include "core/rng.h"
#include "data/folders.h"
#include "data/mat_layout.h"

namespace scion::data {

namespace {

// A name read from a list file: a relative path inside the data root (no "..", no leading '/').
void check_relative(const std::string& name, const std::string& file, int64_t line) {
  bool ok = !name.empty() && name[0] != '/' && name.find('\0') == std::string::npos;
  for (size_t at = 0; ok && at <= name.size();) {
    size_t slash = name.find('/', at);
    const std::string part =
        name.substr(at, slash == std::string::npos ? std::string::npos : slash - at);
    ok = !part.empty() && part != "." && part != "..";
    if (slash == std::string::npos) break;
    at = slash + 1;
  }
  SCION_CHECK(ok, file, ":", line, ": '", name, "' is not a file name inside the data root");
}

// The non-empty, non-comment lines of a text list file, with their line numbers.
std::vector<std::pair<int64_t, std::string>> lines_of(const std::string& path,
                                                      const std::string& what) {
  SCION_CHECK(path_exists(path), path, ": not found (", what, ")");
  std::istringstream in(read_text_file(path, what));
  std::vector<std::pair<int64_t, std::string>> out;
  std::string line;
  for (int64_t n = 1; std::getline(in, line); ++n) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t'))
      line.pop_back();
    if (line.empty() || line[0] == '#') continue;
    out.emplace_back(n, line);
  }
  SCION_CHECK(!out.empty(), path, ": empty (", what, ")");
  return out;
}

// Images held in memory as HWC bytes (STL-10, SVHN).
class MemoryImages : public Dataset {
 public:
  MemoryImages(int h, int w, std::vector<uint8_t> hwc, std::vector<int64_t> labels, int64_t classes,
               std::string kind)
      : h_(h),
        w_(w),
        hwc_(std::move(hwc)),
        labels_(std::move(labels)),
        classes_(classes),
        kind_(std::move(kind)) {}
  int64_t size() const override { return int64_t(labels_.size()); }
  int64_t num_classes() const override { return classes_; }
  int64_t label(int64_t i) const override { return labels_[size_t(i)]; }
  Sample get(int64_t i) const override {
    Sample s;
    s.label = labels_[size_t(i)];
    s.name = kind_ + " image " + std::to_string(i);
    s.image = Image(h_, w_, 3);
    const size_t n = size_t(h_) * size_t(w_) * 3;
    std::copy_n(hwc_.begin() + std::ptrdiff_t(size_t(i) * n), n, s.image.pixels.begin());
    return s;
  }

 private:
  int h_, w_;
  std::vector<uint8_t> hwc_;
  std::vector<int64_t> labels_;
  int64_t classes_;
  std::string kind_;
};

std::string root_or_sub(const std::string& root, const std::string& sub) {
  return is_dir(root + "/" + sub) ? root + "/" + sub : root;
}

// ---- MAT files (libmatio) ----------------------------------------------------------------------

struct MatFile {
  mat_t* mat = nullptr;
  std::string path;
  uint64_t bytes = 0;
  explicit MatFile(const std::string& p) : path(p) {
    const std::string kind = special_file_kind(p);
    SCION_CHECK(kind.empty(), p, ": is ", kind, "; expected a MATLAB .mat file");
    SCION_CHECK(is_file(p), p, ": not found");
    bytes = check_mat5_layout(p);
    mat = Mat_Open(p.c_str(), MAT_ACC_RDONLY);
    SCION_CHECK(mat != nullptr, p, ": not a MATLAB .mat file libmatio can read");
  }
  ~MatFile() {
    if (mat) Mat_Close(mat);
  }
  MatFile(const MatFile&) = delete;
  MatFile& operator=(const MatFile&) = delete;
};

using VarPtr = std::unique_ptr<matvar_t, void (*)(matvar_t*)>;

size_t var_elements(const matvar_t& v);
size_t class_bytes(matio_classes c);

// A variable, its size checked against the file's before libmatio reads it: libmatio allocates
// what the header declares, so a damaged or hostile header would ask for terabytes (found by the
// `mat` fuzz target). Compressed variables may hold up to zlib's maximum ratio (1032:1) more.
VarPtr read_var(MatFile& f, const char* name) {
  {
    VarPtr info(Mat_VarReadInfo(f.mat, name), Mat_VarFree);
    SCION_CHECK(info != nullptr, f.path, ": no variable '", name, "' (or it cannot be read)");
    const size_t elem = class_bytes(info->class_type);
    SCION_CHECK(elem > 0 && !info->isComplex, f.path, ": variable '", name,
                "' is not a real numeric array");
    const size_t declared = var_elements(*info) * elem;
    const uint64_t limit = info->compression == MAT_COMPRESSION_NONE ? f.bytes : f.bytes * 1032;
    SCION_CHECK(declared <= limit, f.path, ": variable '", name, "' declares ", declared,
                " bytes of data, more than the file (", f.bytes, " bytes) can hold");
  }
  VarPtr v(Mat_VarRead(f.mat, name), Mat_VarFree);
  SCION_CHECK(v != nullptr, f.path, ": no variable '", name, "' (or it cannot be read)");
  SCION_CHECK(!v->isComplex && v->class_type != MAT_C_SPARSE && v->data != nullptr, f.path,
              ": variable '", name, "' is not a real numeric array");
  return v;
}

size_t var_elements(const matvar_t& v) {
  size_t n = 1;
  for (int d = 0; d < v.rank; ++d) {
    SCION_CHECK(v.dims[d] < (size_t(1) << 40) / std::max<size_t>(n, 1), "MAT dimensions overflow");
    n *= v.dims[d];
  }
  return n;
}

// Bytes per element of a numeric class; 0 for any other (cells, structs, chars, sparse).
size_t class_bytes(matio_classes c) {
  switch (c) {
    case MAT_C_DOUBLE:
    case MAT_C_INT64:
    case MAT_C_UINT64:
      return 8;
    case MAT_C_SINGLE:
    case MAT_C_INT32:
    case MAT_C_UINT32:
      return 4;
    case MAT_C_INT16:
    case MAT_C_UINT16:
      return 2;
    case MAT_C_INT8:
    case MAT_C_UINT8:
      return 1;
    default:
      return 0;
  }
}

// A numeric MAT array as doubles (column-major order, as stored).
std::vector<double> numbers(const matvar_t& v, const std::string& file, const char* name) {
  const size_t n = var_elements(v);
  const size_t elem = class_bytes(v.class_type);
  if (elem == 0) throw InputError(file + ": variable '" + name + "' is not numeric");
  SCION_CHECK(v.nbytes >= n * elem, file, ": variable '", name, "' holds ", v.nbytes,
              " bytes, fewer than its ", n, " elements need");
  std::vector<double> out(n);
  const auto* p = static_cast<const uint8_t*>(v.data);
  for (size_t i = 0; i < n; ++i) {
    const uint8_t* e = p + i * elem;
    switch (v.class_type) {
      case MAT_C_DOUBLE: {
        double x;
        std::memcpy(&x, e, 8);
        out[i] = x;
        break;
      }
      case MAT_C_SINGLE: {
        float x;
        std::memcpy(&x, e, 4);
        out[i] = x;
        break;
      }
      case MAT_C_INT8:
        out[i] = double(int8_t(*e));
        break;
      case MAT_C_UINT8:
        out[i] = double(*e);
        break;
      case MAT_C_INT16: {
        int16_t x;
        std::memcpy(&x, e, 2);
        out[i] = x;
        break;
      }
      case MAT_C_UINT16: {
        uint16_t x;
        std::memcpy(&x, e, 2);
        out[i] = x;
        break;
      }
      case MAT_C_INT32: {
        int32_t x;
        std::memcpy(&x, e, 4);
        out[i] = x;
        break;
      }
      case MAT_C_UINT32: {
        uint32_t x;
        std::memcpy(&x, e, 4);
        out[i] = x;
        break;
      }
      case MAT_C_INT64: {
        int64_t x;
        std::memcpy(&x, e, 8);
        out[i] = double(x);
        break;
      }
      default: {
        uint64_t x;
        std::memcpy(&x, e, 8);
        out[i] = double(x);
        break;
      }
    }
  }
  return out;
}

// Whole numbers in [lo, hi] (labels, image ids): anything else names the file and variable.
std::vector<int64_t> whole_numbers(const std::vector<double>& v, int64_t lo, int64_t hi,
                                   const std::string& file, const char* name) {
  std::vector<int64_t> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    SCION_CHECK(v[i] >= double(lo) && v[i] <= double(hi) && v[i] == double(int64_t(v[i])), file,
                ": variable '", name, "' element ", i, " is ", v[i],
                "; expected a whole number in [", lo, ", ", hi, "]");
    out[i] = int64_t(v[i]);
  }
  return out;
}

// ---- the data sets ------------------------------------------------------------------------------

// STL-10 binary release (stl10_binary/): {train,test}_X.bin hold N images of 3 x 96 x 96 bytes,
// each channel stored column by column (MATLAB order); {train,test}_y.bin one label byte 1..10 each.
DatasetPtr open_stl10(const std::string& root, const std::string& split) {
  const std::string dir = root_or_sub(root, "stl10_binary");
  const std::string xs = dir + "/" + split + "_X.bin", ys = dir + "/" + split + "_y.bin";
  for (const std::string& f : {xs, ys}) {
    const std::string kind = special_file_kind(f);
    SCION_CHECK(kind.empty(), f, ": is ", kind, "; expected an STL-10 binary file");
    SCION_CHECK(is_file(f), f,
                ": STL-10 file not found (expected the binary release, "
                "stl10_binary/; data/download.sh stl10 fetches it)");
  }
  const std::vector<uint8_t> y = read_file(ys), x = read_file(xs);
  constexpr size_t kImage = 3 * 96 * 96;
  SCION_CHECK(!y.empty(), ys, ": empty");
  SCION_CHECK(x.size() == y.size() * kImage, xs, ": ", x.size(), " bytes, but ", ys, " has ",
              y.size(), " labels (", y.size() * kImage, " bytes of 3x96x96 images expected)");
  std::vector<int64_t> labels(y.size());
  for (size_t i = 0; i < y.size(); ++i) {
    SCION_CHECK(y[i] >= 1 && y[i] <= 10, ys, ": label ", int(y[i]), " at record ", i,
                " is not in 1..10");
    labels[i] = y[i] - 1;
  }
  std::vector<uint8_t> hwc(x.size());
  for (size_t n = 0; n < y.size(); ++n)
    for (size_t c = 0; c < 3; ++c)
      for (size_t col = 0; col < 96; ++col)
        for (size_t row = 0; row < 96; ++row)
          hwc[n * kImage + (row * 96 + col) * 3 + c] = x[n * kImage + c * 96 * 96 + col * 96 + row];
  return std::make_shared<MemoryImages>(96, 96, std::move(hwc), std::move(labels), 10, "stl10");
}

// SVHN cropped digits ({train,test}_32x32.mat, MATLAB v5): X is 32 x 32 x 3 x N bytes, y N labels
// 1..10 where 10 is the digit 0 (torchvision's mapping: label 10 -> class 0).
DatasetPtr open_svhn(const std::string& root, const std::string& split) {
  const std::string path = root + "/" + split + "_32x32.mat";
  SCION_CHECK(path_exists(path), path,
              ": SVHN file not found (data/download.sh svhn fetches train_32x32.mat and "
              "test_32x32.mat)");
  MatFile f(path);
  VarPtr x = read_var(f, "X"), y = read_var(f, "y");
  SCION_CHECK(x->rank == 4 && x->dims[0] == 32 && x->dims[1] == 32 && x->dims[2] == 3, path,
              ": X must be 32 x 32 x 3 x N");
  SCION_CHECK(x->class_type == MAT_C_UINT8, path, ": X must hold uint8 pixels");
  const size_t n = x->dims[3];
  SCION_CHECK(n > 0 && var_elements(*y) == n, path, ": y has ", var_elements(*y), " labels for ", n,
              " images");
  SCION_CHECK(x->nbytes >= n * 3072, path, ": X holds fewer bytes than 32 x 32 x 3 x ", n);
  std::vector<int64_t> labels = whole_numbers(numbers(*y, path, "y"), 1, 10, path, "y");
  for (auto& l : labels) l = l == 10 ? 0 : l;
  const auto* px = static_cast<const uint8_t*>(x->data);
  std::vector<uint8_t> hwc(n * 3072);
  for (size_t i = 0; i < n; ++i)
    for (size_t c = 0; c < 3; ++c)
      for (size_t col = 0; col < 32; ++col)
        for (size_t row = 0; row < 32; ++row)
          hwc[i * 3072 + (row * 32 + col) * 3 + c] =
              px[row + 32 * (col + 32 * (c + 3 * i))];  // column-major (row, col, c, n)
  return std::make_shared<MemoryImages>(32, 32, std::move(hwc), std::move(labels), 10, "svhn");
}

// Oxford Flowers-102: jpg/image_%05d.jpg, imagelabels.mat (labels 1..102 per image id),
// setid.mat (trnid, valid, tstid). As the official code: train = trnid + valid, test = tstid.
DatasetPtr open_flowers102(const std::string& root, const std::string& split) {
  MatFile lf(root + "/imagelabels.mat");
  VarPtr lv = read_var(lf, "labels");
  const std::vector<int64_t> labels =
      whole_numbers(numbers(*lv, lf.path, "labels"), 1, 102, lf.path, "labels");
  MatFile sf(root + "/setid.mat");
  std::vector<int64_t> ids;
  for (const char* name : split == "train" ? std::vector<const char*>{"trnid", "valid"}
                                           : std::vector<const char*>{"tstid"}) {
    VarPtr v = read_var(sf, name);
    auto part = whole_numbers(numbers(*v, sf.path, name), 1, int64_t(labels.size()), sf.path, name);
    ids.insert(ids.end(), part.begin(), part.end());
  }
  SCION_CHECK(!ids.empty(), sf.path, ": the ", split, " split lists no images");
  std::vector<std::string> files;
  std::vector<int64_t> ys;
  for (int64_t id : ids) {
    char name[32];
    std::snprintf(name, sizeof name, "/jpg/image_%05lld.jpg", (long long)id);
    files.push_back(root + name);
    ys.push_back(labels[size_t(id - 1)] - 1);
  }
  SCION_CHECK(is_file(files[0]), files[0], ": not found (Flowers-102 images are in jpg/)");
  return std::make_shared<FileListDataset>(std::move(files), std::move(ys), 102);
}

// Oxford-IIIT Pets: images/<name>.jpg, annotations/{trainval,test}.txt lines "<name> <class 1..37>
// <species> <breed>". As the official code: train = trainval.txt, test = test.txt.
DatasetPtr open_pets(const std::string& root, const std::string& split) {
  const std::string list_path =
      root + "/annotations/" + (split == "train" ? "trainval.txt" : "test.txt");
  std::vector<std::string> files;
  std::vector<int64_t> ys;
  for (const auto& [n, line] : lines_of(list_path, "Oxford-IIIT Pets' split list")) {
    std::istringstream ss(line);
    std::string name;
    long long cls = 0;
    SCION_CHECK(ss >> name >> cls, list_path, ":", n, ": expected '<image> <class 1..37> ...'");
    SCION_CHECK(cls >= 1 && cls <= 37, list_path, ":", n, ": class ", cls, " is not in 1..37");
    check_relative(name, list_path, n);
    files.push_back(root + "/images/" + name + ".jpg");
    ys.push_back(cls - 1);
  }
  SCION_CHECK(is_file(files[0]), files[0], ": not found (Pets images are in images/)");
  return std::make_shared<FileListDataset>(std::move(files), std::move(ys), 37);
}

// Food-101: images/<class>/<id>.jpg, meta/classes.txt (the class order), meta/{train,test}.txt
// lines "<class>/<id>" (torchvision's Food101 split).
DatasetPtr open_food101(const std::string& root, const std::string& split) {
  const std::string dir = root_or_sub(root, "food-101");
  std::map<std::string, int64_t> index;
  const std::string classes_path = dir + "/meta/classes.txt";
  for (const auto& [n, name] : lines_of(classes_path, "Food-101's class list")) {
    check_relative(name, classes_path, n);
    SCION_CHECK(index.emplace(name, int64_t(index.size())).second, classes_path, ":", n,
                ": class '", name, "' listed twice");
  }
  const std::string list_path = dir + "/meta/" + split + ".txt";
  std::vector<std::string> files;
  std::vector<int64_t> ys;
  for (const auto& [n, entry] : lines_of(list_path, "Food-101's split list")) {
    check_relative(entry, list_path, n);
    const auto slash = entry.find('/');
    SCION_CHECK(slash != std::string::npos, list_path, ":", n, ": expected '<class>/<id>'");
    auto it = index.find(entry.substr(0, slash));
    SCION_CHECK(it != index.end(), list_path, ":", n, ": class '", entry.substr(0, slash),
                "' is not in meta/classes.txt");
    files.push_back(dir + "/images/" + entry + ".jpg");
    ys.push_back(it->second);
  }
  SCION_CHECK(is_file(files[0]), files[0], ": not found (Food-101 images are in images/)");
  return std::make_shared<FileListDataset>(std::move(files), std::move(ys), int64_t(index.size()));
}

// DTD: images/<class>/<name>.jpg, labels/{train,val,test}1.txt lines "<class>/<name>.jpg".
// Partition 1 (torchvision's default); train = train1 + val1, test = test1 (the official
// weight-selection code has no DTD; this follows its Flowers rule of training on train + val).
DatasetPtr open_dtd(const std::string& root, const std::string& split) {
  const std::string dir = root_or_sub(root, "dtd");
  const std::string images = dir + "/images";
  SCION_CHECK(is_dir(images), images, ": not found (DTD's images/<class>/ folders)");
  std::map<std::string, int64_t> index;
  for (const std::string& c : list_dir(images, true)) index.emplace(c, int64_t(index.size()));
  SCION_CHECK(!index.empty(), images, ": no class folders");
  std::vector<std::string> files;
  std::vector<int64_t> ys;
  for (const char* part : split == "train" ? std::vector<const char*>{"train1", "val1"}
                                           : std::vector<const char*>{"test1"}) {
    const std::string list_path = dir + "/labels/" + part + ".txt";
    for (const auto& [n, entry] : lines_of(list_path, "DTD's split list")) {
      check_relative(entry, list_path, n);
      const auto slash = entry.find('/');
      SCION_CHECK(slash != std::string::npos, list_path, ":", n,
                  ": expected '<class>/<image>.jpg'");
      auto it = index.find(entry.substr(0, slash));
      SCION_CHECK(it != index.end(), list_path, ":", n, ": class '", entry.substr(0, slash),
                  "' has no folder in images/");
      files.push_back(images + "/" + entry);
      ys.push_back(it->second);
    }
  }
  return std::make_shared<FileListDataset>(std::move(files), std::move(ys), int64_t(index.size()));
}

// EuroSAT (RGB): <class>/*.jpg in the root (or in its 2750/ or EuroSAT_RGB/ folder). There is no
// official split: per class, the sorted file names are shuffled with a fixed seed (Philox, seed
// 0) and the first 80% train, the rest test, so every run and machine gets the same split.
DatasetPtr open_eurosat(const std::string& root, const std::string& split) {
  std::string dir = root;
  for (const char* sub : {"2750", "EuroSAT_RGB", "EuroSAT"})
    if (is_dir(root + "/" + sub)) dir = root + "/" + sub;
  const std::vector<std::string> classes = list_dir(dir, true);
  SCION_CHECK(!classes.empty(), dir, ": no class folders (EuroSAT expects <class>/*.jpg)");
  std::vector<std::string> files;
  std::vector<int64_t> ys;
  for (size_t c = 0; c < classes.size(); ++c) {
    std::vector<std::string> names;
    for (const std::string& f : list_dir(dir + "/" + classes[c], false))
      if (image_extension(f)) names.push_back(f);
    SCION_CHECK(!names.empty(), dir, "/", classes[c], ": class folder has no .jpg/.png images");
    Generator gen(0, 0xE0);  // one fixed stream per class folder, independent of the config seed
    gen.set_offset(uint64_t(c) << 32);
    for (size_t j = names.size() - 1; j > 0; --j)
      std::swap(names[j], names[size_t(gen.next_uniform() * double(j + 1))]);
    const size_t cut = (names.size() * 4 + 4) / 5;  // ceil(80%)
    const size_t from = split == "train" ? 0 : cut, to = split == "train" ? cut : names.size();
    for (size_t j = from; j < to; ++j) {
      files.push_back(dir + "/" + classes[c] + "/" + names[j]);
      ys.push_back(int64_t(c));
    }
  }
  return std::make_shared<FileListDataset>(std::move(files), std::move(ys),
                                           int64_t(classes.size()));
}

}  // namespace

const std::vector<std::string>& paper_dataset_names() {
  static const std::vector<std::string> names{"stl10",   "svhn", "flowers102", "pets",
                                              "food101", "dtd",  "eurosat"};
  return names;
}

DatasetPtr open_paper_dataset(const std::string& kind, const std::string& root,
                              const std::string& split) {
  // Each has a train and a test set; "val" means the test set (as for CIFAR).
  const std::string s = split == "val" ? "test" : split;
  if (kind == "stl10") return open_stl10(root, s);
  if (kind == "svhn") return open_svhn(root, s);
  if (kind == "flowers102") return open_flowers102(root, s);
  if (kind == "pets") return open_pets(root, s);
  if (kind == "food101") return open_food101(root, s);
  if (kind == "dtd") return open_dtd(root, s);
  if (kind == "eurosat") return open_eurosat(root, s);
  throw InputError("data.dataset: '" + kind + "' is not a paper data set");
}

}  // namespace scion::data
