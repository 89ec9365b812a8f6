#pragma once
// GLOM "universal capsules" (Hinton 2021, "How to represent part-whole hierarchies in a neural
// network", arXiv 2102.12627): every image patch has a column of L level embeddings of D
// dimensions. Each iteration replaces every level of every column by a weighted average of its
// previous value, a bottom-up prediction from the level below, a top-down prediction from the level
// above plus the column's position (a neural field), and the consensus: an attention-weighted
// average of the same level in other columns, weights proportional to exp(beta_l * cosine), within
// a window of radius r_l. Vectors that agree pull together into islands: the nodes of a parse tree.
#include <torch/torch.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "distillery/nn/retina.h"

namespace distillery::nn {

// ---------------------------------------------------------------------------------------------
// Consensus attention: a free function, usable on its own (no parameters).

struct ConsensusOptions {
  /// Window radius in patches (Chebyshev): K = (2r + 1)^2 neighbours, cost O(N K D), linear in
  /// the number of locations N. A negative radius means global attention over all N locations
  /// (cost O(N^2 D); meant for the top level of small grids).
  TORCH_ARG(int64_t, radius) = 1;
  /// Inverse temperature on cosine similarity.
  TORCH_ARG(double, beta) = 10.0;
  /// Local windows only: compute the same weights through a masked N x N similarity matrix (two
  /// matrix products, O(N^2 D)). It beat the window written op by op on small grids; the fused CPU
  /// kernel of the linear-cost path is faster again (docs/BENCH.md). Equal up to rounding.
  TORCH_ARG(bool, dense) = false;
  /// Also return the attention weights (tests, pictures).
  TORCH_ARG(bool, return_weights) = false;
};

/// consensus [B, N, D]: for each location i, sum_j w_ij x_j with
/// w_ij = softmax_j(beta * cos(x_i, x_j)) over the window's locations j != i (the column's own
/// vector is excluded with -inf; window positions outside the grid too).
/// weights (only if return_weights): [B, N, K] for a local window, K = (2r + 1)^2 in the order of
/// `window_neighbours` (row offset outer, column offset inner); [B, N, N] for global attention.
struct ConsensusOutput {
  torch::Tensor consensus;
  torch::Tensor weights;
};

/// x [B, N, D] on a height x width grid (N = height * width, row-major) -> ConsensusOutput.
ConsensusOutput consensus_attention(const torch::Tensor& x, int64_t height, int64_t width,
                                    const ConsensusOptions& options);

/// Local windows on a CPU (float or double) run one fused kernel per image with a hand-written
/// backward pass (windowed_consensus_fused); other devices and dtypes run the same computation op
/// by op (consensus_attention_reference). A location without neighbours (a 1 x 1 grid) gets a
/// zero consensus from the fused kernel and NaN from the reference.
ConsensusOutput windowed_consensus_fused(const torch::Tensor& x, int64_t height, int64_t width, int64_t radius,
                                         double beta, bool return_weights);

/// The local-window consensus written op by op (one shifted view of a padded grid per window
/// offset, differentiated by autograd): the oracle of the fused kernel and its benchmark baseline.
ConsensusOutput consensus_attention_reference(const torch::Tensor& x, int64_t height, int64_t width,
                                              const ConsensusOptions& options);

/// The neighbour index [N, K] (int64, self included at K / 2, -1 outside the grid) of a local
/// window of radius r on a height x width grid.
torch::Tensor window_neighbours(int64_t height, int64_t width, int64_t radius);

// ---------------------------------------------------------------------------------------------
// Column nets: the same computation at every location, with or without shared weights.

/// A net applied at every column, [B, N, in] -> [B, N, out] (GELU between layers). Shared: one set
/// of weights used at all N locations, as a ConvNet copies its kernels. Not shared: a separate copy
/// per location (a LocationMLP), as in a brain, which cannot copy weights between places; the
/// columns can then learn from each other only through the consensus (issue 6's GLOM variant).
class ColumnNetImpl : public torch::nn::Module {
 public:
  /// hidden empty: a single linear layer.
  ColumnNetImpl(int64_t in, const std::vector<int64_t>& hidden, int64_t out, int64_t locations, bool shared);
  torch::Tensor forward(const torch::Tensor& columns);

