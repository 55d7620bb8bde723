// The other data sets of the weight-selection paper's main table, each read in the layout its
// official download produces (data/download.sh NAME fetches it):
//   stl10       stl10_binary/{train,test}_{X,y}.bin (96 x 96 images, 10 classes)
//   svhn        {train,test}_32x32.mat, MATLAB v5 read with libmatio (10 digits; label 10 is 0)
//   flowers102  jpg/ + imagelabels.mat + setid.mat; train = trnid + valid, test = tstid (the
//               official weight-selection code's split)
//   pets        images/ + annotations/{trainval,test}.txt (the official code's split)
//   food101     images/ + meta/{classes,train,test}.txt
//   dtd         images/ + labels/{train1,val1,test1}.txt: partition 1, train = train1 + val1
//   eurosat     <class>/*.jpg (RGB release); a fixed seeded 80/20 split per class
// Each has the splits train and test; "val" means test, as for CIFAR. Every problem is an
// InputError naming the file (and line or variable) and what was expected.
#pragma once

#include <string>
#include <vector>

#include "data/dataset.h"

namespace scion::data {

const std::vector<std::string>& paper_dataset_names();
DatasetPtr open_paper_dataset(const std::string& kind, const std::string& root,
                              const std::string& split);

}  // namespace scion::data
