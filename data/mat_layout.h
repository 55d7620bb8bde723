// A structural check of a MATLAB v5 .mat file before libmatio reads it. libmatio allocates what a
// file's headers declare (a variable name's length, a struct's field names, a compressed
// variable's size) before reading it, so a damaged or hostile header asks for gigabytes (found by
// the `mat` fuzz target, tests/fuzz). This walks the data-element tags only, never the data: every
// element must fit in the file, every subelement in its element, a compressed element's inflated
// size within zlib's maximum ratio (1032:1) of its compressed size. It is not a MAT reader;
// libmatio reads the file afterwards.
#pragma once

#include <cstdint>
#include <string>

namespace scion::data {

// Throws InputError naming `path` and the offending element when the layout is broken, or when
// the file is not v5 (v4 and v7.3/HDF5 are not read). Returns the file's size in bytes.
uint64_t check_mat5_layout(const std::string& path);

}  // namespace scion::data
