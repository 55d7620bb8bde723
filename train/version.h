// The source revision a build was made from: `git rev-parse HEAD` of the checkout, with "+dirty"
// when tracked files had uncommitted changes, or "unknown" outside a git checkout. Refreshed at
// every build (CMakeLists.txt generates its definition); `train --version` and `scion --version`
// print it, and experiments/reproduce.py records it beside every run it starts.
#pragma once

namespace scion {

const char* build_revision();

}  // namespace scion
