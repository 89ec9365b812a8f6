#pragma once
// Co-distillation ("distillation via peer group pressure"; Anil et al. 2018, Zhang et al. 2018):
// N peers train at once, each on its own shard, each also matching the predictions of stale copies
// of the others on its own batch. Only weights travel, every K steps.
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "distillery/config.h"
#include "distillery/data/dataset.h"
#include "distillery/nn/classifier.h"
#include "distillery/nn/model_spec.h"
#include "distillery/train/evaluate.h"
#include "distillery/train/trainer.h"

namespace distillery::distill {

struct CodistillOptions {
  int64_t peers = 2;
  double alpha = 1.0;                // weight of the distillation term
  std::string mode = "separate";     // separate: one term per peer | consensus: one term to the mean
  std::string divergence = "kl";     // kl: T^2 KL on softmaxes at T | mse: on logits
  double temperature = 1.0;
  int64_t burn_in_steps = 0;         // alpha is 0 before this step
  int64_t exchange_every = 100;      // K: steps between weight exchanges
  bool disjoint_shards = true;       // false: every peer sees the whole training set
  double exchange_timeout_seconds = 60.0;
  /// Peers of one process step at the same time on this many threads, one peer per thread at a
  /// time, instead of one after the other (1: one after the other).
  int64_t workers = 1;
};

CodistillOptions codistill_options_from_config(const Config& config);

/// Peer `rank`'s data: the rank-th of `peers` disjoint parts of a seeded permutation, or the
/// whole set when not disjoint.
data::Dataset peer_shard(const data::Dataset& train, int64_t rank, int64_t peers, bool disjoint, uint64_t seed);

/// CE(logits, labels) + alpha * D: D is the mean over peers of the divergence between this
/// peer's logits [B, K] and each peer's logits [B, K] (separate), or the divergence to their
/// consensus (consensus: mean probability for kl, mean logit for mse). Peer logits are targets
/// (no gradient flows into them).
torch::Tensor codistillation_loss(const torch::Tensor& logits, const torch::Tensor& labels,
                                  const std::vector<torch::Tensor>& peer_logits, double alpha,
                                  const CodistillOptions& options);

/// One member of the group: its model, optimizer, batches and stale copies of the others.
class Peer {
 public:
  Peer(int64_t rank, const nn::ModelSpec& spec, data::Dataset shard, const train::TrainOptions& train_options,
       const CodistillOptions& options, int64_t total_steps);
  /// One optimizer step on this peer's batch number `step`; returns the loss.
  double step(int64_t step);
  /// Every parameter and buffer, flattened into one float32 vector.
  torch::Tensor weights() const;
  /// Replaces the stale copy of peer `rank` with these flattened weights.
  void receive(int64_t rank, const torch::Tensor& flat_weights);
  nn::ClassifierImpl& model() { return *model_; }
  int64_t rank() const { return rank_; }
  int64_t shard_size() const { return shard_.size(); }
  int64_t steps_per_epoch() const { return batches_.steps_per_epoch(); }
  /// Dropout draws from LibTorch's one global generator: peers stepping side by side would take
  /// its numbers in whatever order their threads reach it, and a run would not repeat.
  bool draws_from_global_generator() const { return spec_.dropout_input > 0 || spec_.dropout_hidden > 0; }

 private:
  int64_t rank_;
  nn::ModelSpec spec_;
  data::Dataset shard_;
  train::TrainOptions train_options_;
  CodistillOptions options_;
  int64_t total_steps_;
  std::shared_ptr<nn::ClassifierImpl> model_;
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  train::BatchStream batches_;
  std::vector<std::shared_ptr<nn::ClassifierImpl>> stale_;  // by rank; null until received, and for self
};

/// Sends this worker's weights and receives every peer's, with a timeout. Implementations: all
/// peers in one process (no transport), or one peer per process over c10d Gloo.
class PeerExchange {
 public:
  virtual ~PeerExchange() = default;
  /// Returns the weights of every rank (index = rank); undefined tensors for peers lost.
  /// Throws nothing on a peer's failure: it marks the exchange broken and returns {}.
  virtual std::vector<torch::Tensor> allgather(const torch::Tensor& own_weights) = 0;
  virtual bool broken() const = 0;
  virtual std::string failure() const = 0;
};

/// Per-peer outcome.
struct PeerReport {
  int64_t rank = 0;
  int64_t shard_size = 0;
  train::EvalResult test;
  std::vector<std::pair<int64_t, int64_t>> curve;  // (step, test errors) at each epoch end
  torch::Tensor test_probs;                          // [N_test, K]
  nlohmann::json to_json() const;
};

struct CodistillOutcome {
  std::string run_dir;
  std::vector<PeerReport> peers;
  int64_t steps = 0;
  int64_t parameters = 0;              // per peer
  double bytes_per_step = 0.0;         // weights received per peer per step (exchange)
  double allreduce_bytes_per_step = 0.0;  // what a ring all-reduce of the gradients would move
  std::vector<int64_t> lost_peers;
  std::string failure;
  bool side_by_side = false;           // the peers of this process stepped at the same time
  double seconds = 0.0;
  nlohmann::json to_json() const;
};

/// Steps of a co-distillation run: train.epochs passes over the largest shard, the same for
/// every peer so that exchanges happen in lockstep.
int64_t codistill_total_steps(int64_t train_size, const CodistillOptions& options, const train::TrainOptions& train_options);

/// Per-peer test errors, the ensemble of the peers (mean probability) and the disagreement
/// between the first two peers.
nlohmann::json summarize_peers(const std::vector<PeerReport>& peers, const torch::Tensor& test_labels);

/// `distillery codistill --peers N`: every peer in this process.
CodistillOutcome run_codistill(const Config& config);

/// The peer loop shared by both modes: trains `peers` (those living in this process) for
/// `total_steps`, exchanging weights every K steps: directly when `exchange` is null (all peers
/// here), else through it (one peer here). Evaluates every peer on `test` at each epoch end and
/// appends to run_dir/peer-<rank>/metrics.jsonl. `fault_exit_step` > 0 makes the process exit
/// abruptly at that step (fault-injection tests).
CodistillOutcome train_peer_group(std::vector<std::unique_ptr<Peer>>& peers, PeerExchange* exchange,
                                  const data::Dataset& test, const CodistillOptions& options,
                                  const train::TrainOptions& train_options, int64_t total_steps,
                                  int64_t world_size, const std::string& run_dir, int64_t fault_exit_step);

}  // namespace distillery::distill
