// Thread-local autocast state and the two casts ops apply at their entry.
#include "core/autocast.h"

namespace scion {

namespace {
thread_local bool g_autocast = false;
}

bool autocast_enabled() {
  return g_autocast;
}
AutocastGuard::AutocastGuard(bool enabled) : prev_(g_autocast) {
  g_autocast = enabled;
}
AutocastGuard::~AutocastGuard() {
  g_autocast = prev_;
}

Tensor autocast_low(const Tensor& t) {
  if (!g_autocast || !t.defined() || t.dtype() != DType::f32) return t;
  return t.to(DType::bf16);
}

Tensor autocast_f32(const Tensor& t) {
  if (!g_autocast || !t.defined() || t.dtype() != DType::bf16) return t;
  return t.to(DType::f32);
}

}  // namespace scion
