// One libFuzzer executable per target: built by `make fuzz` (clang, -fsanitize=fuzzer,address,
// undefined) with SCION_FUZZ_TARGET naming a function of tests/fuzz/targets.h.
#include "tests/fuzz/targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  scion::fuzz::SCION_FUZZ_TARGET(data, size);
  return 0;
}
