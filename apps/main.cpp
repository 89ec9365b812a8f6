// The distillery command line: parses arguments and configs, then calls the library.
#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <iostream>

#include "distillery/config.h"
#include "distillery/data/dataset.h"
#include "distillery/error.h"
#include "distillery/system.h"
#include "distillery/train/checkpoint.h"
#include "distillery/train/evaluate.h"
#include "distillery/train/run.h"

namespace {

using distillery::Config;

constexpr const char* kExitCodes =
    "\nExit codes: 0 success, 1 the run failed, 2 bad usage or bad input (data, config, checkpoint).";

Config load_config(const std::string& path, const std::vector<std::string>& assignments, const std::string& data_dir) {
  Config config = path.empty() ? Config() : Config::load(path);
  for (const auto& assignment : assignments) config.set(assignment);
  if (!data_dir.empty()) config.set("data.dir", data_dir);
  return config;
}

void print_eval(const distillery::train::EvalResult& eval) {
  std::cout << fmt::format("test errors: {} of {} (accuracy {:.2f}%)\n", eval.errors, eval.count, 100.0 * eval.accuracy);
  std::cout << "per class errors:";
  for (int64_t c = 0; c < eval.confusion.size(0); ++c) std::cout << fmt::format(" {}:{}", c, eval.class_errors(c));
  std::cout << "\n";
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"distillery: knowledge distillation, co-distillation, capsules and GLOM on LibTorch"};
  app.footer(kExitCodes);
  app.require_subcommand(1);
  std::string data_dir;
  app.add_option("--data-dir", data_dir, "data cache folder (default $DISTILLERY_DATA, else data/)");

  // train
  auto* train = app.add_subcommand("train", "train a model from a YAML config");
  std::string train_config;
  std::vector<std::string> train_sets;
  train->add_option("--config", train_config, "YAML config (see configs/)")->check(CLI::ExistingFile);
  train->add_option("--set", train_sets, "override a config key: --set train.lr=0.05 (repeatable)");
  train->footer("Config keys:\n" + Config::describe_keys() + kExitCodes);

  // eval
  auto* eval = app.add_subcommand("eval", "evaluate a checkpoint on a dataset's test split");
  std::string eval_checkpoint, eval_dataset = "mnist", eval_split = "test";
  eval->add_option("--checkpoint", eval_checkpoint, "checkpoint.pt written by train or distill")->required();
  eval->add_option("--dataset", eval_dataset, "mnist | fashion-mnist");
  eval->add_option("--split", eval_split, "test | train");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }

  try {
    distillery::check_blas_speed();
    if (train->parsed()) {
      const auto config = load_config(train_config, train_sets, data_dir);
      const auto outcome = distillery::train::run_training(config);
      print_eval(outcome.test);
      std::cout << "run folder: " << outcome.run_dir << "\n";
    } else if (eval->parsed()) {
      auto loaded = distillery::train::load_model(eval_checkpoint);
      const auto dataset = distillery::data::load_dataset(eval_dataset, eval_split, distillery::data::resolve_data_dir(data_dir));
      print_eval(distillery::train::evaluate(*loaded.model, dataset));
    }
  } catch (const distillery::InputError& e) {
    spdlog::error("{}", e.what());
    return 2;
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return 1;
  }
  return 0;
}