 private:
  std::vector<torch::nn::Linear> layers_;  // shared weights
  LocationMLP per_location_ = nullptr;       // or one copy per location
};
TORCH_MODULE(ColumnNet);

// ---------------------------------------------------------------------------------------------
// The GLOM model.

struct GlomOptions {
  TORCH_ARG(int64_t, image_size) = 56;
  TORCH_ARG(int64_t, patch_size) = 4;
  TORCH_ARG(int64_t, levels) = 3;
  TORCH_ARG(int64_t, dim) = 48;
  /// Hidden units of the bottom-up and top-down nets (two-layer MLPs, one pair per level).
  TORCH_ARG(int64_t, hidden) = 96;
  TORCH_ARG(int64_t, iterations) = 6;
  /// Consensus window radius per level (size levels; negative: global).
  TORCH_ARG(std::vector<int64_t>, radii) = std::vector<int64_t>{1, 2, 3};
  /// beta per level (size levels).
  TORCH_ARG(std::vector<double>, betas) = std::vector<double>{5.0, 10.0, 20.0};
  /// Mixing weights of the four terms (normalised over the terms a level has: the bottom level's
  /// bottom-up term is the patch embedding, the top level has no top-down term).
  TORCH_ARG(double, weight_previous) = 1.0;
  TORCH_ARG(double, weight_bottom_up) = 1.0;
  TORCH_ARG(double, weight_top_down) = 1.0;
  TORCH_ARG(double, weight_attention) = 1.0;
  /// Learn the mixing weights per level (softmax over logits initialised from the weights above).
  TORCH_ARG(bool, learned_mixing) = false;
  /// Level 0 sees its patch plus this many pixels of context on every side ((patch + 2c)^2
  /// pixels; hidden patches are blanked before any column sees them). 0: the patch alone.
  TORCH_ARG(int64_t, context) = 0;
  /// The bottom-up nets see the level below in a (2w + 1)^2 neighbourhood of columns (a local
  /// receptive field, as GLOM allows); 0: their own column only.
  TORCH_ARG(int64_t, bottom_up_window) = 0;
  /// Sinusoidal position features: 4 * position_frequencies numbers per location.
  TORCH_ARG(int64_t, position_frequencies) = 4;
  TORCH_ARG(int64_t, num_classes) = 10;
  /// Image class scores from the locations' (multiple-instance learning): "max", or "lse"
  /// (log-sum-exp). Max trains the most confident location of each class; log-sum-exp spreads the
  /// gradient over all N locations, and on 56 x 56 scenes (N = 196, mostly background) the label
  /// loss stayed at the class prior for 600 steps where max pooling left it within 300.
  TORCH_ARG(std::string, pooling) = "max";
  /// Consensus through a masked N x N matrix (ConsensusOptions::dense) instead of the linear-cost
  /// window: the same weights.
  TORCH_ARG(bool, dense_attention) = false;
  /// Backpropagate through the last k iterations only (0: all).
  TORCH_ARG(int64_t, truncate) = 0;
  /// false: every column has its own embedding, bottom-up, top-down, decoder and classifier
  /// weights (nothing shared between locations; N times the parameters).
  TORCH_ARG(bool, shared_columns) = true;
};

/// Results of one forward pass. B images, N = grid^2 locations, L levels, D dims, P = patch^2.
struct GlomOutput {
  torch::Tensor levels;          // [B, N, L, D] after the last iteration
  torch::Tensor iterations;      // [T + 1, B, N, L, D] start and every iteration (if recorded)
  torch::Tensor bottom_up;       // [B, N, L, D] last iteration's bottom-up predictions
  torch::Tensor top_down;        // [B, N, L, D] last iteration's top-down predictions (top level: 0)
  torch::Tensor consensus;       // [B, N, L, D] last iteration's consensus (input of the last update)
  torch::Tensor reconstruction;  // [B, N, P] patch pixels predicted from level 0
  torch::Tensor location_logits; // [B, N, C] class scores of every location's top level
  torch::Tensor image_logits;    // [B, C] location_logits pooled over locations (max or log-sum-exp: MIL)
};

class GlomImpl : public torch::nn::Module {
 public:
  explicit GlomImpl(const GlomOptions& options);
  void reset();

  /// images [B, 1, H, W] -> GlomOutput. patch_mask [B, N] bool (optional): patches whose pixels
  /// are hidden from the model (denoising). record: keep every iteration in `iterations`.
  /// iterations: how many updates to run; unset, the trained count options_.iterations() (settling
  /// longer at test time, or a random count per training step, passes its own).
  GlomOutput forward(const torch::Tensor& images, const torch::Tensor& patch_mask = {}, bool record = false,
                     std::optional<int64_t> iterations = std::nullopt);

  /// Class scores [B, N, C] of every location from its top-level embedding [B, N, D].
  torch::Tensor location_logits(const torch::Tensor& top_level);

