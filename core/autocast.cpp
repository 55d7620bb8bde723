// Thread-local autocast state and the two casts ops apply at their entry.
#include "core/autocast.h"

#include <unordered_map>

#include "core/autograd.h"
#include "core/ops.h"

namespace scion {

namespace {
thread_local bool g_autocast = false;
// The live AutocastCaches' casts, innermost last, by the parameter's TensorImpl.
thread_local std::vector<std::unordered_map<const TensorImpl*, Tensor>> g_caches;
}  // namespace

AutocastCache::AutocastCache(const std::vector<Tensor>& params) {
  if (!g_autocast) return;
  std::vector<Tensor> f32;
  for (const Tensor& p : params)
    if (p.defined() && p.dtype() == DType::f32) f32.push_back(p);
  const std::vector<Tensor> low = to_all(f32, DType::bf16);
  std::unordered_map<const TensorImpl*, Tensor> casts;
  for (size_t i = 0; i < f32.size(); ++i) casts.emplace(f32[i].impl(), low[i]);
  g_caches.push_back(std::move(casts));
  active_ = true;
}

AutocastCache::~AutocastCache() {
  if (active_) g_caches.pop_back();
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
  for (auto c = g_caches.rbegin(); c != g_caches.rend(); ++c)
    if (auto it = c->find(t.impl()); it != c->end()) {
      // A cast made without grad mode carries no gradient: where one is needed now, cast anew.
      if (t.requires_grad() && grad_enabled() && !it->second.requires_grad()) break;
      return it->second;
    }
  return t.to(DType::bf16);
}

Tensor autocast_f32(const Tensor& t) {
  if (!g_autocast || !t.defined() || t.dtype() != DType::bf16) return t;
  return t.to(DType::f32);
}

}  // namespace scion
