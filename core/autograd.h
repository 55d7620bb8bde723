// Reverse-mode autograd on a dynamic tape. Every differentiable op that has an input needing a
// gradient records a Node: its backward closure maps the gradient of the op's output to the
// gradients of its inputs, and its edges say where those go (another Node, or a leaf's .grad).
// backward() sorts the nodes reachable from the root topologically and runs each once, summing the
// gradients that arrive at a node before running it. Closures run under NoGradGuard, capture only
// detached tensors (capturing the output itself would be a reference cycle), and are freed after
// they run, so a graph is backpropagated once, as in PyTorch without retain_graph.
#pragma once

#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace scion {

struct Edge {
  std::shared_ptr<Node> fn;          // gradient flows into this node, or
  std::shared_ptr<TensorImpl> leaf;  // is accumulated into this leaf's grad
  bool active() const { return fn || leaf; }
};

class Node {
 public:
  // Returns one gradient per input, in input order; an undefined Tensor means "no gradient".
  using Backward = std::function<std::vector<Tensor>(const Tensor& grad_out)>;
  Node(const char* name, std::vector<Edge> edges, Backward fn)
      : name_(name), edges_(std::move(edges)), fn_(std::move(fn)) {}
  const char* name() const { return name_; }
  const std::vector<Edge>& edges() const { return edges_; }
  std::vector<Tensor> apply(const Tensor& grad_out);

 private:
  const char* name_;
  std::vector<Edge> edges_;
  Backward fn_;
};

bool grad_enabled();

class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool prev_;
};

// True when grad mode is on and at least one input requires a gradient.
bool any_requires_grad(std::initializer_list<const Tensor*> inputs);
bool any_requires_grad(const std::vector<Tensor>& inputs);

// Attaches a node producing `out` from `inputs` when any of them requires a gradient.
void record(Tensor& out, const char* name, const std::vector<Tensor>& inputs, Node::Backward fn);

// Runs backpropagation from `root` with upstream gradient `grad` (same shape as root).
void run_backward(const Tensor& root, const Tensor& grad);

}  // namespace scion
