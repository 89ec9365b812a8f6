#pragma once
// The training loop shared by every kind of training in distillery: plain supervised training,
// distillation and co-distillation differ only in their Objective.
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <atomic>
#include <functional>
#include <optional>
#include <string>

#include "distillery/config.h"
#include "distillery/data/augment.h"
#include "distillery/data/dataset.h"
#include "distillery/nn/classifier.h"
#include "distillery/nn/model_spec.h"
#include "distillery/train/evaluate.h"

namespace distillery::train {

struct TrainOptions {
  int64_t epochs = 10;
  int64_t batch_size = 100;
  std::string optimizer = "sgd";  // sgd | adam
  double lr = 0.1;
  double momentum = 0.9;
  double weight_decay = 0.0;
  std::string schedule = "cosine";  // constant | cosine | exponential
  double lr_decay = 0.95;           // per epoch, exponential schedule
  int64_t jitter = 0;               // random shifts of up to N pixels
  bool flip = false;                // random left-right flips
  uint64_t seed = 1;
  int64_t checkpoint_every = 0;     // steps; 0: at each epoch end only
  std::string run_dir;              // empty: no checkpoint, no metrics file
  bool resume = true;               // continue from run_dir/checkpoint.pt when present
  int64_t stop_after_step = 0;      // > 0: checkpoint and return once this step is reached
  double log_every_seconds = 10.0;
  std::string label = "train";
  bool skip_nonfinite = false;      // a NaN/Inf loss skips its batch instead of stopping the run
  /// "bf16": the training step's matrix products (model forward and backward, a teacher's
  /// forward) run in bfloat16 under LibTorch's CPU autocast; weights, optimizer state, losses and
  /// evaluation stay fp32. About 2x faster on CPUs with AVX512-BF16 or AMX.
  std::string precision = "fp32";
  /// When set and it becomes true (for example from a SIGINT handler), the run checkpoints and
  /// returns with completed = false.
  const std::atomic<bool>* stop_requested = nullptr;
};

/// Reads train.*, data.jitter and data.flip from a config.
TrainOptions train_options_from_config(const Config& config);

/// One training batch as the objective sees it: the images are already augmented, and
/// `indices` (into the training set) and `views` [B] say which image and which of its augmented
/// views (data::Augmentation) each is.
struct Batch {
  torch::Tensor images, labels, indices, views;
  int64_t step = -1;  // the training step it was drawn for (-1: not from a BatchStream)
};

/// The batches of a run: each epoch's order is a function of (seed, epoch) and each step's
/// augmentation of (seed, step), so any step's batch can be rebuilt exactly (resume,
/// co-distillation peers).
class BatchStream {
 public:
  BatchStream(const data::Dataset& dataset, int64_t batch_size, const data::Augmentation& augmentation, uint64_t seed);
  Batch batch(int64_t step);
  int64_t steps_per_epoch() const { return steps_per_epoch_; }

 private:
  const data::Dataset& dataset_;
  int64_t batch_size_;
  data::Augmentation augmentation_;
  int64_t steps_per_epoch_;
  uint64_t seed_;
  torch::Tensor order_;
  int64_t order_epoch_ = -1;
};

/// SGD with momentum or Adam over the model's parameters, as the options say.
std::unique_ptr<torch::optim::Optimizer> make_optimizer(torch::nn::Module& model, const TrainOptions& options);

/// Drops every parameter's gradient before a step (LibTorch 1.13's Optimizer::zero_grad() zeroes
/// them in place): backward then hands each parameter its gradient without an extra add pass. As
/// with PyTorch's set_to_none, a parameter that gets no gradient in a step is then not updated
/// (momentum included); the GLOM and locality loops keep zero_grad() so that their measured runs
/// stay as they were.
void clear_gradients(torch::optim::Optimizer& optimizer);

/// The loss of one batch given the model's logits on it.
using Objective = std::function<torch::Tensor(const Batch& batch, const torch::Tensor& logits)>;

/// Cross-entropy with the hard labels.
torch::Tensor cross_entropy_objective(const Batch& batch, const torch::Tensor& logits);

/// The loss of one batch computed from the model itself, for models whose training loss needs
/// more than the logits (a CapsNet's margin loss on capsule lengths plus its reconstruction).
using StepLoss = std::function<torch::Tensor(nn::ClassifierImpl& model, const Batch& batch)>;

struct TrainResult {
  int64_t steps = 0;
  bool completed = false;  // false when stopped early (stop_after_step or stop_requested)
  int64_t skipped_batches = 0;  // batches skipped for a non-finite loss
  double seconds = 0.0;
  double samples_per_second = 0.0;
  std::optional<EvalResult> final_eval;  // on eval_set, when given
};

/// Trains `model` on `train_set`. Each epoch's order is a function of (seed, epoch) and each
/// step's jitter of (seed, step); dropout draws from the global generator, whose state is saved
/// in the checkpoint: so a stopped and resumed run ends with exactly the same weights.
/// With a run_dir, appends one record per epoch to run_dir/metrics.jsonl and keeps
/// run_dir/checkpoint.pt up to date; `checkpoint_extra` is stored in it.
TrainResult fit(nn::ClassifierImpl& model, const nn::ModelSpec& spec, const data::Dataset& train_set,
                const data::Dataset* eval_set, const Objective& objective, const TrainOptions& options,
                const nlohmann::json& checkpoint_extra = nlohmann::json::object());

/// The same loop with the batch loss computed by `step_loss` from the model (fit above is this
/// with step_loss = objective(batch, model.forward(batch.images))).
TrainResult fit_with_step_loss(nn::ClassifierImpl& model, const nn::ModelSpec& spec, const data::Dataset& train_set,
                               const data::Dataset* eval_set, const StepLoss& step_loss, const TrainOptions& options,
                               const nlohmann::json& checkpoint_extra = nlohmann::json::object());

/// The learning rate at `step` of `total_steps`.
double scheduled_lr(const TrainOptions& options, int64_t step, int64_t steps_per_epoch, int64_t total_steps);

/// A 64-bit mix of two numbers, for deriving independent seeds.
uint64_t mix_seed(uint64_t seed, uint64_t stream);

}  // namespace distillery::train
