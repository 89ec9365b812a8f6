#include "distillery/distill/codistill.h"

#include <spdlog/spdlog.h>

#include <ATen/CPUGeneratorImpl.h>
#include <algorithm>
#include <chrono>
#include <functional>
#include <numeric>
#include <thread>

#include "distillery/distill/loss.h"
#include "distillery/train/autocast.h"
#include "distillery/error.h"
#include "distillery/fault_point.h"
#include "distillery/report/metrics.h"
#include "distillery/system.h"
#include "distillery/train/run.h"

namespace distillery::distill {

CodistillOptions codistill_options_from_config(const Config& config) {
  CodistillOptions options;
  options.peers = config.get_int("codistill.peers");
  options.alpha = config.get_double("codistill.alpha");
  options.mode = config.get_string("codistill.mode");
  options.divergence = config.get_string("codistill.divergence");
  options.temperature = config.get_double("codistill.temperature");
  options.burn_in_steps = config.get_int("codistill.burn_in");
  options.exchange_every = config.get_int("codistill.exchange_every");
  options.disjoint_shards = config.get_string("codistill.shards") == "disjoint";
  options.exchange_timeout_seconds = config.get_double("codistill.timeout");
  // Side by side on every core unless train.threads caps the cores a run may use.
  const int64_t threads = config.get_int("train.threads");
  options.workers = !config.get_bool("codistill.side_by_side") ? 1
                    : threads > 0 ? threads
                                  : std::max<int64_t>(1, std::thread::hardware_concurrency());
  return options;
}

data::Dataset peer_shard(const data::Dataset& train, int64_t rank, int64_t peers, bool disjoint, uint64_t seed) {
  if (!disjoint) return train;
  if (peers > train.size()) throw InputError(fmt::format("codistill.peers: {} peers but only {} training images", peers, train.size()));
  auto generator = at::make_generator<at::CPUGeneratorImpl>(train::mix_seed(seed, 0x5EED));
  auto order = torch::randperm(train.size(), generator, torch::kInt64);
  const int64_t begin = train.size() * rank / peers, end = train.size() * (rank + 1) / peers;
  return train.subset(std::get<0>(order.slice(0, begin, end).sort()));
}

torch::Tensor codistillation_loss(const torch::Tensor& logits, const torch::Tensor& labels,
                                  const std::vector<torch::Tensor>& peer_logits, double alpha,
                                  const CodistillOptions& options) {
  auto loss = torch::nn::functional::cross_entropy(logits, labels);
  if (alpha == 0.0 || peer_logits.empty()) return loss;
  const double t = options.temperature;
  const auto soft = SoftTargetLossOptions().temperature(t).soft_weight(1.0).hard_weight(0.0);
  auto divergence_to = [&](const torch::Tensor& target_logits) {
    if (options.divergence == "mse") return torch::mse_loss(logits, target_logits.detach());
    return soft_target_loss(logits, target_logits, {}, soft);
  };
  torch::Tensor divergence;
  if (options.mode == "consensus") {
    if (options.divergence == "mse") {
      divergence = divergence_to(torch::stack(peer_logits).mean(0));
    } else {
      auto q = torch::stack(peer_logits).detach().div(t).softmax(/*dim=*/2).mean(0);
      divergence = soft_target_loss_from_probs(logits, q, {}, soft);
    }
  } else {
    divergence = divergence_to(peer_logits.front());
    for (size_t j = 1; j < peer_logits.size(); ++j) divergence = divergence + divergence_to(peer_logits[j]);
    divergence = divergence / double(peer_logits.size());
  }
  return loss + alpha * divergence;
}

Peer::Peer(int64_t rank, const nn::ModelSpec& spec, data::Dataset shard, const train::TrainOptions& train_options,
           const CodistillOptions& options, int64_t total_steps)
    : rank_(rank),
      spec_(spec),
      shard_(std::move(shard)),
      train_options_(train_options),
      options_(options),
      total_steps_(total_steps),
      batches_(shard_, train_options.batch_size, {train_options.jitter, train_options.flip}, train::mix_seed(train_options.seed, 100 + rank)) {
  torch::manual_seed(train::mix_seed(train_options.seed, 200 + rank));
  model_ = nn::make_model(spec);
  optimizer_ = train::make_optimizer(*model_, train_options);
  stale_.resize(options.peers);
}

double Peer::step(int64_t step) {
  const auto batch = batches_.batch(step);
  const double lr = train::scheduled_lr(train_options_, step, batches_.steps_per_epoch(), total_steps_);
  for (auto& group : optimizer_->param_groups()) group.options().set_lr(lr);
  model_->train();
  train::clear_gradients(*optimizer_);
  const double alpha = step < options_.burn_in_steps ? 0.0 : options_.alpha;
  std::vector<torch::Tensor> peer_logits;
  torch::Tensor logits;
  {
    train::CpuAutocast autocast(train_options_.precision);  // the forward passes; losses in fp32
    {
      torch::NoGradGuard no_grad;
      for (auto& stale : stale_) {
        if (stale) peer_logits.push_back(stale->forward(batch.images).to(torch::kFloat32));
      }
    }
    logits = model_->forward(batch.images).to(torch::kFloat32);
  }
  auto loss = codistillation_loss(logits, batch.labels, peer_logits, alpha, options_);
  const double value = loss.item<double>();
  if (!std::isfinite(value)) throw std::runtime_error(fmt::format("peer {}: loss is {} at step {}", rank_, value, step));
  loss.backward();
  optimizer_->step();
  model_->after_step();
  return value;
}

torch::Tensor Peer::weights() const {
  std::vector<torch::Tensor> parts;
  for (const auto& p : model_->parameters()) parts.push_back(p.detach().flatten());
  for (const auto& b : model_->buffers()) parts.push_back(b.detach().flatten().to(torch::kFloat32));
  return torch::cat(parts);
}

void Peer::receive(int64_t rank, const torch::Tensor& flat_weights) {
  if (rank == rank_ || !flat_weights.defined()) return;
  auto& stale = stale_.at(rank);
  if (!stale) {
    stale = nn::make_model(spec_);
    stale->eval();
    for (auto& p : stale->parameters()) p.set_requires_grad(false);
  }
  torch::NoGradGuard no_grad;
  int64_t offset = 0;
  auto take = [&](torch::Tensor target) {
    target.copy_(flat_weights.slice(0, offset, offset + target.numel()).view_as(target));
    offset += target.numel();
  };
  for (auto& p : stale->parameters()) take(p);
  for (auto& b : stale->buffers()) take(b);
  TORCH_CHECK(offset == flat_weights.numel(), "peer ", rank, " sent ", flat_weights.numel(), " weights, expected ", offset);
}

nlohmann::json PeerReport::to_json() const {
  nlohmann::json points = nlohmann::json::array();
  for (const auto& [step, errors] : curve) points.push_back({step, errors});
  return {{"rank", rank}, {"shard_size", shard_size}, {"test", test.to_json()}, {"curve", points}};
}

nlohmann::json CodistillOutcome::to_json() const {
  nlohmann::json json = {{"steps", steps},
                         {"parameters", parameters},
                         {"bytes_per_step", bytes_per_step},
                         {"allreduce_bytes_per_step", allreduce_bytes_per_step},
                         {"lost_peers", lost_peers},
                         {"failure", failure},
                         {"side_by_side", side_by_side},
                         {"seconds", seconds}};
  for (const auto& peer : peers) json["peers"].push_back(peer.to_json());
  return json;
}

CodistillOutcome train_peer_group(std::vector<std::unique_ptr<Peer>>& peers, PeerExchange* exchange,
                                  const data::Dataset& test, const CodistillOptions& options,
                                  const train::TrainOptions& train_options, int64_t total_steps, int64_t world_size,
                                  const std::string& run_dir, int64_t fault_exit_step) {
  TORCH_CHECK(!peers.empty(), "train_peer_group: no peers");
  TORCH_CHECK(!exchange || peers.size() == 1, "train_peer_group: a distributed worker holds exactly one peer");
  CodistillOutcome outcome;
  outcome.run_dir = run_dir;
  outcome.steps = total_steps;
  const auto start = std::chrono::steady_clock::now();
  std::vector<PeerReport> reports(peers.size());
  std::vector<std::unique_ptr<report::MetricsWriter>> metrics;
  for (size_t i = 0; i < peers.size(); ++i) {
    reports[i].rank = peers[i]->rank();
    reports[i].shard_size = peers[i]->shard_size();
    if (!run_dir.empty()) {
      metrics.push_back(std::make_unique<report::MetricsWriter>(fmt::format("{}/peer-{}/metrics.jsonl", run_dir, peers[i]->rank())));
    }
  }
  const int64_t steps_per_epoch = peers.front()->steps_per_epoch();
  const int64_t weights_per_peer = peers.front()->weights().numel();
  outcome.parameters = weights_per_peer;
  int64_t exchanges = 0;
  bool side_by_side = options.workers > 1 && peers.size() > 1;
  if (side_by_side && std::any_of(peers.begin(), peers.end(), [](const auto& p) { return p->draws_from_global_generator(); })) {
    spdlog::info("codistill: peers step one after the other: their dropout draws from one shared generator");
    side_by_side = false;
  }
  outcome.side_by_side = side_by_side;
  int64_t step = 0;
  std::vector<double> losses(peers.size());
  std::vector<std::function<void()>> step_tasks;
  for (size_t i = 0; i < peers.size(); ++i) step_tasks.emplace_back([&, i] { losses[i] = peers[i]->step(step); });
  for (; step < total_steps; ++step) {
    if (fault_exit_step > 0 && step == fault_exit_step) {
      spdlog::warn("peer {}: exiting abruptly at step {} (codistill.fault_exit_step, a fault-injection test)", peers.front()->rank(), step);
      std::_Exit(3);
    }
    fault_point("codistill_step", step);
    if (side_by_side) {
      run_side_by_side(step_tasks, static_cast<int>(options.workers));
    } else {
      for (auto& task : step_tasks) task();
    }
    const double loss_sum = std::accumulate(losses.begin(), losses.end(), 0.0);
    if ((step + 1) % options.exchange_every == 0 && step + 1 < total_steps) {
      if (!exchange) {
        std::vector<torch::Tensor> all;  // flatten each peer once, not once per receiver
        for (auto& sender : peers) all.push_back(sender->weights());
        for (auto& receiver : peers) {
          for (size_t j = 0; j < peers.size(); ++j) receiver->receive(peers[j]->rank(), all[j]);
        }
        ++exchanges;
      } else if (!exchange->broken()) {
        auto all = exchange->allgather(peers.front()->weights());
        if (exchange->broken()) {
          spdlog::warn("peer {}: exchange failed at step {} ({}); going on with the last copies of the others",
                       peers.front()->rank(), step + 1, exchange->failure());
          outcome.failure = exchange->failure();
        } else {
          for (int64_t r = 0; r < int64_t(all.size()); ++r) peers.front()->receive(r, all[r]);
          ++exchanges;
        }
      }
    }
    if ((step + 1) % steps_per_epoch == 0 || step + 1 == total_steps) {
      for (size_t i = 0; i < peers.size(); ++i) {
        const auto eval = train::evaluate(peers[i]->model(), test);
        reports[i].curve.emplace_back(step + 1, eval.errors);
        if (!metrics.empty()) {
          metrics[i]->write({{"kind", "epoch"}, {"peer", peers[i]->rank()}, {"epoch", (step + 1) / steps_per_epoch},
                             {"step", step + 1}, {"test_errors", eval.errors}, {"test_accuracy", eval.accuracy}});
        }
      }
      spdlog::info("codistill: step {}/{} mean loss {:.4f}, test errors {}", step + 1, total_steps, loss_sum / peers.size(),
                   fmt::join([&] {
                     std::vector<int64_t> e;
                     for (const auto& r : reports) e.push_back(r.curve.back().second);
                     return e;
                   }(), " "));
    }
  }
  for (size_t i = 0; i < peers.size(); ++i) {
    auto logits = train::predict_logits(peers[i]->model(), test.images);
    reports[i].test = train::score_logits(logits, test.labels, peers[i]->model().num_classes());
    reports[i].test_probs = logits.softmax(/*dim=*/1);
  }
  outcome.peers = std::move(reports);
  // Each exchange brings every peer the weights of the other P - 1; a ring all-reduce of the
  // gradients would move 2 (P - 1) / P times the model every step.
  const double bytes_per_exchange = double(world_size - 1) * weights_per_peer * 4.0;
  outcome.bytes_per_step = bytes_per_exchange * exchanges / double(total_steps);
  outcome.allreduce_bytes_per_step = 2.0 * double(world_size - 1) / double(world_size) * weights_per_peer * 4.0;
  outcome.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return outcome;
}

CodistillOutcome run_codistill(const Config& config) {
  train::apply_thread_config(config);
  train::require_labels(config, "distillery codistill");
  const auto run_data = train::load_run_data(config);
  const auto options = codistill_options_from_config(config);
  auto train_options = train::train_options_from_config(config);
  const auto spec = train::model_spec_from_config(config, run_data.train);
  const std::string run_dir = train::prepare_run_dir(config);
  const int64_t total_steps = codistill_total_steps(run_data.train.size(), options, train_options);
  std::vector<std::unique_ptr<Peer>> peers;
  for (int64_t r = 0; r < options.peers; ++r) {
    auto shard = peer_shard(run_data.train, r, options.peers, options.disjoint_shards, train_options.seed);
    peers.push_back(std::make_unique<Peer>(r, spec, std::move(shard), train_options, options, total_steps));
  }
  spdlog::info("codistill: {} peers of {} on {} images each, alpha {}, exchange every {} steps, {} steps", options.peers,
               spec.kind, peers.front()->shard_size(), options.alpha, options.exchange_every, total_steps);
  auto outcome = train_peer_group(peers, nullptr, run_data.test, options, train_options, total_steps, options.peers, run_dir, 0);
  auto result = outcome.to_json();
  result["group"] = summarize_peers(outcome.peers, run_data.test.labels);
  report::write_file_atomic(run_dir + "/result.json", result.dump(2));
  return outcome;
}

int64_t codistill_total_steps(int64_t train_size, const CodistillOptions& options, const train::TrainOptions& train_options) {
  int64_t largest_shard = train_size;
  if (options.disjoint_shards) {
    largest_shard = 0;
    for (int64_t r = 0; r < options.peers; ++r) {
      largest_shard = std::max(largest_shard, train_size * (r + 1) / options.peers - train_size * r / options.peers);
    }
  }
  return train_options.epochs * ((largest_shard + train_options.batch_size - 1) / train_options.batch_size);
}

nlohmann::json summarize_peers(const std::vector<PeerReport>& peers, const torch::Tensor& test_labels) {
  nlohmann::json summary = {{"peer_errors", nlohmann::json::array()}};
  std::vector<torch::Tensor> probs;
  for (const auto& peer : peers) {
    summary["peer_errors"].push_back(peer.test.errors);
    if (peer.test_probs.defined()) probs.push_back(peer.test_probs);
  }
  if (!probs.empty()) {
    auto mean = torch::stack(probs).mean(0);
    summary["ensemble_errors"] = (mean.argmax(1) != test_labels).sum().item<int64_t>();
  }
  // Churn: the fraction of test images on which two peers predict differently.
  if (probs.size() >= 2) {
    summary["pairwise_disagreement"] = (probs[0].argmax(1) != probs[1].argmax(1)).to(torch::kFloat64).mean().item<double>();
  }
  return summary;
}

}  // namespace distillery::distill
