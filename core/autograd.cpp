// The backward engine: Kahn's algorithm over the nodes reachable from the root, so each node runs
// after every consumer of its output has delivered its gradient. A leaf's first gradient becomes
// its .grad (copied only when shared), later ones are summed into it in place.
#include "core/autograd.h"

#include <unordered_map>

#include "core/ops.h"

namespace scion {

namespace {
thread_local bool g_grad_enabled = true;
}

bool grad_enabled() {
  return g_grad_enabled;
}
NoGradGuard::NoGradGuard() : prev_(g_grad_enabled) {
  g_grad_enabled = false;
}
NoGradGuard::~NoGradGuard() {
  g_grad_enabled = prev_;
}

std::vector<Tensor> Node::apply(const Tensor& grad_out) {
  SCION_CHECK(fn_ != nullptr, "backward through ", name_,
              " a second time: the graph was freed by the first backward()");
  Backward fn = std::move(fn_);
  fn_ = nullptr;
  return fn(grad_out);
}

bool any_requires_grad(std::initializer_list<const Tensor*> inputs) {
  if (!g_grad_enabled) return false;
  for (const Tensor* t : inputs)
    if (t->defined() && t->requires_grad()) return true;
  return false;
}

bool any_requires_grad(const std::vector<Tensor>& inputs) {
  if (!g_grad_enabled) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

void record(Tensor& out, const char* name, const std::vector<Tensor>& inputs, Node::Backward fn) {
  if (!any_requires_grad(inputs)) return;
  std::vector<Edge> edges;
  edges.reserve(inputs.size());
  for (const Tensor& t : inputs) {
    Edge e;
    if (t.defined() && t.requires_grad()) {
      if (t.grad_fn())
        e.fn = t.grad_fn();
      else
        e.leaf = t.impl_ptr();
    }
    edges.push_back(std::move(e));
  }
  out.impl()->grad_fn = std::make_shared<Node>(name, std::move(edges), std::move(fn));
  out.impl()->requires_grad = true;
}

namespace {

// Takes g by value: when nothing else holds it or its storage and it has the leaf's layout (the
// common case), it becomes the leaf's gradient without a copy, as torch's AccumulateGrad does;
// otherwise it is copied into a tensor laid out like the leaf (torch's gradient layout contract).
void accumulate_leaf(const std::shared_ptr<TensorImpl>& leaf_impl, Tensor g) {
  Tensor leaf(leaf_impl);
  SCION_ASSERT(g.shape() == leaf.shape(), "gradient shape ", shape_str(g.shape()),
               " does not match leaf shape ", shape_str(leaf.shape()));
  if (g.dtype() != leaf.dtype()) g = g.to(leaf.dtype());
  if (leaf_impl->grad) {
    Tensor(leaf_impl->grad).add_(g);
    return;
  }
  Shape layout =
      leaf.is_contiguous() || !is_dense(leaf) ? contiguous_strides(leaf.shape()) : leaf.strides();
  bool owned = g.impl_ptr().use_count() == 1 && g.storage().use_count() == 1 &&
               g.strides() == layout && g.offset() == 0 && !g.requires_grad();
  if (owned) {
    leaf_impl->grad = g.impl_ptr();
  } else {
    Tensor like = empty_like(leaf);
    like.copy_(g);
    leaf_impl->grad = like.impl_ptr();
  }
}

// What the backward pass from `root` waits on: for each node reachable from it, how many edges of
// that graph point at it (it runs once all have delivered), and for each leaf with a
// post-accumulate hook, how many edges end in it (the hook runs once its gradient is complete).
struct Dependencies {
  std::unordered_map<Node*, int> nodes;
  std::unordered_map<TensorImpl*, int> hooked_leaves;
};

Dependencies count_dependencies(Node* root) {
  Dependencies d;
  std::vector<Node*> stack{root};
  d.nodes[root] = 0;
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (const Edge& e : n->edges()) {
      if (e.leaf && e.leaf->post_accumulate_hook) ++d.hooked_leaves[e.leaf.get()];
      if (!e.fn) continue;
      auto [it, first] = d.nodes.try_emplace(e.fn.get(), 0);
      ++it->second;
      if (first) stack.push_back(e.fn.get());
    }
  }
  return d;
}

}  // namespace

void run_backward(const Tensor& root, const Tensor& grad) {
  SCION_CHECK(root.requires_grad(), "backward() on a tensor that does not require grad");
  SCION_CHECK(grad.shape() == root.shape(), "backward(): gradient shape ", shape_str(grad.shape()),
              " does not match the tensor's shape ", shape_str(root.shape()));
  NoGradGuard no_grad;
  auto run_hook = [](const std::shared_ptr<TensorImpl>& leaf) {
    if (leaf->post_accumulate_hook) (*leaf->post_accumulate_hook)(Tensor(leaf));
  };
  if (!root.grad_fn()) {
    accumulate_leaf(root.impl_ptr(), grad.clone());
    run_hook(root.impl_ptr());
    return;
  }
  Dependencies deps = count_dependencies(root.grad_fn().get());
  std::unordered_map<Node*, Tensor> grads;
  grads[root.grad_fn().get()] = grad;
  std::vector<Node*> ready{root.grad_fn().get()};
  while (!ready.empty()) {
    Node* n = ready.back();
    ready.pop_back();
    auto found = grads.find(n);
    Tensor g = found == grads.end() ? Tensor() : std::move(found->second);
    if (found != grads.end()) grads.erase(found);
    const auto& edges = n->edges();
    // A node no gradient reached still releases its inputs, so other paths into them can finish.
    std::vector<Tensor> in_grads = g.defined() ? n->apply(g) : std::vector<Tensor>(edges.size());
    g = Tensor();
    SCION_ASSERT(in_grads.size() == edges.size(), n->name(), " returned ", in_grads.size(),
                 " gradients for ", edges.size(), " inputs");
    for (size_t i = 0; i < edges.size(); ++i) {
      const Edge& e = edges[i];
      Tensor gi = std::move(in_grads[i]);
      if (e.leaf) {
        if (gi.defined()) accumulate_leaf(e.leaf, std::move(gi));
        if (e.leaf->post_accumulate_hook && --deps.hooked_leaves[e.leaf.get()] == 0)
          run_hook(e.leaf);
        continue;
      }
      if (!e.fn) continue;
      Node* next = e.fn.get();
      if (gi.defined()) {
        auto it = grads.find(next);
        if (it == grads.end())
          grads.emplace(next, std::move(gi));
        else
          it->second = add(it->second, gi);
      }
      if (--deps.nodes[next] == 0) ready.push_back(next);
    }
  }
}

}  // namespace scion
