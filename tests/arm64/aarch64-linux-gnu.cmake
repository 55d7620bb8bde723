# CMake toolchain file: scion cross-built for arm64 Linux (aarch64) with Debian's
# g++-aarch64-linux-gnu, against the arm64 sysroot of tests/arm64/sysroot.sh, and run under
# qemu-aarch64-static. `make test-arm64` uses it; by hand:
#   tests/arm64/sysroot.sh build-arm64/sysroot
#   cmake -S . -B build-arm64 -DCMAKE_TOOLCHAIN_FILE=tests/arm64/aarch64-linux-gnu.cmake
# SCION_ARM64_SYSROOT overrides the sysroot (default: <build dir>/sysroot).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)

if(NOT SCION_ARM64_SYSROOT)
  set(SCION_ARM64_SYSROOT "${CMAKE_BINARY_DIR}/sysroot")
endif()
set(SCION_ARM64_SYSROOT "${SCION_ARM64_SYSROOT}" CACHE PATH "arm64 sysroot (tests/arm64/sysroot.sh)")
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES SCION_ARM64_SYSROOT)
if(NOT EXISTS "${SCION_ARM64_SYSROOT}/.complete")
  message(FATAL_ERROR "no arm64 sysroot in ${SCION_ARM64_SYSROOT}: run tests/arm64/sysroot.sh "
                      "${SCION_ARM64_SYSROOT} first (make test-arm64 does)")
endif()

# Libraries and headers from the sysroot only; programs (git, python3) from the host. The C library
# and libstdc++ come from the cross compiler's own /usr/aarch64-linux-gnu (the same glibc 2.36 and
# GCC 12 as the sysroot's, which the binaries use at run time).
set(CMAKE_FIND_ROOT_PATH "${SCION_ARM64_SYSROOT}")
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)
set(_libdirs "${SCION_ARM64_SYSROOT}/usr/lib/aarch64-linux-gnu;${SCION_ARM64_SYSROOT}/lib/aarch64-linux-gnu")
string(REPLACE ";" ":" _rpath_link "${_libdirs}")
set(CMAKE_EXE_LINKER_FLAGS_INIT "-Wl,-rpath-link,${_rpath_link}")
set(CMAKE_SHARED_LINKER_FLAGS_INIT "-Wl,-rpath-link,${_rpath_link}")

# ctest (and Catch2's test discovery) run each test program under the emulator; scion's tests that
# start scion's own programs prefix them with it too (tests/process.h; a path with spaces would not
# survive that). The emulated CPU is a Neoverse-N1 (AWS Graviton2, Ampere Altra): Armv8.2 with NEON,
# fp16 and dot products, no SVE, the feature set of most arm64 machines including Apple's (qemu's
# default "max" CPU has SVE, which would send oneDNN down its SVE paths instead).
find_program(SCION_QEMU_AARCH64 qemu-aarch64-static REQUIRED)  # an absolute path, for execv
set(CMAKE_CROSSCOMPILING_EMULATOR
    "${SCION_QEMU_AARCH64};-cpu;neoverse-n1;-L;${SCION_ARM64_SYSROOT}")

# Open MPI and CUDA are not in the arm64 sysroot (a native arm64 build finds them as on x86-64).
set(CMAKE_DISABLE_FIND_PACKAGE_MPI ON)
set(SCION_CUDA OFF CACHE BOOL "" FORCE)

# No run paths: under `qemu-aarch64-static -L SYSROOT` the sysroot's /usr/lib/aarch64-linux-gnu is
# the loader's default directory, and a path into this build machine would mean nothing elsewhere.
set(CMAKE_SKIP_RPATH ON)
