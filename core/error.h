// Errors and checks. Two kinds of failure reach the programs: InputError (bad input: a file, a
// shape, a config key, a flag; exit status 2) and Error (a runtime failure; exit status 1).
// Every message names what was checked, what was expected and what was found.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace scion {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class InputError : public Error {
 public:
  using Error::Error;
};

namespace detail {
template <class... Args>
std::string str_cat(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  return out.str();
}
}  // namespace detail

}  // namespace scion

// An internal invariant: failing it is a bug in scion, reported with file:line.
#define SCION_ASSERT(cond, ...)                                                               \
  do {                                                                                        \
    if (!(cond))                                                                              \
      throw ::scion::Error(                                                                   \
          ::scion::detail::str_cat(__FILE__, ":", __LINE__, ": ", #cond, ": ", __VA_ARGS__)); \
  } while (0)

// A caller's argument or a file's content: failing it is the user's input error.
#define SCION_CHECK(cond, ...)                                                     \
  do {                                                                             \
    if (!(cond)) throw ::scion::InputError(::scion::detail::str_cat(__VA_ARGS__)); \
  } while (0)
