#include "distillery/distill/locality.h"

#include <ATen/CPUGeneratorImpl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <limits>

#include "distillery/data/augment.h"
#include "distillery/distill/loss.h"
#include "distillery/error.h"
#include "distillery/nn/model_spec.h"
#include "distillery/train/trainer.h"

namespace distillery::distill {
namespace F = torch::nn::functional;

LocalityScheme parse_locality_scheme(const std::string& name) {
  if (name == "none") return LocalityScheme::None;
  if (name == "saccade") return LocalityScheme::Saccade;
  if (name == "consensus") return LocalityScheme::Consensus;
  if (name == "shared") return LocalityScheme::Shared;
  if (name == "supervised") return LocalityScheme::Supervised;
  throw InputError("locality.scheme = '" + name + "' is not one of none|saccade|consensus|shared|supervised");
}

std::string locality_scheme_name(LocalityScheme scheme) {
  switch (scheme) {
    case LocalityScheme::None: return "none";
    case LocalityScheme::Saccade: return "saccade";
    case LocalityScheme::Consensus: return "consensus";
    case LocalityScheme::Shared: return "shared";
    case LocalityScheme::Supervised: return "supervised";
  }
  return "?";
}

char locality_scheme_letter(LocalityScheme scheme) { return static_cast<char>('a' + static_cast<int>(scheme)); }

LocalityOptions locality_options_from_config(const Config& config) {
  LocalityOptions options;
  options.retina(data::RetinaOptions()
                     .grid(config.get_int("locality.grid"))
                     .jitter(config.get_int("locality.jitter"))
                     .foveate(config.get_bool("locality.foveate"))
                     .blur_sigma(config.get_double("locality.blur_sigma"))
                     .subsample(config.get_int("locality.subsample")));
  options.scheme(parse_locality_scheme(config.get_string("locality.scheme")))
      .hidden(config.get_int_list("model.hidden"))
      .epochs(config.get_int("train.epochs"))
      .batch_per_location(config.get_int("locality.batch_per_location"))
      .lr(config.get_double("train.lr"))
      .temperature(config.get_double("locality.temperature"))
      .consensus_views(config.get_int("locality.consensus_views"))
      .attention_beta(config.get_double("locality.attention_beta"))
      .seed(static_cast<uint64_t>(config.get_int("train.seed")));
  data::check_retina_options(options.retina());
  const int64_t peripheral = data::retina_locations(options.retina()) - 1;
  if (options.consensus_views() < 1 || options.consensus_views() > peripheral) {
    throw InputError(fmt::format("locality.consensus_views = {}: must be in [1, {}] (the peripheral locations)",
                                 options.consensus_views(), peripheral));
  }
  return options;
}

RetinaNetsImpl::RetinaNetsImpl(const LocalityOptions& options) : options_(options) {
  const auto& retina = options_.retina();
  TORCH_CHECK(data::retina_locations(retina) >= 2, "RetinaNets: a retina needs a periphery (grid >= 3)");
  const int64_t window = retina.window(), side = data::peripheral_side(retina);
  fovea = register_module("fovea", nn::LocationMLP(nn::LocationMLPOptions()
                                                       .locations(1)
                                                       .in_features(window * window)
                                                       .hidden(options_.hidden())
                                                       .num_classes(options_.num_classes())));
  if (options_.scheme() != LocalityScheme::Shared) {
    periphery = register_module("periphery", nn::LocationMLP(nn::LocationMLPOptions()
                                                                 .locations(data::retina_locations(retina) - 1)
                                                                 .in_features(side * side)
                                                                 .hidden(options_.hidden())
                                                                 .num_classes(options_.num_classes())));
  }
}

torch::Tensor RetinaNetsImpl::fovea_logits(const torch::Tensor& views) {
  const int64_t w = options_.retina().window();
  TORCH_CHECK(views.dim() == 3 && views.size(1) == w && views.size(2) == w, "RetinaNets::fovea_logits: expected [B, ", w,
              ", ", w, "], got ", views.sizes());
  return fovea->forward(views.unsqueeze(0)).squeeze(0);
}

torch::Tensor RetinaNetsImpl::periphery_logits(const torch::Tensor& views) {
  const int64_t peripheral = data::retina_locations(options_.retina()) - 1;
  const int64_t side = data::peripheral_side(options_.retina());
  TORCH_CHECK(views.dim() == 4 && views.size(0) == peripheral && views.size(2) == side && views.size(3) == side,
              "RetinaNets::periphery_logits: expected [", peripheral, ", B, ", side, ", ", side, "], got ", views.sizes());
  if (periphery) return periphery->forward(views);
  // One network everywhere: resample to the fovea's resolution and run all locations as one batch.
  const int64_t batch = views.size(1);
  auto full = data::upsample_view(views, options_.retina()).reshape({1, peripheral * batch, -1});
  return fovea->forward(full).view({peripheral, batch, -1});
}

int64_t peripheral_location(int64_t index, const data::RetinaOptions& retina) {
  return index < data::fovea_location(retina) ? index : index + 1;
}

torch::Tensor consensus_targets(const torch::Tensor& logits, double temperature, double beta) {
  TORCH_CHECK(logits.dim() == 3 && logits.size(0) >= 2, "consensus_targets: expected logits [V >= 2, B, K], got ",
              logits.sizes());
  torch::NoGradGuard no_grad;
  const int64_t views = logits.size(0);
  auto probs = torch::softmax(logits.detach() / temperature, /*dim=*/-1);            // [V, B, K]
  auto agreement = torch::einsum("vbk,ubk->bvu", {probs, probs});                    // [B, V, V]
  auto self = torch::eye(views, logits.options().dtype(torch::kBool));
  auto scores = (beta * agreement).masked_fill(self, -std::numeric_limits<double>::infinity());
  auto attention = torch::softmax(scores, /*dim=*/-1);                                // [B, V, V], rows sum to 1
  return torch::einsum("bvu,ubk->vbk", {attention, probs});
}

LocalityBatch make_locality_batch(const torch::Tensor& images, const torch::Tensor& labels,
                                  const torch::Tensor& periphery_labels, const torch::Tensor& objects,
                                  const LocalityOptions& options, at::Generator& fovea_generator,
                                  at::Generator& periphery_generator) {
  const auto& retina = options.retina();
  const int64_t peripheral = data::retina_locations(retina) - 1, b = options.batch_per_location();
  const int64_t n = peripheral * b, w = retina.window();
  TORCH_CHECK(objects.dim() == 1 && objects.size(0) == n, "make_locality_batch: expected objects [", n, "], got ",
              objects.sizes());
  TORCH_CHECK(images.dim() == 4 && images.size(1) == 1 && images.size(2) == w && images.size(3) == w,
              "make_locality_batch: expected images [M, 1, ", w, ", ", w, "], got ", images.sizes());
  LocalityBatch batch;
  auto digits = images.index_select(0, objects);
  batch.fovea_views = data::own_window(digits, data::random_shifts(n, retina.jitter(), fovea_generator), retina);
  batch.fovea_labels = labels.index_select(0, objects);
  batch.periphery_labels = periphery_labels.index_select(0, objects).view({peripheral, b});
  const auto scheme = options.scheme();
  if (scheme == LocalityScheme::None || scheme == LocalityScheme::Shared) return batch;
  const int64_t views = scheme == LocalityScheme::Consensus ? options.consensus_views() : 1;
  batch.rolls = {0};
  if (views > 1) {
    auto others = torch::randperm(peripheral - 1, periphery_generator, torch::kInt64) + 1;
    for (int64_t v = 1; v < views; ++v) batch.rolls.push_back(others[v - 1].item<int64_t>());
  }
  std::vector<torch::Tensor> seen;
  for (int64_t v = 0; v < views; ++v) {
    auto window = data::own_window(digits, data::random_shifts(n, retina.jitter(), periphery_generator), retina);
    seen.push_back(data::peripheral_view(window.view({peripheral, b, w, w}), retina));
  }
  batch.periphery_views = torch::stack(seen);
  return batch;
}

LocalityStepStats locality_step(RetinaNets& nets, torch::optim::Optimizer& optimizer, const LocalityBatch& batch,
                                const LocalityOptions& options) {
  nets->train();
  LocalityStepStats stats;
  auto fovea_logits = nets->fovea_logits(batch.fovea_views);  // [N, K]
  auto loss = F::cross_entropy(fovea_logits, batch.fovea_labels);
  stats.fovea_labels_used = batch.fovea_labels.numel();
  const auto soft = SoftTargetLossOptions().temperature(options.temperature());
  switch (options.scheme()) {
    case LocalityScheme::None:
    case LocalityScheme::Shared:
      break;
    case LocalityScheme::Supervised: {
      auto logits = nets->periphery_logits(batch.periphery_views[0]);  // [P - 1, b, K]
      loss = loss + F::cross_entropy(logits.flatten(0, 1), batch.periphery_labels.flatten());
      stats.periphery_labels_used = batch.periphery_labels.numel();
      break;
    }
    case LocalityScheme::Saccade: {
      // Group g was seen at peripheral location g, then fixated: the fovea's output is its teacher.
      auto logits = nets->periphery_logits(batch.periphery_views[0]);
      loss = loss + soft_target_loss(logits.flatten(0, 1), fovea_logits.detach(), torch::Tensor(), soft);
      break;
    }
    case LocalityScheme::Consensus: {
      // Every object is seen by the fovea and by V peripheral locations (view v of group g at
      // location g + roll_v); each peripheral location learns the consensus of the other V.
      std::vector<torch::Tensor> by_object{fovea_logits.detach()};
      for (size_t v = 0; v < batch.rolls.size(); ++v) {
        const int64_t roll = batch.rolls[v];
        auto logits = nets->periphery_logits(torch::roll(batch.periphery_views[v], roll, /*dims=*/0));
        by_object.push_back(torch::roll(logits, -roll, /*dims=*/0).flatten(0, 1));  // back to object order [N, K]
      }
      auto targets = consensus_targets(torch::stack(by_object), options.temperature(), options.attention_beta());
      torch::Tensor consensus_loss;
      for (size_t v = 1; v < by_object.size(); ++v) {
        auto term = soft_target_loss_from_probs(by_object[v], targets[v], torch::Tensor(), soft);
        consensus_loss = consensus_loss.defined() ? consensus_loss + term : term;
      }
      loss = loss + consensus_loss / static_cast<double>(batch.rolls.size());
      break;
    }
  }
  optimizer.zero_grad();
  loss.backward();
  optimizer.step();
  stats.loss = loss.item<double>();
  return stats;
}

std::vector<double> location_accuracy(RetinaNets& nets, const data::Dataset& test, const LocalityOptions& options,
                                      int64_t batch_size) {
  const auto& retina = options.retina();
  const int64_t locations = data::retina_locations(retina), peripheral = locations - 1, n = test.size();
  TORCH_CHECK(n > 0, "location_accuracy: empty test set");
  torch::NoGradGuard no_grad;
  nets->eval();
  // Fixed test shifts, the same for every scheme and seed: paired comparisons.
  auto generator = at::make_generator<at::CPUGeneratorImpl>(20211129);
  auto fovea_shifts = data::random_shifts(n, retina.jitter(), generator);
  auto periphery_shifts = data::random_shifts(peripheral * n, retina.jitter(), generator).view({peripheral, n, 2});
  torch::Tensor fovea_correct = torch::zeros({}, torch::kInt64);
  torch::Tensor periphery_correct = torch::zeros({peripheral}, torch::kInt64);
  for (int64_t start = 0; start < n; start += batch_size) {
    const int64_t end = std::min(n, start + batch_size), m = end - start;
    auto digits = test.images.slice(0, start, end);
    auto labels = test.labels.slice(0, start, end);
    auto fovea = nets->fovea_logits(data::own_window(digits, fovea_shifts.slice(0, start, end), retina));
    fovea_correct += (fovea.argmax(1) == labels).sum();
    auto repeated = digits.unsqueeze(0).expand({peripheral, m, 1, retina.window(), retina.window()}).reshape(
        {peripheral * m, 1, retina.window(), retina.window()});
    auto windows = data::own_window(repeated, periphery_shifts.slice(1, start, end).reshape({peripheral * m, 2}), retina);
    auto views = data::peripheral_view(windows.view({peripheral, m, retina.window(), retina.window()}), retina);
    auto logits = nets->periphery_logits(views);  // [P - 1, m, K]
    periphery_correct += (logits.argmax(2) == labels.unsqueeze(0)).sum(/*dim=*/1);
  }
  std::vector<double> accuracy(locations);
  accuracy[data::fovea_location(retina)] = fovea_correct.item<double>() / n;
  for (int64_t i = 0; i < peripheral; ++i) {
    accuracy[peripheral_location(i, retina)] = periphery_correct[i].item<double>() / n;
  }
  return accuracy;
}

LocalityOutcome train_locality(const data::Dataset& train, const data::Dataset& test, const LocalityOptions& options,
                               const torch::Tensor& periphery_labels, RetinaNets* trained) {
  data::check_retina_options(options.retina());
  const auto& retina = options.retina();
  const int64_t peripheral = data::retina_locations(retina) - 1;
  const int64_t objects_per_step = peripheral * options.batch_per_location();
  const int64_t steps_per_epoch = train.size() / objects_per_step;
  if (steps_per_epoch < 1) {
    throw InputError(fmt::format("locality: {} training images are fewer than one step's {} objects "
                                 "({} peripheral locations x locality.batch_per_location {})",
                                 train.size(), objects_per_step, peripheral, options.batch_per_location()));
  }
  const auto peripheral_labels = periphery_labels.defined() ? periphery_labels : train.labels;
  TORCH_CHECK(peripheral_labels.dim() == 1 && peripheral_labels.size(0) == train.size(),
              "train_locality: expected periphery_labels [", train.size(), "], got ", peripheral_labels.sizes());

  torch::manual_seed(options.seed());  // the fovea is built first: the same initial fovea under every scheme
  RetinaNets nets(options);
  std::vector<torch::Tensor> trainable = nets->fovea->parameters();
  const auto scheme = options.scheme();
  if (scheme == LocalityScheme::Saccade || scheme == LocalityScheme::Consensus || scheme == LocalityScheme::Supervised) {
    for (const auto& p : nets->periphery->parameters()) trainable.push_back(p);
  }
  torch::optim::Adam optimizer(trainable, torch::optim::AdamOptions(options.lr()));

  auto order_generator = at::make_generator<at::CPUGeneratorImpl>(train::mix_seed(options.seed(), 1));
  auto fovea_generator = at::make_generator<at::CPUGeneratorImpl>(train::mix_seed(options.seed(), 2));
  auto periphery_generator = at::make_generator<at::CPUGeneratorImpl>(train::mix_seed(options.seed(), 3));
  LocalityOutcome outcome;
  const auto start = std::chrono::steady_clock::now();
  for (int64_t epoch = 0; epoch < options.epochs(); ++epoch) {
    auto order = torch::randperm(train.size(), order_generator, torch::kInt64);
    double loss_sum = 0;
    for (int64_t s = 0; s < steps_per_epoch; ++s) {
      auto objects = order.slice(0, s * objects_per_step, (s + 1) * objects_per_step);
      const auto batch = make_locality_batch(train.images, train.labels, peripheral_labels, objects, options,
                                             fovea_generator, periphery_generator);
      const auto stats = locality_step(nets, optimizer, batch, options);
      loss_sum += stats.loss;
      outcome.fovea_labels_used += stats.fovea_labels_used;
      outcome.periphery_labels_used += stats.periphery_labels_used;
      ++outcome.steps;
    }
    outcome.epoch_loss.push_back(loss_sum / steps_per_epoch);
    spdlog::info("locality {} ({}): epoch {}/{}, loss {:.4f}", locality_scheme_name(scheme),
                 retina.foveate() ? "foveated" : "uniform", epoch + 1, options.epochs(), outcome.epoch_loss.back());
  }
  outcome.train_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  outcome.accuracy = location_accuracy(nets, test, options);
  outcome.fovea_accuracy = outcome.accuracy[data::fovea_location(retina)];
  for (int64_t i = 0; i < peripheral; ++i) outcome.periphery_accuracy += outcome.accuracy[peripheral_location(i, retina)];
  outcome.periphery_accuracy /= peripheral;
  outcome.num_parameters = nn::count_parameters(*nets);
  if (trained) *trained = nets;
  return outcome;
}

}  // namespace distillery::distill
