// The distillery command line: parses arguments and configs, then calls the library.
#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cctype>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <iostream>

#include "distillery/config.h"
#include "distillery/data/dataset.h"
#include "distillery/data/image_input.h"
#include "distillery/distill/codistill.h"
#include "distillery/distill/distiller.h"
#include "distillery/distill/distributed.h"
#include "distillery/error.h"
#include "distillery/experiments/capsnet.h"
#include "distillery/experiments/codistill.h"
#include "distillery/experiments/glom.h"
#include "distillery/experiments/hinton2015.h"
#include "distillery/experiments/locality.h"
#include "distillery/nn/torchscript_export.h"
#include "distillery/report/generated_pages.h"
#include "distillery/report/run_report.h"
#include "distillery/system.h"
#include "distillery/train/checkpoint.h"
#include "distillery/train/evaluate.h"
#include "distillery/train/model_cost.h"
#include "distillery/train/predict_input.h"
#include "distillery/train/run.h"

namespace {

using distillery::Config;

// Set by SIGINT/SIGTERM; the trainer checkpoints and returns at the next step.
std::atomic<bool> stop_requested{false};
void request_stop(int) { stop_requested = true; }

constexpr const char* kExitCodes =
    "\nExit codes: 0 success, 1 the run failed, 2 bad usage or bad input (data, config, checkpoint).";

void print_data_summary(const nlohmann::json& summary) {
  for (const auto& [split, part] : summary.at("splits").items()) {
    std::cout << fmt::format("{:<11} {:>7} images [{}] {} ({:.1f} MiB)", split, part.at("images").get<int64_t>(),
                             fmt::join(part.at("shape").get<std::vector<int64_t>>(), ", "), part.at("dtype").get<std::string>(),
                             part.at("mib").get<double>());
    if (part.at("unlabeled").get<int64_t>() > 0) std::cout << fmt::format(", {} unlabeled", part.at("unlabeled").get<int64_t>());
    std::cout << "\n";
    std::vector<std::string> counts;
    for (const auto& [name, count] : part.at("per_class").items()) {
      if (count.get<int64_t>() > 0) counts.push_back(fmt::format("{} {}", name, count.get<int64_t>()));
    }
    if (!counts.empty()) std::cout << "            " << fmt::format("{}", fmt::join(counts, ", ")) << "\n";
  }
  if (summary.contains("skipped_images")) {
    std::cout << summary.at("skipped_images").at("count").get<int64_t>() << " files skipped as undecodable, e.g. "
              << summary.at("skipped_images").at("files").at(0).get<std::string>() << "\n";
  }
  std::cout << fmt::format("loaded in {:.2f} s\n", summary.at("seconds").get<double>());
}

Config load_config(const std::string& path, const std::vector<std::string>& assignments, const std::string& data_dir) {
  Config config = path.empty() ? Config() : Config::load(path);
  for (const auto& assignment : assignments) config.set(assignment);
  if (!data_dir.empty()) config.set("data.dir", data_dir);
  return config;
}

void print_eval(const distillery::train::EvalResult& eval) {
  std::cout << fmt::format("test errors: {} of {} (accuracy {:.2f}%)\n", eval.errors, eval.count, 100.0 * eval.accuracy);
  std::cout << "per class errors:";
  for (int64_t c = 0; c < eval.confusion.size(0); ++c) {
    const std::string name = c < static_cast<int64_t>(eval.classes.size()) ? eval.classes[c] : std::to_string(c);
    std::cout << fmt::format(" {}:{}", name, eval.class_errors(c));
  }
  std::cout << "\n";
}

// An argument as a shell would need it typed, so that a recorded command can be pasted back.
std::string shell_quoted(const std::string& arg) {
  const bool plain = !arg.empty() && std::all_of(arg.begin(), arg.end(), [](unsigned char c) {
    return std::isalnum(c) || std::strchr("_./=:,@%+-", c) != nullptr;
  });
  if (plain) return arg;
  std::string quoted = "'";
  for (char c : arg) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"distillery: knowledge distillation, co-distillation, capsules and GLOM on LibTorch"};
  app.footer(kExitCodes);
  app.require_subcommand(1);
  // Options of the tool itself (--data-dir) may also come after the subcommand.
  app.fallthrough();
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
  auto* eval = app.add_subcommand("eval", "evaluate a checkpoint on a dataset's test split, or on your labeled images");
  std::string eval_checkpoint, eval_dataset = "mnist", eval_split = "test", eval_images;
  eval->add_option("--checkpoint", eval_checkpoint, "checkpoint.pt written by train or distill")->required();
  eval->add_option("--dataset", eval_dataset, "mnist | fashion-mnist");
  eval->add_option("--split", eval_split, "test | train");
  eval->add_option("--images", eval_images,
                   "instead: a labeled image folder (ROOT/<class>/<image>, decoded as the model was trained) or a tensor file");

