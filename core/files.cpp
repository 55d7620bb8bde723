// Safe writes, regular-file reads, output checks and folder locks (see files.h).
#include "core/files.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "core/error.h"

namespace scion {

namespace {

std::string kind_of(mode_t m) {
  if (S_ISREG(m)) return "";
  if (S_ISDIR(m)) return "a folder";
  if (S_ISFIFO(m)) return "a FIFO";
  if (S_ISCHR(m)) return "a character device";
  if (S_ISBLK(m)) return "a block device";
  if (S_ISSOCK(m)) return "a socket";
  return "not a regular file";
}

// Where a write to `path` lands: a symbolic link's target (resolved), else `path` itself.
std::string write_target(const std::string& path) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0 || !S_ISLNK(st.st_mode)) return path;
  char resolved[PATH_MAX];
  if (!realpath(path.c_str(), resolved))
    throw InputError(path + ": a symbolic link to a missing file; refusing to write through it");
  return resolved;
}

}  // namespace

bool path_exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

std::string special_file_kind(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 ? kind_of(st.st_mode) : "";
}

void write_file_atomic(const std::string& path, const std::function<bool(std::FILE*)>& write) {
  const std::string target = write_target(path);
  const std::string kind = special_file_kind(target);
  if (!kind.empty())
    throw InputError(path + ": exists and is " + kind +
                     ", not a regular file; refusing to replace it (name a file)");
  const std::string tmp = target + ".tmp." + std::to_string(getpid());
  std::remove(tmp.c_str());  // this pid's leftover from an earlier process: never written through
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  std::FILE* f = fd >= 0 ? fdopen(fd, "wb") : nullptr;
  if (!f) {
    int err = errno;
    if (fd >= 0) ::close(fd);
    throw InputError(path + ": cannot write (" + tmp + "): " + std::strerror(err));
  }
  bool ok = write(f);
  ok &= std::fflush(f) == 0;
  ok &= fsync(fileno(f)) == 0;
  ok &= std::fclose(f) == 0;
  if (!ok || std::rename(tmp.c_str(), target.c_str()) != 0) {
    int err = errno;
    std::remove(tmp.c_str());
    throw Error(path + ": writing failed: " + std::strerror(err));
  }
}

std::string read_text_file(const std::string& path, const std::string& expected) {
  int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0)
    throw InputError(path + ": cannot open (" + std::strerror(errno) + "); expected " + expected);
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    const std::string kind = kind_of(st.st_mode);
    ::close(fd);
    throw InputError(path + ": is " + kind + "; expected " + expected);
  }
  std::string text;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      throw InputError(path + ": cannot read (" + std::strerror(err) + ")");
    }
    if (n == 0) break;
    text.append(buf, size_t(n));
  }
  ::close(fd);
  return text;
}

void make_dirs(const std::string& path, const std::string& what) {
  std::string cur;
  for (size_t i = 0; i <= path.size(); ++i) {
    if ((i == path.size() || path[i] == '/') && !cur.empty()) {
      struct stat st;
      if (stat(cur.c_str(), &st) == 0) {
        if (!S_ISDIR(st.st_mode))
          throw InputError(what + " " + path + ": " + cur + " exists and is not a folder");
      } else if (mkdir(cur.c_str(), 0755) != 0 && errno != EEXIST) {
        throw InputError(what + " " + path + ": cannot create " + cur + " (" +
                         std::strerror(errno) + ")");
      }
    }
    if (i < path.size()) cur.push_back(path[i]);
  }
}

void check_output_file(const std::string& flag, const std::string& path,
                       const std::vector<std::pair<std::string, std::string>>& inputs) {
  const std::string kind = special_file_kind(path);
  if (kind == "a folder")
    throw InputError(flag + " " + path + ": is a folder; give a file name such as " + path +
                     "/weights.safetensors");
  if (!kind.empty())
    throw InputError(flag + " " + path + ": exists and is " + kind +
                     ", not a regular file; refusing to replace it");
  struct stat out;
  if (stat(path.c_str(), &out) != 0) return;  // a new file
  for (const auto& [in_flag, in_path] : inputs) {
    struct stat in;
    if (stat(in_path.c_str(), &in) == 0 && in.st_dev == out.st_dev && in.st_ino == out.st_ino)
      throw InputError(flag + " " + path + ": is the same file as " + in_flag + " " + in_path +
                       "; writing it would replace the input (give another " + flag + ")");
  }
}

