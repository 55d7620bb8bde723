// The scratch folders a test process makes (tests/support.h's temp_dir), removed when its run
// passes and kept, each named, when it fails, so that `make test` leaves nothing behind in /tmp
// but what a failure needs looked at.
#pragma once

#include <mutex>
#include <string>
#include <vector>

namespace scion::test {

class TempDirs {
 public:
  // The test process's own, which tests/main.cpp finishes.
  static TempDirs& process();
  // A fresh folder under /tmp (mkdtemp), recorded; empty when none could be made.
  std::string make();
  // Status 0 removes every recorded folder with what it holds; any other status keeps them and
  // prints their paths. Either way they are no longer recorded. Returns status.
  int finish(int status);

 private:
  std::mutex mu_;
  std::vector<std::string> dirs_;
};

}  // namespace scion::test
