// The tests' scratch folders (tests/temp_dirs.h): gone with what they hold after a passing run,
// kept after a failing one.
#include <filesystem>
#include <fstream>

#include "tests/support.h"

using scion::test::TempDirs;
namespace fs = std::filesystem;

TEST_CASE("test scratch folders: removed after a passing run, kept after a failing one",
          "[files]") {
  TempDirs dirs;
  const std::string a = dirs.make(), b = dirs.make();
  REQUIRE(!a.empty());
  REQUIRE(a != b);
  fs::create_directories(a + "/run/checkpoints");
  std::ofstream(a + "/run/checkpoints/last.safetensors") << "bytes";
  CHECK(dirs.finish(0) == 0);
  CHECK(!fs::exists(a));
  CHECK(!fs::exists(b));

  const std::string c = dirs.make();
  std::ofstream(c + "/train.log") << "what failed";
  CHECK(dirs.finish(1) == 1);
  CHECK(fs::exists(c + "/train.log"));
  CHECK(dirs.finish(0) == 0);  // no longer recorded: a later finish leaves it alone
  CHECK(fs::exists(c));
  fs::remove_all(c);
}
