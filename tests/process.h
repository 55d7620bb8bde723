// Tests that run scion's programs as a user does: a child process with stdout and stderr in a
// log file, its exit status as a shell reports it, and polling its log for a line.
#pragma once

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

// Starts the executable at `path` with `args`, output to `log` (replaced).
inline pid_t spawn_executable(const std::string& path, const std::vector<std::string>& args,
                              const std::string& log) {
  std::remove(log.c_str());  // a stale log from an earlier run must not be mistaken for this one's
  std::fflush(nullptr);      // or the child would write the parent's buffered output again
  pid_t pid = fork();
  if (pid == 0) {
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

// Starts build/bin/<program> with `args`, output to `log` (replaced).
inline pid_t spawn_program(const std::string& program, const std::vector<std::string>& args,
                           const std::string& log) {
  return spawn_executable(std::string(SCION_BINARY_DIR) + "/" + program, args, log);
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