  // distill
  auto* distill = app.add_subcommand("distill", "train a student on a teacher's soft targets");
  std::string distill_teachers, distill_config;
  std::vector<std::string> distill_sets;
  double distill_temperature = 0;
  distill->add_option("--teacher", distill_teachers,
                      "teacher checkpoint or TorchScript file; several separated by commas form an ensemble")->required();
  distill->add_option("--student", distill_config, "YAML config of the student and transfer set")->check(CLI::ExistingFile);
  distill->add_option("--temperature,-T", distill_temperature, "softmax temperature (default: distill.temperature)");
  distill->add_option("--set", distill_sets, "override a config key: --set distill.hard_weight=0.1 (repeatable)");
  distill->footer("Config keys:\n" + Config::describe_keys() + kExitCodes);

  // experiment
  auto* experiment = app.add_subcommand("experiment", "run a paper's experiments and compare with its figures");
  std::string experiment_name;
  distillery::experiments::ExperimentOptions experiment_options;
  experiment->add_option("name", experiment_name, "experiment: hinton2015 | codistill | locality | capsnet | glom")->required();
  experiment->add_option("--profile", experiment_options.profile,
                         "quick (minutes, what `make demo` runs) or paper (the full reproduction, about an hour)");
  experiment->add_option("--configs", experiment_options.configs_dir, "folder of experiment configs");
  experiment->add_option("--runs", experiment_options.runs_dir, "folder for run folders");
  experiment->add_option("--set", experiment_options.overrides, "override a config key in every run (repeatable)");
  experiment->add_flag("--fresh", experiment_options.fresh, "rerun runs that already finished");
  experiment->add_option("--results", experiment_options.results_path,
                         "also write the machine-readable results here (e.g. docs/results/hinton2015.json)");

  // codistill
  auto* codistill = app.add_subcommand("codistill", "train a group of peers that teach each other (co-distillation)");
  std::string codistill_config;
  std::vector<std::string> codistill_sets;
  int64_t codistill_peers = 0, codistill_procs = 0;
  codistill->add_option("--config", codistill_config, "YAML config (see configs/codistill/)")->check(CLI::ExistingFile);
  codistill->add_option("--peers", codistill_peers, "peers trained in this process (default: codistill.peers)");
  codistill->add_option("--procs", codistill_procs,
                        "start this many worker processes on this machine, one peer each, exchanging over Gloo");
  codistill->add_option("--set", codistill_sets, "override a config key (repeatable)");
  codistill->footer(
      "Several machines: start one worker per peer with RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT set\n"
      "(as torchrun does); each writes RUN/peer-<rank>/. With --procs the launcher also writes the group's\n"
      "RUN/result.json, naming any peer that was lost.\n\nConfig keys:\n" +
      Config::describe_keys() + kExitCodes);

  // predict
  auto* predict = app.add_subcommand("predict", "class probabilities of a checkpoint for image files (PNG, PGM, JPEG, BMP)");
  std::string predict_checkpoint;
  std::vector<std::string> predict_images;
  double predict_temperature = 1.0;
  predict->add_option("--checkpoint", predict_checkpoint, "checkpoint.pt")->required();
  predict->add_option("images", predict_images, "image files: prepared as the model's training images were (MNIST models: resized and centred like MNIST)")->required();
  predict->add_option("--temperature,-T", predict_temperature, "soften the distribution to show the model's dark knowledge")
      ->check(CLI::PositiveNumber);

  // islands
  auto* islands = app.add_subcommand("islands", "parse images into islands with a GLOM model trained by `experiment glom`");
  std::string islands_model, islands_out = ".";
  std::vector<std::string> islands_images;
  int64_t islands_objects = 0;
  double islands_threshold = 0.9;
  islands->add_option("--model", islands_model, "RUNS/glom-<profile>/model-seed<N>.pt (its .yaml beside it)")->required();
  islands->add_option("images", islands_images,
                      "image files (PNG, PGM, JPEG, BMP): resized to the model's 56x56 canvas, where it was trained on "
                      "digits about 20 pixels tall")
      ->required();
  islands->add_option("--objects,-k", islands_objects,
                      "islands per level by k-means, read out per pixel (e.g. 2 for two digits); 0: islands by agreement, "
                      "neighbouring patches whose cosine exceeds --threshold")
      ->check(CLI::NonNegativeNumber);
  islands->add_option("--threshold", islands_threshold, "cosine that joins neighbouring patches when --objects is 0")
      ->check(CLI::Range(-1.0, 1.0));
  islands->add_option("--out", islands_out, "folder for <image>-islands.png: the input, then each level's islands");

