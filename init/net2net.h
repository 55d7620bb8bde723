// Net2Net (Chen, Goodfellow, Shlens, ICLR 2016): grow a trained model wider or deeper.
//
// Net2WiderNet: every widened dimension gets a unit map new -> old (the old units keep their place,
// the new ones copy randomly chosen old units, drawn as a seeded random permutation cycled, so
// replication counts differ by at most one). A replicated unit copies its incoming weights, bias
// and norm parameters; a weight reading from replicated units is divided by each unit's
// replication count. Spaces grown independently: the residual/embedding dims (ViT embed_dim,
// ConvNeXt stage dims), ViT attention units (whole heads are copied, head_dim must stay), and MLP
// hidden units per block. When every unit is replicated equally (an integer multiple) a LayerNorm
// sees each value the same number of times, its mean and variance are unchanged, and the grown
// model computes exactly the same function. Otherwise LayerNorm statistics shift (over-counted
// units weigh more) and the function changes slightly; tests/init/test_net2net.cpp measures it.
//
// Net2DeeperNet: new blocks are interleaved among the old ones and start as exact identities: their
// residual branches end in zeroed output projections (attn.proj, mlp.fc2) and, with layer scale,
// a zero gamma; their other weights keep the grown model's own initialization.
//
// Optional noise adds N(0, noise * std(W)) to widened weights to break the symmetry.
#pragma once

#include <string>

#include "core/rng.h"
#include "core/safetensors.h"
#include "nn/model.h"

namespace scion::init {

struct GrowOptions {
  double noise = 0.0;
  uint64_t seed = 0;
};

// Fills `big` (built, with its own initialization) from the smaller model `small`'s weights.
void grow(nn::Model& big, const nn::Model& small, const GrowOptions& opt,
          const std::string& source);

// Grows `big` from a weight file of a smaller model named `from_model` (its architecture read from
// the file; image size, patch size, channels and classes taken from big's config).
void grow_from_file(nn::Model& big, const std::string& path, const std::string& from_model,
                    const GrowOptions& opt);

// Unit map of a widened dimension (first old_n identity, the rest balanced random copies).
std::vector<int64_t> widen_map(int64_t old_n, int64_t new_n, Generator& gen);

}  // namespace scion::init
