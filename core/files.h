// Files that users name: crash-safe writes, reads that refuse what is not a regular file, outputs
// that never replace an input, and folders that one process at a time may write.
//
// Writes: the content goes to "<path>.tmp.<pid>" in the same folder, which is flushed, fsync'ed and
// renamed over `path`. A crash leaves either the old file or the new one, never a half-written one;
// an existing file survives a failed write. An existing output that is not a regular file (a
// device such as /dev/full, a FIFO, a folder) is refused, never replaced; a symbolic link is
// written through (its target is replaced, the link stays), as torch.save does.
#pragma once

#include <cstdio>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace scion {

// `write` puts the content into the open temporary file and returns false on a short write.
// Throws InputError when the file cannot be created or `path` is not a regular file, Error when
// writing or renaming fails.
void write_file_atomic(const std::string& path, const std::function<bool(std::FILE*)>& write);

// The whole content of a regular file. A folder, FIFO, device or missing file is an InputError
// naming `path` and saying that `expected` was expected (e.g. "a YAML config file"); a FIFO is
// never opened for a blocking read.
std::string read_text_file(const std::string& path, const std::string& expected);

// Whether anything (file, folder, device, ...) exists at `path`.
bool path_exists(const std::string& path);

// "a folder", "a FIFO", "a character device", ... for an existing non-regular path; "" for a
// regular file or a path that does not exist.
std::string special_file_kind(const std::string& path);

// Creates `path` and its missing parents (mkdir -p); an InputError names `what` and the part that
// cannot be created or exists as a file.
void make_dirs(const std::string& path, const std::string& what);

// An output path given by `flag` (e.g. "--out"): refused (InputError) when it exists and is not a
// regular file, or when it is the same file as one of `inputs` (flag, path); an existing regular
// file is replaced atomically by the write that follows.
void check_output_file(const std::string& flag, const std::string& path,
                       const std::vector<std::pair<std::string, std::string>>& inputs);

// Exclusive use of a folder by this process: flock() on DIR/.lock, held until destruction and
// released by the kernel however the process ends (no stale locks). The file holds the holder's
// pid and program name, which a second process names in its error.
class FolderLock {
 public:
  // Takes the lock without waiting. InputError naming the folder and the holder's pid when
  // another process holds it; `what` says what the folder is ("run folder", "output folder").
  static FolderLock acquire(const std::string& dir, const std::string& what);
  FolderLock() = default;
  FolderLock(FolderLock&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  FolderLock& operator=(FolderLock&& o) noexcept;
  FolderLock(const FolderLock&) = delete;
  FolderLock& operator=(const FolderLock&) = delete;
  ~FolderLock();
  bool held() const { return fd_ >= 0; }

 private:
  explicit FolderLock(int fd) : fd_(fd) {}
  int fd_ = -1;
};

}  // namespace scion