  // data
  auto* data_command = app.add_subcommand(
      "data", "load the data a config names, as a run would, and say what it is (images, shape, classes, skipped files); "
              "--out writes it as tensor files");
  std::string data_config, data_out;
  std::vector<std::string> data_sets;
  bool data_json = false;
  data_command->add_option("--config", data_config, "YAML config (its data.* keys)")->check(CLI::ExistingFile);
  data_command->add_option("--set", data_sets, "override a config key: --set data.path=photos (repeatable)");
  data_command->add_option("--out", data_out, "folder for train.pt, validation.pt, test.pt (torch.load reads them)");
  data_command->add_flag("--json", data_json, "print the summary as JSON");

  // export
  auto* export_command = app.add_subcommand("export", "write a checkpoint's model as TorchScript, for torch.jit.load in Python or C++");
  std::string export_checkpoint, export_out;
  export_command->add_option("checkpoint", export_checkpoint, "checkpoint.pt")->required();
  export_command->add_option("--out", export_out, "the TorchScript file (default: beside the checkpoint, model.ts.pt)");

  // inspect
  auto* inspect = app.add_subcommand("inspect", "print a checkpoint's architecture, step, size and weights digest");
  std::string inspect_checkpoint;
  inspect->add_option("checkpoint", inspect_checkpoint, "checkpoint.pt")->required();

  // report and compare
  auto* report = app.add_subcommand("report", "write RUN_DIR/report.html (config, results, curves, confusion matrix)");
  std::string report_dir;
  report->add_option("run_dir", report_dir, "a run folder")->required();
  auto* compare = app.add_subcommand("compare", "one table of the final metrics of several runs");
  std::vector<std::string> compare_dirs;
  compare->add_option("run_dirs", compare_dirs, "run folders")->required();

