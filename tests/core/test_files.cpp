// core/files.h: atomic writes that never replace a device, FIFO or folder and write through a
// symbolic link; reads that refuse what is not a regular file (a FIFO without blocking); outputs
// that are an input; folder locks held by one open file at a time, naming the holder's pid.
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>

#include "core/error.h"
#include "core/files.h"
#include "tests/process.h"
#include "tests/support.h"

using namespace scion;

namespace {

void write(const std::string& path, const std::string& text) {
  write_file_atomic(path, [&](std::FILE* f) {
    return std::fwrite(text.data(), 1, text.size(), f) == text.size();
  });
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("write_file_atomic refuses a FIFO, a folder and a device, and writes through a link",
          "[files]") {
  const std::string dir = test::temp_dir();
  const std::string fifo = dir + "/fifo", file = dir + "/file", link = dir + "/link";
  REQUIRE(mkfifo(fifo.c_str(), 0644) == 0);
  std::string err = error_of([&] { write(fifo, "x"); });
  CHECK(err.find(fifo + ": exists and is a FIFO") != std::string::npos);
  struct stat st;
  REQUIRE(stat(fifo.c_str(), &st) == 0);
  CHECK(S_ISFIFO(st.st_mode));  // still the FIFO, not replaced by a regular file
  CHECK(error_of([&] { write(dir, "x"); }).find("is a folder") != std::string::npos);
  CHECK(error_of([&] { write("/dev/full", "x"); }).find("a character device") != std::string::npos);
  REQUIRE(stat("/dev/full", &st) == 0);
  CHECK(S_ISCHR(st.st_mode));
  write(file, "old");
  REQUIRE(symlink("file", link.c_str()) == 0);
  write(link, "new");
  REQUIRE(lstat(link.c_str(), &st) == 0);
  CHECK(S_ISLNK(st.st_mode));  // the link stays; its target holds the new content
  CHECK(test::read_text(file) == "new");
  REQUIRE(symlink("missing", (dir + "/dangling").c_str()) == 0);
  CHECK(error_of([&] { write(dir + "/dangling", "x"); }).find("a symbolic link to a missing") !=
        std::string::npos);
}

TEST_CASE("read_text_file refuses a folder and a FIFO at once, naming the path", "[files]") {
  const std::string dir = test::temp_dir();
  const std::string fifo = dir + "/fifo.yaml";
  REQUIRE(mkfifo(fifo.c_str(), 0644) == 0);
  CHECK(error_of([&] {
          read_text_file(fifo, "a YAML config file");
        }).find(fifo + ": is a FIFO; expected a YAML config file") != std::string::npos);
  CHECK(error_of([&] { read_text_file(dir, "a YAML config file"); }).find("is a folder") !=
        std::string::npos);
  CHECK(error_of([&] { read_text_file(dir + "/none", "x"); }).find("cannot open") !=
        std::string::npos);
  std::ofstream(dir + "/a.txt") << "hello";
  CHECK(read_text_file(dir + "/a.txt", "x") == "hello");
}

TEST_CASE("check_output_file: an output that is an input, a device or a FIFO is refused",
          "[files]") {
  const std::string dir = test::temp_dir();
  const std::string in = dir + "/in.safetensors", link = dir + "/alias.safetensors";
  std::ofstream(in) << "weights";
  REQUIRE(symlink(in.c_str(), link.c_str()) == 0);
  CHECK(error_of([&] {
          check_output_file("--out", in, {{"--teacher", in}});
        }).find("is the same file as --teacher") != std::string::npos);
  CHECK(error_of([&] {
          check_output_file("--out", in, {{"--from", link}});
        }).find("is the same file as --from " + link) != std::string::npos);
  CHECK(error_of([&] { check_output_file("--out", "/dev/full", {}); }).find("a character device") !=
        std::string::npos);
  CHECK(error_of([&] { check_output_file("--out", dir, {}); }).find("is a folder") !=
        std::string::npos);
  CHECK_NOTHROW(check_output_file("--out", dir + "/new.safetensors", {{"--teacher", in}}));
  CHECK_NOTHROW(check_output_file("--out", in, {{"--teacher", link + ".other"}}));
}

// A holder that has locked but not yet written its note, after an earlier holder killed before it
// could clear its own: the contender names the kernel's holder, not the stale note (a second
// `train` named the test process that had held the folder before, under ASan).
TEST_CASE("FolderLock: a stale note is not taken for the holder", "[files]") {
  const std::string dir = test::temp_dir(), lock = dir + "/.lock";
  std::ofstream(lock) << "1 ghost\n";
  int fd = open(lock.c_str(), O_RDWR);
  REQUIRE(fd >= 0);
  REQUIRE(flock(fd, LOCK_EX) == 0);
  const std::string err = error_of([&] { FolderLock::acquire(dir, "run folder"); });
  INFO(err);
  CHECK(err.find("ghost") == std::string::npos);
  CHECK(err.find("in use by process " + std::to_string(getpid()) + ";") != std::string::npos);
  close(fd);
}

TEST_CASE("FolderLock: a second holder is refused naming the first's pid, released on close",
          "[files]") {
  const std::string dir = test::temp_dir();
  {
    FolderLock first = FolderLock::acquire(dir, "run folder");
    CHECK(first.held());
    // flock belongs to the open file: a second open in this same process conflicts too.
    const std::string err = error_of([&] { FolderLock::acquire(dir, "run folder"); });
    CHECK(err.find(dir + ": the run folder is in use by") != std::string::npos);
    CHECK(err.find("(pid " + std::to_string(getpid()) + ")") != std::string::npos);
    // A child process (another holder, as a second `train` would be) is refused as well.
    pid_t pid = fork();
    if (pid == 0) {
      try {
        FolderLock::acquire(dir, "run folder");
      } catch (const InputError&) {
        _exit(2);
      }
      _exit(0);
    }
    CHECK(test::wait_status(pid) == 2);
  }
  CHECK_NOTHROW(FolderLock::acquire(dir, "run folder"));  // the first was released
  CHECK(test::read_text(dir + "/.lock").empty());         // with its note
  std::ofstream(dir + "/file") << "x";
  CHECK_THROWS_AS(make_dirs(dir + "/file/sub", "--out"), InputError);
}
