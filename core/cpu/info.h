// The CPU side of `scion info`: the path each kernel family takes on this CPU under the caps.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace scion::cpu {

// (family, path) rows: GEMM, convolution, depthwise convolution, attention, layer norm, softmax,
// gelu and elementwise, optimizer; oneDNN's rows name the implementation it picks for a
// representative shape (created here, not assumed).
std::vector<std::pair<std::string, std::string>> kernel_paths();

}  // namespace scion::cpu
