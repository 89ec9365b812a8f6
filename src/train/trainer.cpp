#include "distillery/train/trainer.h"

#include <spdlog/spdlog.h>

#include <ATen/CPUGeneratorImpl.h>
#include <chrono>
#include <cmath>
#include <filesystem>

#include "distillery/data/augment.h"
#include "distillery/train/autocast.h"
#include "distillery/error.h"
#include "distillery/fault_point.h"
#include "distillery/report/metrics.h"
#include "distillery/report/progress.h"
#include "distillery/train/checkpoint.h"
#include "distillery/train/fused_sgd.h"

namespace distillery::train {

TrainOptions train_options_from_config(const Config& config) {
  TrainOptions options;
  options.epochs = config.get_int("train.epochs");
  options.batch_size = config.get_int("train.batch_size");
  options.optimizer = config.get_string("train.optimizer");
  options.lr = config.get_double("train.lr");
  options.momentum = config.get_double("train.momentum");
  options.weight_decay = config.get_double("train.weight_decay");
  options.schedule = config.get_string("train.schedule");
  options.lr_decay = config.get_double("train.lr_decay");
  options.jitter = config.get_int("data.jitter");
  options.flip = config.get_bool("data.flip");
  options.seed = static_cast<uint64_t>(config.get_int("train.seed"));
  options.checkpoint_every = config.get_int("train.checkpoint_every");
  options.resume = config.get_bool("run.resume");
  options.log_every_seconds = config.get_double("run.log_every_seconds");
  options.skip_nonfinite = config.get_string("train.on_nonfinite") == "skip";
  options.precision = config.get_string("train.precision");
  return options;
}



torch::Tensor cross_entropy_objective(const Batch& batch, const torch::Tensor& logits) {
  return torch::nn::functional::cross_entropy(logits, batch.labels);
}

uint64_t mix_seed(uint64_t seed, uint64_t stream) {
  uint64_t z = seed + 0x9E3779B97F4A7C15ull * (stream + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

double scheduled_lr(const TrainOptions& options, int64_t step, int64_t steps_per_epoch, int64_t total_steps) {
  if (options.schedule == "cosine") {
    return options.lr * 0.5 * (1.0 + std::cos(M_PI * double(step) / double(std::max<int64_t>(total_steps, 1))));
  }
  if (options.schedule == "exponential") return options.lr * std::pow(options.lr_decay, double(step / steps_per_epoch));
  return options.lr;
}

BatchStream::BatchStream(const data::Dataset& dataset, int64_t batch_size, const data::Augmentation& augmentation,
                         uint64_t seed)
    : dataset_(dataset),
      batch_size_(batch_size),
      augmentation_(augmentation),
      steps_per_epoch_((dataset.size() + batch_size - 1) / batch_size),
      seed_(seed) {}

Batch BatchStream::batch(int64_t step) {
  const int64_t n = dataset_.size();
  const int64_t epoch = step / steps_per_epoch_;
  if (epoch != order_epoch_) {
    auto generator = at::make_generator<at::CPUGeneratorImpl>(mix_seed(seed_, 1000 + epoch));
    order_ = torch::randperm(n, generator, torch::kInt64);
    order_epoch_ = epoch;
  }
  const int64_t begin = (step % steps_per_epoch_) * batch_size_;
  Batch batch;
  batch.step = step;
  batch.indices = order_.slice(0, begin, std::min(begin + batch_size_, n));
  batch.labels = dataset_.labels.index_select(0, batch.indices);
  batch.images = data::model_input(dataset_.images.index_select(0, batch.indices));
  auto generator = at::make_generator<at::CPUGeneratorImpl>(mix_seed(seed_, 1ull << 40 | uint64_t(step)));
  auto augmented = data::augment(batch.images, augmentation_, generator);
  batch.images = augmented.images;
  batch.views = augmented.views;
  return batch;
}

std::unique_ptr<torch::optim::Optimizer> make_optimizer(torch::nn::Module& model, const TrainOptions& options) {
  if (options.optimizer == "adam") {
    return std::make_unique<torch::optim::Adam>(model.parameters(),
                                                torch::optim::AdamOptions(options.lr).weight_decay(options.weight_decay));
  }
  if (options.optimizer == "sgd") {
    return std::make_unique<FusedSGD>(
        model.parameters(), torch::optim::SGDOptions(options.lr).momentum(options.momentum).weight_decay(options.weight_decay));
  }
  throw InputError("train.optimizer: unknown optimizer '" + options.optimizer + "' (known: sgd, adam)");
}

void clear_gradients(torch::optim::Optimizer& optimizer) {
  for (auto& group : optimizer.param_groups()) {
    for (auto& p : group.params()) p.mutable_grad() = torch::Tensor();
  }
}

TrainResult fit(nn::ClassifierImpl& model, const nn::ModelSpec& spec, const data::Dataset& train_set,
                const data::Dataset* eval_set, const Objective& objective, const TrainOptions& options,
                const nlohmann::json& checkpoint_extra) {
  const StepLoss step_loss = [&objective](nn::ClassifierImpl& m, const Batch& batch) {
    return objective(batch, m.forward(batch.images).to(torch::kFloat32));  // losses in fp32 under bf16 autocast
  };
  return fit_with_step_loss(model, spec, train_set, eval_set, step_loss, options, checkpoint_extra);
}

TrainResult fit_with_step_loss(nn::ClassifierImpl& model, const nn::ModelSpec& spec, const data::Dataset& train_set,
                               const data::Dataset* eval_set, const StepLoss& step_loss, const TrainOptions& options,
                               const nlohmann::json& checkpoint_extra) {
  if (train_set.size() == 0) throw InputError("training set is empty (check data.keep_classes / data.omit_classes)");
  const int64_t n = train_set.size();
  const int64_t steps_per_epoch = (n + options.batch_size - 1) / options.batch_size;
  const int64_t total_steps = steps_per_epoch * options.epochs;
  auto optimizer = make_optimizer(model, options);

  const std::string checkpoint_path = options.run_dir.empty() ? "" : options.run_dir + "/checkpoint.pt";
  std::unique_ptr<report::MetricsWriter> metrics;
  if (!options.run_dir.empty()) metrics = std::make_unique<report::MetricsWriter>(options.run_dir + "/metrics.jsonl");

  int64_t step = 0;
  if (!checkpoint_path.empty() && options.resume && std::filesystem::exists(checkpoint_path)) {
    step = load_checkpoint_into(checkpoint_path, model, optimizer.get()).step;
    spdlog::info("{}: resuming from {} at step {} of {}", options.label, checkpoint_path, step, total_steps);
  } else {
    at::Generator global = at::detail::getDefaultCPUGenerator();  // shares the global state (dropout)
    global.set_current_seed(mix_seed(options.seed, 0xD0));
  }
  auto save = [&](int64_t at_step) {
    if (checkpoint_path.empty()) return;
    save_checkpoint(checkpoint_path, model, CheckpointMeta{spec, at_step, checkpoint_extra}, optimizer.get());
  };

  TrainResult result;
  const auto start = std::chrono::steady_clock::now();
  report::Progress progress(options.label, (total_steps - step) * options.batch_size, options.log_every_seconds);
  model.train();
  double epoch_loss = 0.0, train_seconds = 0.0;
  int64_t epoch_batches = 0, trained_samples = 0;
  BatchStream batches(train_set, options.batch_size, {options.jitter, options.flip}, options.seed);
  for (; step < total_steps; ++step) {
    const bool interrupted = options.stop_requested && options.stop_requested->load();
    if ((options.stop_after_step > 0 && step >= options.stop_after_step) || interrupted) {
      if (interrupted) spdlog::warn("{}: stopping at step {}; the checkpoint lets the same command resume", options.label, step);
      save(step);
      progress.finish();
      result.steps = step;
      return result;
    }
    fault_point("train_step", step);
    const int64_t epoch = step / steps_per_epoch;
    const auto step_start = std::chrono::steady_clock::now();
    const Batch batch = batches.batch(step);

    const double lr = scheduled_lr(options, step, steps_per_epoch, total_steps);
    for (auto& group : optimizer->param_groups()) group.options().set_lr(lr);
    clear_gradients(*optimizer);
    torch::Tensor loss;
    {
      CpuAutocast autocast(options.precision);
      loss = step_loss(model, batch);
    }
    const double loss_value = loss.item<double>();
    if (!std::isfinite(loss_value) && options.skip_nonfinite) {
      spdlog::warn("{}: loss is {} at step {}; batch skipped", options.label, loss_value, step);
      ++result.skipped_batches;
      continue;
    }
    if (!std::isfinite(loss_value)) {
      throw std::runtime_error(fmt::format("{}: loss is {} at step {} (epoch {}); stopped, the last good checkpoint is kept{}",
                                           options.label, loss_value, step, epoch + 1,
                                           checkpoint_path.empty() ? "" : " in " + checkpoint_path));
    }
    loss.backward();
    optimizer->step();
    model.after_step();
    epoch_loss += loss_value;
    ++epoch_batches;
    // Throughput counts the steps only: evaluation and checkpoints are timed apart.
    train_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - step_start).count();
    trained_samples += batch.indices.size(0);
    progress.advance(batch.indices.size(0), fmt::format("epoch {}/{} loss {:.4f}", epoch + 1, options.epochs, loss_value));

    const bool epoch_end = (step + 1) % steps_per_epoch == 0;
    if (epoch_end || (options.checkpoint_every > 0 && (step + 1) % options.checkpoint_every == 0)) save(step + 1);
    if (epoch_end) {
      nlohmann::json record = {{"kind", "epoch"}, {"label", options.label}, {"epoch", epoch + 1}, {"step", step + 1},
                               {"loss", epoch_loss / std::max<int64_t>(epoch_batches, 1)}, {"lr", lr},
                               {"samples_per_second", trained_samples / std::max(train_seconds, 1e-9)}};
      if (eval_set && eval_set->size() > 0) {
        result.final_eval = evaluate(model, *eval_set);  // the last epoch's is the final one
        record["test_errors"] = result.final_eval->errors;
        record["test_accuracy"] = result.final_eval->accuracy;
        model.train();
      }
      if (metrics) metrics->write(record);
      epoch_loss = 0.0;
      epoch_batches = 0;
    }
  }
  progress.finish();
  result.steps = step;
  result.completed = true;
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  result.samples_per_second = trained_samples / std::max(train_seconds, 1e-9);
  model.train();
  return result;
}

}  // namespace distillery::train
