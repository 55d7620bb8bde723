// The communicator of the ranks running tests/dist/ (one per process, made by dist_main.cpp).
#pragma once

#include "train/dist.h"

namespace scion::test {
train::dist::Communicator& world();
}  // namespace scion::test