  /// The neural field read downwards: the patch pixels [B, N, P] that embeddings [B, N, D] at level
  /// `from` predict through the top-down nets alone (with each location's position; every level
  /// layer-normed, as an update leaves it) and the decoder. An island's mean embedding placed at
  /// every location predicts its whole object, as far as the top-down nets have learned to generate
  /// parts (in the study's models they have not: docs/results/glom/README.md, "Smaller windows over
  /// three seeds, imagining, 2x2 patches").
  torch::Tensor imagine(const torch::Tensor& embeddings, int64_t from);

  /// Patches [B, N, P] of images [B, 1, H, W] (row-major grid).
  torch::Tensor patches(const torch::Tensor& images) const;
  /// Level 0's input [B, N, (patch + 2 context)^2]: each patch with its context.
  torch::Tensor patch_windows(const torch::Tensor& images) const;
  /// The bottom-up input from level embeddings [B, N, D]: [B, N, D (2w + 1)^2].
  torch::Tensor bottom_up_input(const torch::Tensor& below) const;
  /// Mixing weights [L, 4] (previous, bottom-up, top-down, attention) as used now.
  torch::Tensor mixing_weights() const;
  /// The ablation: with false the attention term is dropped from every update (weights renormalised).
  void set_attention(bool enabled) { attention_enabled_ = enabled; }
  bool attention() const { return attention_enabled_; }
  int64_t grid() const { return options_.image_size() / options_.patch_size(); }

  GlomOptions options_;

 private:
  bool attention_enabled_ = true;
  ColumnNet embed_ = nullptr;
  ColumnNet decode_ = nullptr;
  ColumnNet classify_ = nullptr;
  std::vector<ColumnNet> bottom_up_;  // level l >= 1: level l - 1 -> level l
  std::vector<ColumnNet> top_down_;   // level l < L - 1: level l + 1 and position -> level l
  torch::Tensor mixing_logits_;                   // [L, 4]
  torch::Tensor mixing_present_;                  // [L, 4] 1 where a level has the term
  torch::Tensor positions_;                       // [N, 4F]
};
TORCH_MODULE(Glom);

// ---------------------------------------------------------------------------------------------
// Training objective. It takes images and image-level labels only: object masks cannot reach it.

struct GlomLossOptions {
  /// Denoising: fraction of patches hidden, weight of the MSE on their reconstructed pixels.
  TORCH_ARG(double, mask_fraction) = 0.25;
  TORCH_ARG(double, denoise) = 1.0;
  /// Island regulariser: pull bottom-up and top-down predictions towards the detached consensus
  /// (1 - cosine), on levels >= 1.
  TORCH_ARG(double, island) = 0.1;
  /// Contrastive push-apart: InfoNCE between locations' embeddings and the detached consensus at the
  /// same locations, negatives from other images; `samples` locations per image, temperature tau.
  TORCH_ARG(double, contrast) = 0.1;
  TORCH_ARG(int64_t, samples) = 8;
  TORCH_ARG(double, temperature) = 0.1;
  /// Same-image negatives: sampled locations of the same image farther apart than the level's
  /// consensus radius (Chebyshev, in patches) are negatives too; nearer ones stay out of the
  /// softmax. Negatives from other images alone ask nothing of two digits in one scene.
  TORCH_ARG(bool, same_image_negatives) = false;
  /// Image-level labels: binary cross-entropy of the MIL logits against the multi-hot labels.
  TORCH_ARG(double, label) = 1.0;
  /// Image-level labels at every ink location: -log of the probability (softmax over the
  /// location's class scores) that the location belongs to one of the image's classes, averaged
  /// over the patches whose largest pixel exceeds `ink`. Each location must commit to a digit that
  /// is present, so the top-level embeddings of two digits' locations must differ. Ink comes from
  /// the image's pixels, never from object masks.
  TORCH_ARG(double, location_label) = 0.0;
  /// Commitment: the entropy of each ink location's class distribution renormalised over the
  /// image's classes. location_label is satisfied by a location that splits its mass between two
  /// present digits; this term asks it to choose one, so that the two digits' locations part.
  TORCH_ARG(double, commitment) = 0.0;
  TORCH_ARG(double, ink) = 0.3;
  /// Iterations of the forward pass (unset: the model's own count).
  TORCH_ARG(std::optional<int64_t>, iterations) = std::nullopt;
};

struct GlomLoss {
  torch::Tensor total;
  torch::Tensor denoise, island, contrast, label, location_label, commitment;  // unweighted scalar terms
};

/// images [B, 1, H, W], labels [B, C] multi-hot float. Hides random patches (torch's generator).
GlomLoss glom_loss(Glom& model, const torch::Tensor& images, const torch::Tensor& labels,
                   const GlomLossOptions& options);

}  // namespace distillery::nn