  // results
  auto* results = app.add_subcommand(
      "results", "regenerate the generated docs: docs/RESULTS.md, README.md's headline table, the explorations' indexes, "
                 "docs/guide/configuration.md (from docs/results/*.json, summary.yaml and the config schema)");
  std::string results_root = ".";
  bool results_check = false;
  results->add_option("--root", results_root, "repository root holding README.md and docs/")->check(CLI::ExistingDirectory);
  results->add_flag("--check", results_check, "write nothing; exit 1 naming each generated page that is stale");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }

  // Only `train` and `distill` poll the flag; every other command keeps the default handlers, so
  // that Ctrl-C or a SIGTERM ends it (its files are written atomically) instead of being ignored.
  if (train->parsed() || distill->parsed()) {
    std::signal(SIGINT, request_stop);
    std::signal(SIGTERM, request_stop);
  }
  try {
    distillery::keep_freed_memory_for_reuse();
    distillery::check_blas_speed();
    if (train->parsed()) {
      const auto config = load_config(train_config, train_sets, data_dir);
      const auto outcome = distillery::train::run_training(config, &stop_requested);
      print_eval(outcome.test);
      std::cout << "run folder: " << outcome.run_dir << "\n";
    } else if (distill->parsed()) {
      auto config = load_config(distill_config, distill_sets, data_dir);
      config.set("distill.teachers", "[" + distill_teachers + "]");
      if (distill->count("--temperature") > 0) config.set("distill.temperature", fmt::format("{}", distill_temperature));
      const auto outcome = distillery::distill::run_distillation(config, &stop_requested);
      std::cout << "teacher: " << outcome.teacher << "\n";
      print_eval(outcome.test);
      if (!outcome.worth.empty()) std::cout << "what the student buys (both measured on this CPU, one after the other):\n" << outcome.worth;
      if (outcome.bias) {
        std::cout << fmt::format("bias shift {:.1f} (chosen on validation) for classes {}: ", outcome.bias->validation_shift,
                                 fmt::join(outcome.bias->classes, ","));
        print_eval(outcome.bias->test_after);
      }
      if (outcome.teacher_lookups > 0) {
        std::cout << fmt::format("teacher cache: the teacher ran on {} of {} images asked for ({:.1f}% saved)\n",
                                 outcome.teacher_rows, outcome.teacher_lookups,
                                 100.0 * (1.0 - double(outcome.teacher_rows) / double(outcome.teacher_lookups)));
      }
      std::cout << "run folder: " << outcome.run_dir << "\n";
    } else if (experiment->parsed()) {
      if (!data_dir.empty()) experiment_options.data_dir = data_dir;
      for (int i = 0; i < argc; ++i) experiment_options.command += (i ? " " : "") + shell_quoted(argv[i]);
      experiment_options.executable = "/proc/self/exe";
      if (experiment_name == "hinton2015") {
        distillery::experiments::run_hinton2015(experiment_options);
      } else if (experiment_name == "codistill") {
        distillery::experiments::run_codistill_study(experiment_options);
      } else if (experiment_name == "capsnet") {
        distillery::experiments::run_capsnet(experiment_options);
      } else if (experiment_name == "glom") {
        distillery::experiments::run_glom_study(experiment_options);
      } else if (experiment_name == "locality") {
        distillery::experiments::run_locality_study(experiment_options);
      } else {
        throw distillery::InputError("experiment: unknown experiment '" + experiment_name + "' (known: hinton2015, codistill, locality, capsnet, glom)");
      }
    } else if (codistill->parsed()) {
      auto config = load_config(codistill_config, codistill_sets, data_dir);
      if (codistill_peers > 0) config.set("codistill.peers", std::to_string(codistill_peers));
      if (codistill_procs > 0) {
        config.set("codistill.peers", std::to_string(codistill_procs));
        std::vector<std::string> worker_args;
        for (int i = 1; i < argc; ++i) {
          const std::string arg = argv[i];
          if (arg == "--procs") { ++i; continue; }
          if (arg.rfind("--procs=", 0) == 0) continue;
          worker_args.push_back(arg);
        }
        const auto exits = distillery::distill::launch_local_workers("/proc/self/exe", worker_args, codistill_procs);
        const auto run_data = distillery::train::load_run_data(config);
        const std::string run_dir = config.get_string("run.dir") + "/" + config.get_string("name");
        const auto group = distillery::distill::write_group_report(run_dir, codistill_procs, run_data.test.labels, exits);
        std::cout << "peer test errors: " << group.at("group").at("peer_errors").dump() << "\n";
        if (group.at("group").contains("ensemble_errors")) std::cout << "ensemble test errors: " << group.at("group").at("ensemble_errors") << "\n";
        std::cout << "lost peers: " << group.at("lost_peers").dump() << "\n" << "run folder: " << run_dir << "\n";
        if (group.at("peers").empty()) return 1;
      } else if (auto env = distillery::distill::DistributedEnv::from_environment(); env && env->world_size > 1) {
        const auto outcome = distillery::distill::run_codistill_worker(config, *env);
        std::cout << fmt::format("peer {}: test errors {}\n", env->rank, outcome.peers.front().test.errors);
      } else {
        const auto outcome = distillery::distill::run_codistill(config);
        for (const auto& peer : outcome.peers) std::cout << fmt::format("peer {}: test errors {}\n", peer.rank, peer.test.errors);
        std::cout << fmt::format("weights moved per step per peer: {:.0f} bytes (a gradient all-reduce: {:.0f})\n",
                                 outcome.bytes_per_step, outcome.allreduce_bytes_per_step);
        std::cout << "run folder: " << outcome.run_dir << "\n";
      }
    } else if (predict->parsed()) {
      auto loaded = distillery::train::load_model(predict_checkpoint);
      for (const auto& path : predict_images) {
        const auto image = distillery::train::load_model_input(path, loaded.meta.spec);
        const auto probs = distillery::train::predict_logits(*loaded.model, image).div(predict_temperature).softmax(1)[0];
        const auto names = distillery::train::class_names(loaded.meta.spec);
        size_t width = 2;
        for (const auto& name : names) width = std::max(width, name.size());
        std::cout << path << ": predicted " << names.at(probs.argmax().item<int64_t>()) << " (T = " << predict_temperature << ")\n";
        for (int64_t c = 0; c < probs.size(0); ++c) {
          const double p = probs[c].item<double>();
          std::cout << fmt::format("  {:>{}} {:8.5f} {}\n", names.at(c), width, p, std::string(static_cast<size_t>(p * 50 + 0.5), '#'));
        }
      }
    } else if (islands->parsed()) {
      const auto parsed = distillery::experiments::parse_image_files(islands_model, islands_images, islands_objects,
                                                                     islands_threshold, islands_out);
      for (const auto& image : parsed) {
        std::vector<std::string> digits;
        for (const auto& d : image["digits"]) digits.push_back(fmt::format("{} ({:.2f})", d["class"].get<int64_t>(), d["probability"].get<double>()));
        std::cout << image["image"].get<std::string>() << ": digits " << fmt::format("{}", fmt::join(digits, ", ")) << "\n";
        for (const auto& level : image["levels"]) {
          std::cout << fmt::format("  level {}: {} islands, ink pixels {}\n", level["level"].get<int64_t>(), level["islands"].get<int64_t>(),
                                   level["ink_pixels"].dump());
        }
        std::cout << "  picture: " << image["picture"].get<std::string>() << "\n";
      }
    } else if (data_command->parsed()) {
      if (data_json) spdlog::set_level(spdlog::level::warn);  // stdout holds the JSON alone
      const auto config = load_config(data_config, data_sets, data_dir);
      const auto started = std::chrono::steady_clock::now();
      const auto run_data = distillery::train::load_run_data(config);
      auto summary = distillery::train::describe_run_data(run_data);
      summary["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
      if (data_json) {
        std::cout << summary.dump(2) << "\n";
      } else {
        print_data_summary(summary);
      }
      if (!data_out.empty()) {
        for (const auto& path : distillery::train::write_run_data(run_data, data_out)) std::cout << "wrote " << path << "\n";
      }
    } else if (export_command->parsed()) {
      const auto loaded = distillery::train::load_model(export_checkpoint);
      if (export_out.empty()) export_out = (std::filesystem::path(export_checkpoint).parent_path() / "model.ts.pt").string();
      distillery::nn::export_torchscript(*loaded.model, loaded.meta.spec, export_out);
      std::cout << "wrote " << export_out << "\n";
    } else if (inspect->parsed()) {
      const auto loaded = distillery::train::load_model(inspect_checkpoint);
      std::cout << "checkpoint:   " << inspect_checkpoint << "\n"
                << "architecture: " << loaded.meta.spec.to_json().dump() << "\n"
                << "step:         " << loaded.meta.step << "\n"
                << "parameters:   " << distillery::nn::count_parameters(*loaded.model) << "\n"
                << "multiply-adds per image: "
                << fmt::format("{:.0f}", distillery::train::multiply_adds_per_image(
                                              [&](const torch::Tensor& x) { return loaded.model->forward(x); },
                                              {loaded.meta.spec.in_channels, loaded.meta.spec.image_size, loaded.meta.spec.image_size}))
                << "\n"
                << "weights:      " << distillery::train::weights_digest(*loaded.model) << "\n"
                << "non-finite:   " << distillery::train::count_nonfinite(*loaded.model) << "\n";
    } else if (report->parsed()) {
      const auto page = distillery::report::write_run_report(report_dir);  // first: it may throw
      std::cout << "wrote " << page << "\n";
    } else if (compare->parsed()) {
      std::cout << distillery::report::compare_runs(compare_dirs);
    } else if (results->parsed()) {
      if (results_check) {
        const auto stale = distillery::report::stale_generated_pages(results_root);
        for (const auto& page : stale) std::cout << "stale: " << page << " (run `distillery results` to regenerate it)\n";
        if (!stale.empty()) return 1;
        std::cout << "every generated page is current\n";
      } else {
        const auto written = distillery::report::write_generated_pages(results_root);
        for (const auto& page : written) std::cout << "wrote " << page << "\n";
        if (written.empty()) std::cout << "every generated page was already current\n";
      }
    } else if (eval->parsed()) {
      auto loaded = distillery::train::load_model(eval_checkpoint);
      distillery::data::Dataset dataset;
      if (!eval_images.empty()) {
        dataset = distillery::train::load_labeled_images(eval_images, loaded.meta.spec);
      } else {
        dataset = distillery::data::load_dataset(eval_dataset, eval_split, distillery::data::resolve_data_dir(data_dir));
        distillery::train::require_model_input(dataset, loaded.meta.spec, eval_dataset + " (set --images for the model's own kind of images)");
        dataset.classes = loaded.meta.spec.classes;
      }
      print_eval(distillery::train::evaluate(*loaded.model, dataset));
    }
  } catch (const distillery::InputError& e) {
    spdlog::error("{}", e.what());
    return 2;
  } catch (const c10::Error& e) {  // LibTorch's own: never its backtrace
    const auto explained = distillery::explain_library_error(e.what_without_backtrace());
    spdlog::error("{}", explained.text);
    return explained.input_error ? 2 : 1;
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return 1;
  }
  return 0;
}