FolderLock& FolderLock::operator=(FolderLock&& o) noexcept {
  if (this != &o) FolderLock released(std::exchange(fd_, std::exchange(o.fd_, -1)));
  return *this;
}

FolderLock::~FolderLock() {
  if (fd_ < 0) return;
  // The note goes first, so that the next holder's contenders never read it as theirs.
  if (ftruncate(fd_, 0) != 0) {
    // Only a hint: contenders check the note's pid against the kernel's holder anyway.
  }
  ::close(fd_);  // closing the last descriptor releases the flock
}

namespace {

// The pid holding a flock on fd's file, from the kernel's table (/proc/locks: "1: FLOCK ADVISORY
// WRITE <pid> <major>:<minor>:<inode> 0 EOF", device numbers in hex); 0 when it cannot be told.
pid_t flock_holder(int fd) {
  struct stat st;
  if (fstat(fd, &st) != 0) return 0;
  std::ifstream locks("/proc/locks");
  std::string line;
  while (std::getline(locks, line)) {
    std::istringstream in(line);
    std::string id, kind, mode, access, dev;
    long pid = 0;
    if (!(in >> id >> kind) || kind != "FLOCK" || !(in >> mode >> access >> pid >> dev)) continue;
    unsigned maj = 0, min = 0;
    unsigned long long ino = 0;
    if (std::sscanf(dev.c_str(), "%x:%x:%llu", &maj, &min, &ino) == 3 && maj == major(st.st_dev) &&
        min == minor(st.st_dev) && ino == st.st_ino)
      return pid_t(pid);
  }
  return 0;
}

}  // namespace

FolderLock FolderLock::acquire(const std::string& dir, const std::string& what) {
  const std::string path = dir + "/.lock";
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0)
    throw InputError(path + ": cannot create the lock file of the " + what + " (" +
                     std::strerror(errno) + ")");
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    if (err != EWOULDBLOCK) {
      ::close(fd);
      throw Error(path + ": cannot lock the " + what + " (" + std::strerror(err) + ")");
    }
    // The holder writes "<pid> <name>" right after locking: give it a moment. A note whose pid
    // is not the kernel's holder is an earlier holder's (one that was killed, or this note not
    // yet rewritten): wait for the new one, and name the kernel's pid if it never comes.
    std::string holder;
    pid_t kernel_pid = 0;
    for (int i = 0; i < 100; ++i) {
      char buf[256];
      ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
      holder = n > 0 ? std::string(buf, size_t(n)) : std::string();
      while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
      kernel_pid = flock_holder(fd);
      const bool current =
          !holder.empty() && (kernel_pid == 0 || std::atol(holder.c_str()) == long(kernel_pid));
      if (current) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ::close(fd);
    if (kernel_pid != 0 && std::atol(holder.c_str()) != long(kernel_pid))
      holder = std::to_string(kernel_pid);
    const size_t sp = holder.find(' ');
    const std::string who = holder.empty() ? "another process"
                            : sp == std::string::npos
                                ? "process " + holder
                                : holder.substr(sp + 1) + " (pid " + holder.substr(0, sp) + ")";
    throw InputError(dir + ": the " + what + " is in use by " + who +
                     "; two processes writing one folder would overwrite each other's files. "
                     "Wait for it to end, or give another folder.");
  }
  std::string comm = "scion";
  {
    char buf[64] = {0};
    int c = ::open("/proc/self/comm", O_RDONLY | O_CLOEXEC);
    if (c >= 0) {
      ssize_t n = ::read(c, buf, sizeof buf - 1);
      ::close(c);
      if (n > 0) comm.assign(buf, size_t(n));
      while (!comm.empty() && comm.back() == '\n') comm.pop_back();
    }
  }
  const std::string text = std::to_string(getpid()) + " " + comm + "\n";
  if (ftruncate(fd, 0) != 0 || pwrite(fd, text.data(), text.size(), 0) != ssize_t(text.size())) {
    // The lock holds without the note; a second process then names no pid.
  }
  return FolderLock(fd);
}

}  // namespace scion
