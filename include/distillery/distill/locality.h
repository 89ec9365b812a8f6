#pragma once
// Distillation instead of weight sharing ("Distillation and the Brain", Hinton 2021): a retina
// whose locations each have their own network, and the schemes by which knowledge that enters at
// the fovea (the only place with labels) reaches the periphery.
//   none       (a) only the fovea is trained; the peripheral networks keep their initial weights
//   saccade    (b) an object seen in the periphery is then fixated; the fovea's softened output at
//                  temperature T teaches the peripheral location's network (no label)
//   consensus  (c) each object is seen by the fovea and by several peripheral locations; each
//                  peripheral network is trained towards the attention-weighted consensus of the
//                  others' predictions (GLOM's echo chamber as a teacher, no label)
//   shared     (d) one network for every location (a ConvNet's weight sharing), trained at the
//                  fovea; peripheral views are resampled to the fovea's size to apply it
//   supervised (e) every location trained with labels (the upper bound)
#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "distillery/config.h"
#include "distillery/data/dataset.h"
#include "distillery/data/retina_scenes.h"
#include "distillery/nn/retina.h"

namespace distillery::distill {

enum class LocalityScheme { None, Saccade, Consensus, Shared, Supervised };

/// "none" | "saccade" | "consensus" | "shared" | "supervised"; InputError naming locality.scheme.
LocalityScheme parse_locality_scheme(const std::string& name);
std::string locality_scheme_name(LocalityScheme scheme);
/// The letter of the scheme: a, b, c, d, e.
char locality_scheme_letter(LocalityScheme scheme);

struct LocalityOptions {
  TORCH_ARG(data::RetinaOptions, retina);
  TORCH_ARG(LocalityScheme, scheme) = LocalityScheme::Saccade;
  /// Hidden layers of every location's MLP.
  TORCH_ARG(std::vector<int64_t>, hidden) = std::vector<int64_t>{256};
  TORCH_ARG(int64_t, num_classes) = 10;
  TORCH_ARG(int64_t, epochs) = 5;
  /// Objects per peripheral location per step; the fovea sees all (P - 1) * this many.
  TORCH_ARG(int64_t, batch_per_location) = 32;
  /// Adam learning rate.
  TORCH_ARG(double, lr) = 1e-3;
  /// Temperature of the soft targets (saccade and consensus), with the T^2 factor.
  TORCH_ARG(double, temperature) = 4.0;
  /// consensus: peripheral locations that see each object in one step (besides the fovea).
  TORCH_ARG(int64_t, consensus_views) = 2;
  /// consensus: sharpness of the attention over the others' predictions.
  TORCH_ARG(double, attention_beta) = 5.0;
  TORCH_ARG(uint64_t, seed) = 1;
};

/// The locality.* keys of a config (with model.hidden, train.epochs, train.lr, train.seed).
LocalityOptions locality_options_from_config(const Config& config);

/// The networks of a retina: the fovea's and one per peripheral location (none shared), or for the
/// shared scheme one network used everywhere.
class RetinaNetsImpl : public torch::nn::Module {
 public:
  explicit RetinaNetsImpl(const LocalityOptions& options);
  /// Fovea windows [B, W, W] -> logits [B, K].
  torch::Tensor fovea_logits(const torch::Tensor& views);
  /// Peripheral views [P - 1, B, w, w] (location-major, peripheral locations in row-major order
  /// without the fovea) -> logits [P - 1, B, K]. Shared scheme: the fovea's network applied to the
  /// views resampled to W x W.
  torch::Tensor periphery_logits(const torch::Tensor& views);
  bool shared() const { return !periphery; }

  LocalityOptions options_;
  nn::LocationMLP fovea{nullptr};
  nn::LocationMLP periphery{nullptr};  // empty for the shared scheme
};
TORCH_MODULE(RetinaNets);

/// The retina location of peripheral index i (the fovea skipped): i < fovea ? i : i + 1.
int64_t peripheral_location(int64_t index, const data::RetinaOptions& retina);

/// Attention-weighted consensus of the others, detached: logits [V, B, K] of V locations that see
/// the same B objects -> soft targets [V, B, K], where target_v = sum_{u != v} a_vu softmax(z_u / T)
/// and a_vu = softmax over u != v of beta * <softmax(z_v / T), softmax(z_u / T)> (agreement).
/// V >= 2.
torch::Tensor consensus_targets(const torch::Tensor& logits, double temperature, double beta);

/// One training step's data. N = (P - 1) * b objects; object (g, i) is row g * b + i.
struct LocalityBatch {
  torch::Tensor fovea_views;       // [N, W, W]: every object, fixated
  torch::Tensor fovea_labels;      // [N] int64: the labels, given at the fovea
  torch::Tensor periphery_views;   // [V, P - 1, b, w, w]: view v of object group g, seen at location (g + roll_v) mod (P - 1)
  std::vector<int64_t> rolls;      // [V]: roll_v (0 for the first view)
  torch::Tensor periphery_labels;  // [P - 1, b] int64: labels at peripheral positions (read by supervised only)
};

struct LocalityStepStats {
  double loss = 0;
  int64_t fovea_labels_used = 0;
  int64_t periphery_labels_used = 0;
};

/// One optimizer step of the options' scheme on `batch`.
LocalityStepStats locality_step(RetinaNets& nets, torch::optim::Optimizer& optimizer, const LocalityBatch& batch,
                                const LocalityOptions& options);

/// Draws the step's batch: `objects` [N] indices into images [M, 1, W, W] and labels [M],
/// peripheral labels from `periphery_labels` [M] (the same tensor as labels in normal use). The
/// fovea's shifts come from their own generator, so the fovea sees the same data under every scheme.
/// No peripheral views for the none and shared schemes (nothing trains on them).
LocalityBatch make_locality_batch(const torch::Tensor& images, const torch::Tensor& labels,
                                  const torch::Tensor& periphery_labels, const torch::Tensor& objects,
                                  const LocalityOptions& options, at::Generator& fovea_generator,
                                  at::Generator& periphery_generator);

/// Test accuracy of every retina location [P] (row-major): each test digit placed in location p's
/// cell (shifts drawn from a fixed seed, the same for every scheme), classified by p's network.
std::vector<double> location_accuracy(RetinaNets& nets, const data::Dataset& test, const LocalityOptions& options,
                                      int64_t batch_size = 1000);

struct LocalityOutcome {
  std::vector<double> accuracy;  // [P], row-major over the retina
  double fovea_accuracy = 0;
  double periphery_accuracy = 0;  // mean over the peripheral locations
  int64_t steps = 0;
  double train_seconds = 0;  // training only, without evaluation
  int64_t fovea_labels_used = 0;
  int64_t periphery_labels_used = 0;
  int64_t num_parameters = 0;
  std::vector<double> epoch_loss;
};

/// Trains a retina with the options' scheme on `train` and measures it on `test`.
/// `periphery_labels` [N] replaces train.labels wherever a peripheral position reads a label
/// (undefined: train.labels); the tests pass garbage there to show which schemes never read them.
LocalityOutcome train_locality(const data::Dataset& train, const data::Dataset& test, const LocalityOptions& options,
                               const torch::Tensor& periphery_labels = {}, RetinaNets* trained = nullptr);

}  // namespace distillery::distill
