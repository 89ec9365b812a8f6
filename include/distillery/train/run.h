#pragma once
// A whole training run from a config: data, model, run folder, training, final evaluation.
#include <nlohmann/json.hpp>

#include <memory>
#include <optional>
#include <string>

#include "distillery/config.h"
#include "distillery/data/dataset.h"
#include "distillery/nn/classifier.h"
#include "distillery/nn/model_spec.h"
#include "distillery/train/trainer.h"

namespace distillery::train {

/// The data a config asks for: the training set (after limits, class filters and the validation
/// split), the validation set (the held-out part, all classes) and the test set.
struct RunData {
  data::Dataset train, validation, test;
  std::vector<std::string> skipped_images;  ///< "path: why" for each undecodable image skipped
};
RunData load_run_data(const Config& config);

/// InputError unless the training images carry labels: `command` needs them (data.labels: none is
/// for distillation transfer sets without a hard-label term).
void require_labels(const Config& config, const std::string& command);

/// Adds what result.json says about the data: the class names of an image folder and the images
/// skipped as undecodable (their count and the first 100).
void add_data_summary(nlohmann::json& result, const RunData& run_data);

/// `distillery data`: what the config's data is, split by split (images, shape, dtype, MiB, images
/// per class) with the files skipped, as JSON.
nlohmann::json describe_run_data(const RunData& run_data);

/// Writes each non-empty split as a tensor file DIR/<split>.pt (data/tensor_file.h); returns the paths.
std::vector<std::string> write_run_data(const RunData& run_data, const std::string& dir);

nn::ModelSpec model_spec_from_config(const Config& config, const data::Dataset& like);

/// The end of every run: writes the trained model as TorchScript at run_dir/`torchscript_name`
/// (nn/torchscript_export.h) when its architecture has an export, and records in `result` that
/// file's name ("torchscript", "" without one) and what the model costs to run ("cost",
/// train/model_cost.h, on images of `image_shape`, with the size of the file that holds it).
void export_and_measure_model(nlohmann::json& result, nn::ClassifierImpl& model, const nn::ModelSpec& spec, const std::string& run_dir,
                              const std::string& torchscript_name, torch::IntArrayRef image_shape);

/// run.dir/name, created, with the resolved config saved in it as config.yaml. When the folder
/// already holds a checkpoint that run.resume would continue, its config.yaml must match `config`
/// (train.epochs may grow: that extends a run); otherwise InputError names the first key that
/// differs, so that two configs never mix in one run.
std::string prepare_run_dir(const Config& config);

/// The result.json of a finished run in run.dir/name, if there is one and it was made with this
/// config; nothing if the folder holds no finished run. Experiments use it to resume a study
/// without retraining what is done. InputError if the finished run was made with another config
/// (names the key and both values). Keys that do not change results are not compared: run.*,
/// train.threads, data.dir.
std::optional<nlohmann::json> finished_run(const Config& config);

struct RunOutcome {
  std::string run_dir;
  std::shared_ptr<nn::ClassifierImpl> model;
  TrainResult train;
  EvalResult test;
  int64_t num_parameters = 0;
};

/// `distillery train`: trains the configured model and writes the run folder
/// (config.yaml, metrics.jsonl, checkpoint.pt, result.json).
/// `stop_requested`, when given, ends the run early with a checkpoint (see TrainOptions).
RunOutcome run_training(const Config& config, const std::atomic<bool>* stop_requested = nullptr);

/// Sets LibTorch's intra-op thread count from train.threads; 0 is automatic: every core when
/// train.precision is bf16 (oneDNN's bf16 products run on that pool), LibTorch's default otherwise.
void apply_thread_config(const Config& config);

}  // namespace distillery::train
