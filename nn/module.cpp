// Module trees: registration, recursive naming, train/eval, state dicts and safetensors I/O.
#include "nn/module.h"

#include <set>
#include <sstream>
#include <unordered_map>

#include "core/autograd.h"

namespace scion::nn {

Tensor Module::forward(const Tensor&) {
  throw Error("this module has no single-input forward()");
}

namespace {
void check_name(const std::string& name) {
  SCION_ASSERT(!name.empty() && name.find('.') == std::string::npos, "invalid module member name '",
               name, "'");
}
}  // namespace

Tensor Module::register_parameter(const std::string& name, Tensor t) {
  check_name(name);
  t.requires_grad_(true);
  params_.emplace_back(name, t);
  return t;
}

Tensor Module::register_buffer(const std::string& name, Tensor t) {
  check_name(name);
  buffers_.emplace_back(name, t);
  return t;
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> m) {
  check_name(name);
  m->train(training_);
  children_.emplace_back(name, std::move(m));
}

void Module::collect(const std::string& prefix, bool params, NamedTensors& out) const {
  for (const auto& [name, t] : params ? params_ : buffers_) out.emplace_back(prefix + name, t);
  for (const auto& [name, child] : children_) child->collect(prefix + name + ".", params, out);
}

NamedTensors Module::named_parameters() const {
  NamedTensors out;
  collect("", true, out);
  return out;
}

NamedTensors Module::named_buffers() const {
  NamedTensors out;
  collect("", false, out);
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& [name, t] : named_parameters()) out.push_back(t);
  return out;
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (auto& [name, t] : named_parameters()) n += t.numel();
  return n;
}

Tensor Module::find(const std::string& dotted_name) const {
  for (auto& [name, t] : state_dict())
    if (name == dotted_name) return t;
  throw InputError("model has no parameter or buffer named '" + dotted_name + "'");
}

void Module::to(Device device) {
  NoGradGuard ng;
  for (auto& [name, t] : state_dict()) {
    Tensor moved = t.detach().to(device);
    Tensor(t).set_data(moved);
  }
}

Device Module::device() const {
  NamedTensors s = state_dict();
  return s.empty() ? cpu_device() : s.front().second.device();
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [name, child] : children_) child->train(on);
}

NamedTensors Module::state_dict() const {
  NamedTensors out = named_parameters();
  for (auto& nb : named_buffers()) out.push_back(nb);
  return out;
}

Tensor as_form(const Tensor& t, const Shape& shape) {
  const Shape& s = t.shape();
  if (s.size() == 4 && shape.size() == 2 && s[2] == 1 && s[3] == 1) return t.reshape({s[0], s[1]});
  if (s.size() == 2 && shape.size() == 4 && shape[2] == 1 && shape[3] == 1)
    return t.reshape({s[0], s[1], 1, 1});
  return t;
}

void Module::load_state_dict(const NamedTensors& tensors, bool strict, const std::string& source) {
  NamedTensors own = state_dict();
  std::unordered_map<std::string, Tensor> given;
  for (const auto& [name, t] : tensors) given[name] = t;
  for (const auto& [name, t] : own) {  // either form of a Linear / 1x1-conv weight loads
    auto it = given.find(name);
    if (it != given.end()) it->second = as_form(it->second, t.shape());
  }
  std::vector<std::string> missing, unexpected, mismatched;
  std::set<std::string> own_names;
  for (const auto& [name, t] : own) {
    own_names.insert(name);
    auto it = given.find(name);
    if (it == given.end()) {
      missing.push_back(name);
    } else if (it->second.shape() != t.shape()) {
      mismatched.push_back(name + ": expected " + shape_str(t.shape()) + ", got " +
                           shape_str(it->second.shape()));
    }
  }
  for (const auto& [name, t] : tensors)
    if (!own_names.count(name)) unexpected.push_back(name);
  bool fail = !mismatched.empty() || (strict && (!missing.empty() || !unexpected.empty()));
  if (fail) {
    std::ostringstream msg;
    msg << source << ": cannot load weights into the model:";
    auto list = [&](const char* what, const std::vector<std::string>& names) {
      if (names.empty()) return;
      msg << "\n  " << what << " (" << names.size() << "):";
      for (const auto& n : names) msg << "\n    " << n;
    };
    list("shape mismatches", mismatched);
    if (strict) {
      list("missing keys", missing);
      list("unexpected keys", unexpected);
    }
    throw InputError(msg.str());
  }
  NoGradGuard ng;
  for (auto& [name, t] : own) {
    auto it = given.find(name);
    if (it != given.end()) {
      Tensor dst = t;
      dst.copy_(it->second);
    }
  }
}

void Module::save(const std::string& path,
                  const std::map<std::string, std::string>& metadata) const {
  std::map<std::string, std::string> meta = metadata;
  meta.emplace("format", "pt");  // what timm / safetensors.torch expect
  save_safetensors(path, state_dict(), meta);
}

void Module::load(const std::string& path, bool strict) {
  SafetensorsFile f = SafetensorsFile::open(path);
  NamedTensors ts;
  for (const auto& name : f.names()) ts.emplace_back(name, f.get(name));
  load_state_dict(ts, strict, path);
}

Sequential::Sequential(const std::vector<ModulePtr>& modules) {
  for (const auto& m : modules) push_back(m);
}

void Sequential::push_back(ModulePtr m) {
  add_child(std::to_string(modules_.size()), m);
  modules_.push_back(std::move(m));
}

Tensor Sequential::forward(const Tensor& x) {
  Tensor y = x;
  for (auto& m : modules_) y = m->forward(y);
  return y;
}

void ModuleList::push_back(ModulePtr m) {
  add_child(std::to_string(modules_.size()), m);
  modules_.push_back(std::move(m));
}

}  // namespace scion::nn
