// Catch2 entry point for scion's test executable. A capped rerun of part of the suite
// (CMakeLists.txt's capped groups set SCION_CAPPED_RERUN) on a CPU whose kernels the cap leaves as
// they are, scion's and oneDNN's (an AVX2 cap on an AVX2-only CPU), would run the uncapped suite's
// kernels again: it says so in one line and exits 77, which ctest counts as skipped.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>

#include "core/cpu/isa.h"
#include "core/error.h"
#include "tests/temp_dirs.h"

int main(int argc, char** argv) {
  using namespace scion::cpu;
  try {
    if (std::getenv("SCION_CAPPED_RERUN") && !isa_cap_changes_kernels()) {
      std::printf(
          "SKIPPED: SCION_MAX_ISA=%s changes no kernel on this CPU (%s, level %s): the "
          "uncapped suite ran these\n",
          isa_name(isa_cap()), cpu_model().c_str(), isa_name(cpu_isa()));
      return 77;
    }
  } catch (const scion::Error&) {  // a bad SCION_MAX_ISA: the [isa] tests report it
  }
  return scion::test::TempDirs::process().finish(Catch::Session().run(argc, argv));
}
