// Weight selection (Xu et al., ICLR 2024, "Initializing Models with Larger Ones", section 3):
// a student takes a subset of a larger pretrained teacher's weights of the same family.
//   1. Layer selection: student block i takes teacher block first: i; uniform: round(i
//      (Lt-1)/(Ls-1)); last: Lt - Ls + i; mid: floor((Lt - Ls) / 2) + i, the middle Ls blocks
//      (per stage for ConvNeXt).
//   2. Component mapping: the same key after block renumbering. As the official code, no key
//      containing "head" is selected (ViT head.*, ConvNeXt head.norm.* and head.fc.*): they keep
//      the student's own initialization. Options select ConvNeXt's head.norm, and the classifier
//      when the class counts match.
//   3. Element selection, per dimension of each tensor: uniform takes arange(s) * (t / s) when s
//      divides t, else round(linspace(0, t - 1, s)) (exactly the official code: float32 linspace,
//      round half to even); consecutive the first s; random one sorted random index set per (s, t)
//      pair reused by every tensor (consistency); random-inconsistent fresh indices per tensor and
//      dimension. The fused qkv projection is selected per q/k/v block so the three stay aligned
//      (qkv "per_block"), or as the official code does, on the fused 3D rows (qkv "official":
//      the same as per_block when the widths divide, other rows when they do not).
//      Pruning-style (elements "l1" | "magnitude", a structured-pruning baseline): per axis (the
//      residual width across the whole network, each block's attention inner width and MLP hidden
//      units, ConvNeXt's per-stage widths), the teacher's indices of largest L1 norm (or sum of
//      squares) summed over every tensor on that axis, the same set for all of them; q/k/v per
//      block.
//   4. Components (an ablation): only the parameters of the listed components are selected, the
//      rest keep the student's own initialization (component_of names each parameter's).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "core/rng.h"
#include "core/safetensors.h"
#include "nn/model.h"

namespace scion::init {

// Indices selecting s of t elements for a mode ("uniform", "consecutive", "random",
// "random-inconsistent"); random modes draw from gen (random draws once per (s, t) via `cache`).
std::vector<int64_t> element_indices(
    const std::string& mode, int64_t t, int64_t s, Generator& gen,
    std::map<std::pair<int64_t, int64_t>, std::vector<int64_t>>* cache = nullptr);

// The s indices of largest importance, in increasing index order (ties: the lower index first).
std::vector<int64_t> most_important(const std::vector<double>& importance, int64_t s);

// Teacher block for student block i of a stack of Ls blocks from a teacher stack of Lt
// ("first", "uniform", "last", "mid").
int64_t teacher_layer(const std::string& mode, int64_t i, int64_t student_layers,
                      int64_t teacher_layers);

// The architecture a timm-keyed weight set describes (for checks and messages).
struct TeacherArch {
  std::string family;  // "vit" or "convnext"
  int64_t embed_dim = 0, depth = 0, mlp_hidden = 0, patch_size = 0, num_classes = 0, tokens = 0;
  std::vector<int64_t> depths, dims;  // convnext
};
TeacherArch infer_architecture(const NamedTensors& tensors, const std::string& source);

// The component a parameter belongs to: ViT patch_embed, pos_embed (pos_embed, cls_token), attn,
// mlp, norm, layer_scale, head; ConvNeXt patch_embed (the stem convolution), downsample (its
// convolution), conv_dw, mlp, norm (every LayerNorm: stem, downsample, blocks, head.norm),
// layer_scale (gamma), head (head.fc).
std::string component_of(const std::string& name);
// The component names component_of returns, for messages and checks.
const std::vector<std::string>& component_names();
// The components a spec selects: "all"; a comma list "attn,mlp" (only those); or removals from
// all, "-attn,-mlp". An unknown name is an InputError naming `where` (the key) and the known ones.
std::vector<std::string> parse_components(const std::string& spec, const std::string& where);

struct SelectionOptions {
  std::string layers = "first", elements = "uniform";
  std::string qkv = "per_block";  // per_block | official (linspace over the fused 3D rows)
  std::vector<std::string> components = component_names();  // what is selected
  bool head = false;       // also select the classifier head when the class counts match
  bool head_norm = false;  // also select ConvNeXt's head.norm (the official code does not)
  uint64_t seed = 0;
};

// Loads a teacher's weights: a file with timm keys, a scion checkpoint (model.* keys), or a
// Hugging Face timm folder (config.json + model.safetensors, init/pretrained.h).
NamedTensors load_teacher(const std::string& path);

// Overwrites the student's parameters (already initialized by its own initializer) with the
// selected teacher weights; returns the names of the parameters it selected.
std::vector<std::string> select_weights(nn::Model& student, const NamedTensors& teacher,
                                        const SelectionOptions& opt, const std::string& source);

}  // namespace scion::init
