// Entry point of the multi-process tests: every rank runs the Catch2 session over one MPI
// communicator; the exit status is the worst rank's, so a failure on any rank fails the job.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <memory>
#include <string>

#include "tests/dist/dist_test.h"
#include "tests/temp_dirs.h"

namespace {
std::unique_ptr<scion::train::dist::Communicator> g_world;
}

scion::train::dist::Communicator& scion::test::world() {
  return *g_world;
}

int main(int argc, char** argv) {
  g_world = scion::train::dist::connect(/*timeout_seconds=*/120);  // a stuck case ends the job
  const int status = Catch::Session().run(argc, argv);
  int worst = 0;
  for (const std::string& s : g_world->allgather(std::to_string(status), "test results"))
    worst = std::max(worst, std::stoi(s));
  g_world.reset();
  return scion::test::TempDirs::process().finish(worst);
}
