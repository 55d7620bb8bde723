// Module: a node of a model tree holding named parameters, buffers and child modules, with
// torch.nn.Module's naming: named_parameters() yields dotted paths ("blocks.3.attn.qkv.weight")
// in registration order, Sequential/ModuleList children are named "0", "1", ...
//
// Modules only allocate: constructors create parameters with their shapes (zero-filled) and names;
// initializers (init/) fill them. Parameter tensors are handles, so optimizers and
// load_state_dict() update them in place and every holder sees the change.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/safetensors.h"
#include "core/tensor.h"

namespace scion::nn {

class Module {
 public:
  virtual ~Module() = default;
  // The single-input forward most layers have; containers and models override it.
  virtual Tensor forward(const Tensor& x);
  Tensor operator()(const Tensor& x) { return forward(x); }

  // Parameters (requires_grad set), buffers (saved, not trained) and children, by local name.
  Tensor register_parameter(const std::string& name, Tensor t);
  Tensor register_buffer(const std::string& name, Tensor t);
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> m) {
    add_child(name, m);
    return m;
  }

  NamedTensors named_parameters() const;
  NamedTensors named_buffers() const;
  std::vector<Tensor> parameters() const;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> named_children() const {
    return children_;
  }
  int64_t num_parameters() const;
  // A parameter or buffer by dotted name; an error naming it when absent.
  Tensor find(const std::string& dotted_name) const;

  // Moves every parameter and buffer to `device` in place (torch's module.to(device)): handles
  // held elsewhere see the move; gradients are dropped.
  void to(Device device);
  // The device of the first parameter or buffer (cpu for a module without any).
  Device device() const;

  // Training mode switches Dropout/DropPath on; it propagates to every descendant.
  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }

  // Parameters then buffers, dotted names (timm's state_dict keys for the models).
  NamedTensors state_dict() const;
  // Copies tensors into the parameters/buffers by name (converting dtype). strict: every key must
  // match; otherwise missing and unexpected keys are skipped. Shape mismatches are always errors.
  // All problems are reported together in one InputError naming `source`.
  void load_state_dict(const NamedTensors& tensors, bool strict = true,
                       const std::string& source = "state_dict");
  virtual void save(const std::string& path,
                    const std::map<std::string, std::string>& metadata = {}) const;
  void load(const std::string& path, bool strict = true);

 protected:
  void add_child(const std::string& name, std::shared_ptr<Module> m);

 private:
  void collect(const std::string& prefix, bool params, NamedTensors& out) const;
  std::vector<std::pair<std::string, Tensor>> params_, buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
};

using ModulePtr = std::shared_ptr<Module>;

// A Linear weight (out, in) and the same weight stored as a 1x1 convolution (out, in, 1, 1) are one
// tensor in two forms (timm's ConvNeXt conv_mlp): `t` (one form) reshaped to the form of `shape`
// (the other; sizes may differ, as a teacher's), else `t` unchanged.
Tensor as_form(const Tensor& t, const Shape& shape);

// Children "0", "1", ...; forward applies them in order.
class Sequential : public Module {
 public:
  Sequential() = default;
  explicit Sequential(const std::vector<ModulePtr>& modules);
  void push_back(ModulePtr m);
  size_t size() const { return modules_.size(); }
  const ModulePtr& operator[](size_t i) const { return modules_[i]; }
  Tensor forward(const Tensor& x) override;

 private:
  std::vector<ModulePtr> modules_;
};

// Children "0", "1", ... without a forward of its own.
class ModuleList : public Module {
 public:
  void push_back(ModulePtr m);
  size_t size() const { return modules_.size(); }
  const ModulePtr& operator[](size_t i) const { return modules_[i]; }

 private:
  std::vector<ModulePtr> modules_;
};

}  // namespace scion::nn
