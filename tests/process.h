// Tests that run scion's programs as a user does: a child process with stdout and stderr in a
// log file, its exit status as a shell reports it, and polling its log for a line.
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

namespace scion::test {

inline std::string read_text(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// A run's metrics.jsonl, one JSON object per epoch.
inline std::vector<nlohmann::json> read_metrics(const std::string& run_dir) {
  std::vector<nlohmann::json> out;
  std::ifstream in(run_dir + "/metrics.jsonl");
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  return out;
}

// The emulator a cross-built test binary runs scion's programs under ("qemu-aarch64-static -L
// SYSROOT" in `make test-arm64`, from CMAKE_CROSSCOMPILING_EMULATOR), as words; none natively.
inline std::vector<std::string> emulator_words() {
  std::vector<std::string> words;
  std::string w;
  for (const char* c = SCION_TEST_EMULATOR;; ++c) {
    if (*c == ' ' || *c == 0) {
      if (!w.empty()) words.push_back(w);
      w.clear();
      if (*c == 0) return words;
    } else {
      w += *c;
    }
  }
}

// build/bin/<program> as the start of a shell command (after the emulator when there is one).
inline std::string program_command(const std::string& program) {
  std::string cmd;
  for (const std::string& w : emulator_words()) cmd += w + " ";
  return cmd + SCION_BINARY_DIR + "/" + program;
}

// Starts the executable at `path` with `args`, output to `log` (replaced).
inline pid_t spawn_executable(const std::string& path, const std::vector<std::string>& args,
                              const std::string& log) {
  std::remove(log.c_str());  // a stale log from an earlier run must not be mistaken for this one's
  std::fflush(nullptr);      // or the child would write the parent's buffered output again
  pid_t pid = fork();
  if (pid == 0) {
    // exec keeps the signal mask: a test process that blocked the stop signals
    // (train/signals.h) must not hand that on to the program.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    FILE* f = std::freopen(log.c_str(), "w", stdout);
    (void)f;
    dup2(fileno(stdout), 2);
    std::vector<char*> argv;
    argv.push_back(const_cast<char*>(path.c_str()));
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(path.c_str(), argv.data());
    _exit(127);
  }
  return pid;
}

// Starts build/bin/<program> with `args`, output to `log` (replaced), under the emulator when
// there is one (its signals reach the program: qemu-user forwards them).
inline pid_t spawn_program(const std::string& program, const std::vector<std::string>& args,
                           const std::string& log) {
  std::vector<std::string> words = emulator_words();
  std::string path = std::string(SCION_BINARY_DIR) + "/" + program;
  if (words.empty()) return spawn_executable(path, args, log);
  std::vector<std::string> rest(words.begin() + 1, words.end());
  rest.push_back(path);
  rest.insert(rest.end(), args.begin(), args.end());
  return spawn_executable(words[0], rest, log);
}

// The exit status, or 128 + the signal that ended the process.
inline int wait_status(pid_t pid) {
  int st = 0;
  waitpid(pid, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

// Waits until `log` contains `text` (true) or `seconds` pass (false).
inline bool wait_for_text(const std::string& log, const std::string& text, double seconds) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    if (read_text(log).find(text) != std::string::npos) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
}

}  // namespace scion::test
