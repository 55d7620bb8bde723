// Paths of the real data sets beside the repository (../shared/data) for the data tests.
#pragma once

#include <sys/stat.h>

#include <string>

namespace scion::test {

inline std::string shared_data(const std::string& rel) {
  return std::string(SCION_SOURCE_DIR) + "/../shared/data/" + rel;
}

inline bool exists(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0;
}

}  // namespace scion::test
