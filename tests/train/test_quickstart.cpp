// The quickstart (`make demo`) as a user meets it, at a tiny size: Ctrl-C (SIGINT) in stage 1 or
// stage 2 stops the demo after saving, with status 130 and a line saying how to go on; the next
// stage never starts; running the same command again continues and prints exactly the table of an
// uninterrupted run.
#include <signal.h>

#include "tests/data/support_data.h"
#include "tests/process.h"
#include "tests/support.h"

using namespace scion;

namespace {

const std::string kFashion = "/usr/share/datasets/fashion-mnist";

// A fixed thread count: with the default the count follows the machine's load, and the reruns'
// tables must match the uninterrupted one digit for digit. The teacher's 256 images (2 steps an
// epoch) keep its stage, the slowest, about 4 s long in a release build (ample for an interruption
// inside it) and the test's four runs short under the sanitizers (with 1,024 teacher images and
// 500 validation images they took 644 s there, the longest test of `make sanitize`).
std::vector<std::string> args(const std::string& out) {
  return {"--threads",
          "2",
          "--data",
          kFashion,
          "--out",
          out,
          "--teacher-epochs",
          "2",
          "--teacher-subset",
          "256",
          "--student-epochs",
          "2",
          "--subset",
          "512",
          "--val-subset",
          "200"};
}

// The result lines: the per-epoch table and the teacher's line.
std::string table(const std::string& log) {
  std::string text = test::read_text(log), out;
  size_t at = 0;
  while (at < text.size()) {
    size_t end = text.find('\n', at);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(at, end - at);
    if (line.rfind("| ", 0) == 0 || line.rfind("(teacher:", 0) == 0) out += line + "\n";
    at = end + 1;
  }
  return out;
}

// Waits until stage `stage` has started training (its "training ..." line, printed once the
// signal handler is in place), so the interruption lands inside that stage's run.
bool wait_for_stage_training(const std::string& log, int stage, double seconds) {
  const std::string marker = "== " + std::to_string(stage) + "/3";
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    std::string text = test::read_text(log);
    size_t at = text.find(marker);
    if (at != std::string::npos && text.find("\ntraining ", at) != std::string::npos) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
}

// Runs the quickstart uninterrupted into dir/plain and returns its table, which must have the
// teacher's line and both epochs' rows.
std::string uninterrupted_table(const std::string& dir) {
  REQUIRE(test::wait_status(
              test::spawn_program("quickstart", args(dir + "/plain"), dir + "/plain.log")) == 0);
  const std::string result = table(dir + "/plain.log");
  INFO(test::read_text(dir + "/plain.log"));
  REQUIRE(result.find("| 1 |") != std::string::npos);
  REQUIRE(result.find("| 2 |") != std::string::npos);
  REQUIRE(result.find("(teacher:") != std::string::npos);
  // The precision is stated once, by the demo, not again by each stage's run.
  const std::string text = test::read_text(dir + "/plain.log");
  CHECK(text.find("quickstart: precision ") != std::string::npos);
  CHECK(text.find("train: precision ") == std::string::npos);
  return result;
}

}  // namespace

// One uninterrupted run: what the AVX2- and plain-capped suites run (CMakeLists.txt), where the
// interruptions below would add two more runs of the slowest kernels for ISA-independent logic.
// Tagged [capped]: only those suites run it (the test below starts with the same run).
TEST_CASE("quickstart: a tiny run trains the teacher and both students and prints its table",
          "[train][runs][quickstart][capped]") {
  SCION_REQUIRE_DATA(kFashion);
  uninterrupted_table(test::temp_dir());
}

// One chain of runs: interrupted in stage 1, the rerun continues and is interrupted in stage 2, and
// the third run finishes with the uninterrupted table; so both resumes, the teacher's (its line)
// and a student's (the rows), are checked by the one table. (Two separate chains, one per stage,
// ran one more whole run: 262 s of the sanitizer build's longest test.)
TEST_CASE(
    "quickstart: interrupted in stage 1, then 2, the reruns continue to the uninterrupted table",
    "[train][runs][quickstart]") {
  SCION_REQUIRE_DATA(kFashion);
  const std::string dir = test::temp_dir(), out = dir + "/chain";
  const std::string expected = uninterrupted_table(dir);

  for (int stage : {1, 2}) {
    const std::string log = out + "-interrupted-" + std::to_string(stage) + ".log";
    pid_t pid = test::spawn_program("quickstart", args(out), log);
    REQUIRE(wait_for_stage_training(log, stage, 300));
    kill(pid, SIGINT);
    CHECK(test::wait_status(pid) == 128 + SIGINT);
    std::string text = test::read_text(log);
    INFO("interrupted run's output:\n" << text);
    CHECK(text.find("interrupted during stage " + std::to_string(stage) + "/3") !=
          std::string::npos);
    CHECK(text.find("again to continue") != std::string::npos);
    CHECK(text.find("== " + std::to_string(stage + 1) + "/3") == std::string::npos);
    CHECK(table(log).empty());
    // The run interrupted in stage 2 is the rerun of the one interrupted in stage 1.
    if (stage == 2) {
      CHECK(text.find("continuing the interrupted run") != std::string::npos);
      CHECK(text.find("done earlier") == std::string::npos);  // stage 1 was unfinished
    }
  }
  const std::string rerun = out + "-rerun.log";
  REQUIRE(test::wait_status(test::spawn_program("quickstart", args(out), rerun)) == 0);
  std::string again = test::read_text(rerun);
  INFO("rerun's output:\n" << again);
  CHECK(again.find("continuing the interrupted run") != std::string::npos);
  CHECK(again.find("done earlier") != std::string::npos);
  CHECK(table(rerun) == expected);
}
