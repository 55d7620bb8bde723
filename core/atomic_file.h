// Crash-safe file writes: the content goes to "<path>.tmp.<pid>" in the same folder, which is
// flushed, fsync'ed and renamed over `path`. A crash leaves either the old file or the new one,
// never a half-written one; an existing file survives a failed write.
#pragma once

#include <cstdio>
#include <functional>
#include <string>

namespace scion {

// `write` puts the content into the open temporary file and returns false on a short write.
// Throws InputError when the file cannot be created, Error when writing or renaming fails.
void write_file_atomic(const std::string& path, const std::function<bool(std::FILE*)>& write);

}  // namespace scion
