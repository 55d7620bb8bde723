// Datasets: indexable (image, label) collections, safe to read from several threads at once.
//   cifar10 / cifar100   official binary files (records of label byte(s) + 3072 CHW pixel bytes)
//   image_folder         root/<split>/<class>/*.{jpg,jpeg,png}, classes = sorted folder names
//   tiny_imagenet        wnids.txt order, train/<wnid>/images/, val/val_annotations.txt
//   fashion_mnist/mnist  IDX files, gzip or plain
// Splits are train, val and test; CIFAR and MNIST have no val split, so "val" means their test set
// (the convention of the papers this project reproduces). Every problem is an InputError naming the
// path and saying what was expected.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/image.h"

namespace scion::data {

struct Sample {
  Image image;                   // decoded pixels (in-memory datasets), or
  std::vector<uint8_t> encoded;  // file bytes to decode (image files)
  std::string name;              // file path or "cifar:123", for error messages
  int64_t label = 0;
};

class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual int64_t size() const = 0;
  virtual int64_t label(int64_t index) const = 0;
  virtual Sample get(int64_t index) const = 0;
  virtual int64_t num_classes() const = 0;
};

using DatasetPtr = std::shared_ptr<Dataset>;

// kind: cifar10 | cifar100 | image_folder | tiny_imagenet | fashion_mnist | mnist.
// A missing root is an error that says how to get the data set.
DatasetPtr open_dataset(const std::string& kind, const std::string& root, const std::string& split);

// A fixed, class-balanced subset of `count` samples (count / classes per class, the remainder
// spread over the first classes), chosen by `seed`; its order is the base dataset's order.
DatasetPtr balanced_subset(DatasetPtr base, int64_t count, uint64_t seed);

// The CIFAR-100 coarse (superclass) label of a sample of a cifar100 dataset.
int64_t cifar100_coarse_label(const Dataset& dataset, int64_t index);

}  // namespace scion::data
