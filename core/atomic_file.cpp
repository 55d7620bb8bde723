// Temporary file + fsync + rename (see atomic_file.h).
#include "core/atomic_file.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/error.h"

namespace scion {

void write_file_atomic(const std::string& path, const std::function<bool(std::FILE*)>& write) {
  std::string tmp = path + ".tmp." + std::to_string(getpid());
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) throw InputError(path + ": cannot write (" + tmp + "): " + std::strerror(errno));
  bool ok = write(f);
  ok &= std::fflush(f) == 0;
  ok &= fsync(fileno(f)) == 0;
  ok &= std::fclose(f) == 0;
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    std::remove(tmp.c_str());
    throw Error(path + ": writing failed: " + std::strerror(err));
  }
}

}  // namespace scion
