#include "distillery/experiments/locality.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "distillery/config.h"
#include "distillery/distill/locality.h"
#include "distillery/error.h"
#include "distillery/report/html.h"
#include "distillery/report/image.h"
#include "distillery/report/metrics.h"
#include "distillery/report/results_page.h"
#include "distillery/train/run.h"

namespace distillery::experiments {
namespace fs = std::filesystem;
using distill::LocalityScheme;
using nlohmann::json;

namespace {

// The config file holds the paper profile (all 60,000 images, 3 seeds).
std::vector<std::string> profile_overrides(const std::string& profile) {
  if (profile == "paper") return {};
  if (profile == "quick") return {"data.train_limit=15360", "train.epochs=4", "locality.seeds=[1]"};
  if (profile == "test") {
    return {"data.train_limit=2560", "data.test_limit=500", "train.epochs=1", "locality.seeds=[1]", "model.hidden=[32]"};
  }
  throw InputError("--profile: unknown profile '" + profile + "' (known: quick, paper)");
}

const std::vector<LocalityScheme> kSchemes = {LocalityScheme::None, LocalityScheme::Saccade, LocalityScheme::Consensus,
                                              LocalityScheme::Shared, LocalityScheme::Supervised};

std::string retina_name(bool foveate) { return foveate ? "foveated" : "uniform"; }

std::string variant_name(LocalityScheme scheme, bool foveate) {
  return fmt::format("{}-{}-{}", distill::locality_scheme_letter(scheme), distill::locality_scheme_name(scheme),
                     retina_name(foveate));
}

std::string variant_label(LocalityScheme scheme) {
  switch (scheme) {
    case LocalityScheme::None: return "(a) no sharing, periphery untrained";
    case LocalityScheme::Saccade: return "(b) saccade distillation";
    case LocalityScheme::Consensus: return "(c) consensus distillation";
    case LocalityScheme::Shared: return "(d) one shared network";
    case LocalityScheme::Supervised: return "(e) labels everywhere";
  }
  return "?";
}

json outcome_json(const distill::LocalityOutcome& o) {
  return {{"accuracy", o.accuracy},
          {"fovea_accuracy", o.fovea_accuracy},
          {"periphery_accuracy", o.periphery_accuracy},
          {"steps", o.steps},
          {"train_seconds", o.train_seconds},
          {"fovea_labels_used", o.fovea_labels_used},
          {"periphery_labels_used", o.periphery_labels_used},
          {"num_parameters", o.num_parameters},
          {"epoch_loss", o.epoch_loss}};
}

// Runs one (variant, seed) unless it already finished with the same config (an interrupted study resumes).
json run_or_reuse(const ExperimentOptions& options, Config config, const train::RunData& data, int64_t* reused) {
  const std::string dir = config.get_string("run.dir") + "/" + config.get_string("name");
  const std::string result_path = dir + "/result.json";
  if (!options.fresh) {
    if (auto finished = train::finished_run(config)) {
      spdlog::info("{}: reusing the finished run in {}", config.get_string("name"), dir);
      ++*reused;
      return *finished;
    }
  }
  train::prepare_run_dir(config);
  const auto locality = distill::locality_options_from_config(config);
  const auto outcome = distill::train_locality(data.train, data.test, locality);
  json result = outcome_json(outcome);
  result["name"] = config.get_string("name");
  result["scheme"] = distill::locality_scheme_name(locality.scheme());
  result["foveate"] = locality.retina().foveate();
  result["seed"] = config.get_int("train.seed");
  report::write_file_atomic(result_path, result.dump(2));
  spdlog::info("{}: fovea {:.2f}%, periphery {:.2f}%, {} steps in {:.1f} s", config.get_string("name"),
               100 * outcome.fovea_accuracy, 100 * outcome.periphery_accuracy, outcome.steps, outcome.train_seconds);
  return result;
}

double mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0 : s / v.size();
}

double stddev(const std::vector<double>& v) {
  if (v.size() < 2) return 0;
  const double m = mean(v);
  double s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return std::sqrt(s / (v.size() - 1));
}

// Red (0%) through yellow to green (100%) for a heat map cell.
std::array<float, 3> heat_colour(double accuracy) {
  const double a = std::clamp(accuracy, 0.0, 1.0);
  return {static_cast<float>(a < 0.5 ? 1.0 : 2.0 * (1.0 - a)), static_cast<float>(a < 0.5 ? 2.0 * a : 1.0), 0.15f};
}

// Per-location accuracy over the retina: one grid x grid block per variant, variants in columns
// (a)-(e), uniform retina on the top row, foveated below. [3, H, W].
torch::Tensor retina_heat_map(const json& variants, int64_t grid, int64_t cell_px) {
  const int64_t pad = 8, block = grid * cell_px;
  const int64_t columns = kSchemes.size(), rows = 2;
  auto image = torch::ones({3, rows * (block + pad) + pad, columns * (block + pad) + pad});
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < columns; ++c) {
      const auto& accuracy = variants.at(variant_name(kSchemes[c], r == 1)).at("accuracy_mean");
      for (int64_t p = 0; p < grid * grid; ++p) {
        const auto colour = heat_colour(accuracy.at(p).get<double>());
        const int64_t y = pad + r * (block + pad) + (p / grid) * cell_px, x = pad + c * (block + pad) + (p % grid) * cell_px;
        for (int ch = 0; ch < 3; ++ch) {
          image[ch].slice(0, y + 1, y + cell_px - 1).slice(1, x + 1, x + cell_px - 1).fill_(colour[ch]);
        }
      }
    }
  }
  return image;
}

}  // namespace

json run_locality_study(const ExperimentOptions& options) {
  const std::string root = options.runs_dir + "/locality-" + options.profile;
  if (options.fresh && fs::exists(root)) fs::remove_all(root);
  fs::create_directories(root);
  const auto start = std::chrono::steady_clock::now();

  Config base = Config::load(options.configs_dir + "/locality/retina.yaml");
  for (const auto& o : profile_overrides(options.profile)) base.set(o);
  base.set("run.dir", root);
  if (!options.data_dir.empty()) base.set("data.dir", options.data_dir);
  for (const auto& o : options.overrides) base.set(o);
  train::apply_thread_config(base);
  distill::locality_options_from_config(base);  // rejects a bad config before any training
  const auto data = train::load_run_data(base);
  const auto seeds = base.get_int_list("locality.seeds");
  if (seeds.empty()) throw InputError("locality.seeds: at least one seed is needed");
  const int64_t grid = base.get_int("locality.grid"), locations = grid * grid;
  spdlog::info("locality: {} training and {} test images, seeds {}", data.train.size(), data.test.size(), fmt::join(seeds, ","));

  json variants = json::object();
  int64_t reused_runs = 0, total_runs = 0;
  double total_train_seconds = 0;
  for (bool foveate : {false, true}) {
    for (auto scheme : kSchemes) {
      const std::string variant = variant_name(scheme, foveate);
      std::vector<double> periphery, fovea, seconds, fractions_unused;
      std::vector<std::vector<double>> per_location(locations);
      json runs = json::array();
      int64_t periphery_labels = 0, fovea_labels = 0, steps = 0, parameters = 0;
      for (int64_t seed : seeds) {
        Config config = base;
        config.set("name", fmt::format("{}-seed{}", variant, seed));
        config.set("train.seed", std::to_string(seed));
        config.set("locality.scheme", distill::locality_scheme_name(scheme));
        config.set("locality.foveate", foveate ? "true" : "false");
        const json result = run_or_reuse(options, config, data, &reused_runs);
        ++total_runs;
        total_train_seconds += result.at("train_seconds").get<double>();
        periphery.push_back(result.at("periphery_accuracy").get<double>());
        fovea.push_back(result.at("fovea_accuracy").get<double>());
        seconds.push_back(result.at("train_seconds").get<double>());
        for (int64_t p = 0; p < locations; ++p) per_location[p].push_back(result.at("accuracy").at(p).get<double>());
        periphery_labels += result.at("periphery_labels_used").get<int64_t>();
        fovea_labels += result.at("fovea_labels_used").get<int64_t>();
        steps = result.at("steps").get<int64_t>();
        parameters = result.at("num_parameters").get<int64_t>();
        runs.push_back(result);
      }
      std::vector<double> accuracy_mean;
      for (const auto& a : per_location) accuracy_mean.push_back(mean(a));
      variants[variant] = {{"scheme", distill::locality_scheme_name(scheme)},
                           {"foveate", foveate},
                           {"periphery_accuracy", periphery},
                           {"periphery_mean", mean(periphery)},
                           {"periphery_sd", stddev(periphery)},
                           {"fovea_mean", mean(fovea)},
                           {"accuracy_mean", accuracy_mean},
                           {"train_seconds_mean", mean(seconds)},
                           {"steps", steps},
                           {"num_parameters", parameters},
                           {"periphery_labels_used", periphery_labels},
                           {"fovea_labels_used", fovea_labels},
                           {"runs", runs}};
    }
  }

  // Rows for docs/RESULTS.md.
  json rows = json::array();
  for (bool foveate : {false, true}) {
    const std::string retina = retina_name(foveate);
    auto v = [&](LocalityScheme s) -> const json& { return variants.at(variant_name(s, foveate)); };
    for (auto scheme : kSchemes) {
      const auto& x = v(scheme);
      rows.push_back(report::result_row(
          fmt::format("periphery_{}_{}", distill::locality_scheme_letter(scheme), retina),
          fmt::format("{} retina, {}: mean test accuracy of the {} peripheral locations (sd over {} seeds {:.2f})", retina,
                      variant_label(scheme), locations - 1, seeds.size(), 100 * x.at("periphery_sd").get<double>()),
          nullptr, 100 * x.at("periphery_mean").get<double>(), "%"));
    }
    rows.push_back(report::result_row("fovea_" + retina, retina + " retina: fovea test accuracy (the same under (a)-(e))", nullptr,
                                      100 * v(LocalityScheme::Saccade).at("fovea_mean").get<double>(), "%"));
    const double a = v(LocalityScheme::None).at("periphery_mean"), e = v(LocalityScheme::Supervised).at("periphery_mean");
    for (auto scheme : {LocalityScheme::Saccade, LocalityScheme::Consensus, LocalityScheme::Shared}) {
      const double x = v(scheme).at("periphery_mean");
      const char letter = distill::locality_scheme_letter(scheme);
      // Per seed as well: the smallest of the seeds' fractions.
      double worst = 1e9;
      for (size_t s = 0; s < seeds.size(); ++s) {
        const double as = v(LocalityScheme::None).at("periphery_accuracy").at(s), es = v(LocalityScheme::Supervised).at("periphery_accuracy").at(s);
        worst = std::min(worst, (v(scheme).at("periphery_accuracy").at(s).get<double>() - as) / (es - as));
      }
      rows.push_back(report::result_row(
          fmt::format("transfer_{}_{}", letter, retina),
          fmt::format("{} retina: transfer fraction ({} - a) / (e - a) of the periphery (lowest seed {:.3f}){}", retina, letter,
                      worst, scheme == LocalityScheme::Saccade ? "; target >= 0.9" : ""),
          scheme == LocalityScheme::Saccade ? json(0.9) : json(nullptr), (x - a) / (e - a), "fraction"));
    }
    for (auto scheme : kSchemes) {
      const auto& x = v(scheme);
      const bool distilled = scheme == LocalityScheme::Saccade || scheme == LocalityScheme::Consensus;
      rows.push_back(report::result_row(
          fmt::format("labels_{}_{}", distill::locality_scheme_letter(scheme), retina),
          fmt::format("{} retina, {}: labels read at peripheral locations, all seeds", retina, variant_label(scheme)),
          distilled ? json(0) : json(nullptr), x.at("periphery_labels_used"), "labels"));
    }
    for (auto scheme : kSchemes) {
      const auto& x = v(scheme);
      rows.push_back(report::result_row(
          fmt::format("cost_{}_{}", distill::locality_scheme_letter(scheme), retina),
          fmt::format("{} retina, {}: parameters {}, {} steps, training seconds per seed", retina, variant_label(scheme),
                      x.at("num_parameters").get<int64_t>(), x.at("steps").get<int64_t>()),
          nullptr, x.at("train_seconds_mean"), "s"));
    }
  }

  json notes = json::array();
  notes.push_back(fmt::format(
      "Retina: {0}x{0} locations, each a 28x28 window of a {1}x{1} canvas; a digit is placed in one cell, shifted by up to "
      "{2} pixels. Foveated: peripheral windows blurred (Gaussian sigma {3} px) and averaged {4}x{4} (14x14 views); the "
      "fovea sees full resolution. Every location has its own MLP {5}-{6}-10 (no weights shared), trained with Adam "
      "(lr {7}) for {8} epochs of {9} training images; each step shows {10} objects at each peripheral location, and "
      "the fovea sees (fixates) every object with its label.",
      grid, grid * 28, base.get_int("locality.jitter"), base.get_double("locality.blur_sigma"), base.get_int("locality.subsample"),
      "784 (foveated periphery: 196)", fmt::join(base.get_int_list("model.hidden"), "-"), base.get_double("train.lr"), base.get_int("train.epochs"),
      data.train.size(), base.get_int("locality.batch_per_location")));
  notes.push_back(fmt::format(
      "(b) saccade: the fovea's output at T = {} (T^2-scaled KL) teaches the location where the object was seen. "
      "(c) consensus: each object is seen by the fovea and {} peripheral locations; each peripheral location learns the "
      "attention-weighted (beta = {}, agreement of predictions) mean of the others' softened outputs, detached. "
      "(d) one network for all locations, trained at the fovea; peripheral 14x14 views are resampled bilinearly to 28x28 to "
      "apply it. (e) peripheral locations trained with the labels of the objects they see.",
      base.get_double("locality.temperature"), base.get_int("locality.consensus_views"), base.get_double("locality.attention_beta")));
  notes.push_back(fmt::format("Accuracies are over {} test images placed at each location (the same shifts for every variant); "
                              "figures are means over seeds {}.", data.test.size(), fmt::join(seeds, ", ")));

  notes.push_back("The GLOM variant whose columns share no weights (each column its own nets, learning from the others only by "
                  "distilling towards the consensus), beside the weight-shared GLOM, is measured by `distillery experiment glom` "
                  "with glom.train_unshared=true, which adds rows 'GLOM without weight sharing' to the GLOM table.");
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  notes.push_back(fmt::format("Training time summed over the {} runs: {:.0f} s (wall seconds of each run's training loop, "
                              "evaluation excluded); {} of the runs were finished earlier and reused by this command, "
                              "which itself took {:.0f} s.",
                              total_runs, total_train_seconds, reused_runs, seconds));
  json results = report::results_record("locality", "Distillation instead of weight sharing: a retina whose locations teach each other",
                                        options.profile, options.command, seconds, rows);
  results["notes"] = notes;
  results["variants"] = variants;

  const std::string table = report::result_rows_markdown(rows, "target");
  std::cout << "\nLocality study, profile " << options.profile << " (runs in " << root << ")\n\n" << table << "\n";
  report::save_results(results, root, options.results_path);

  const auto heat = retina_heat_map(variants, grid, 24);
  report::write_png(root + "/retina_accuracy.png", heat);
  report::HtmlReport page("Locality: distillation instead of weight sharing (profile " + options.profile + ")");
  for (const auto& note : notes) page.paragraph(note.get<std::string>());
  page.image("Per-location test accuracy over the retina (red 0%, yellow 50%, green 100%); columns (a)-(e), "
             "top row uniform retina, bottom row foveated",
             heat, 2);
  for (bool foveate : {false, true}) {
    page.heading(retina_name(foveate) + " retina: per-location test accuracy (%), mean over seeds");
    std::vector<std::vector<std::string>> cells;
    std::vector<std::string> header{"variant"};
    for (int64_t p = 0; p < locations; ++p) {
      header.push_back(fmt::format("({},{}){}", p / grid, p % grid, p == locations / 2 ? " fovea" : ""));
    }
    header.push_back("periphery mean");
    cells.push_back(header);
    for (auto scheme : kSchemes) {
      const auto& x = variants.at(variant_name(scheme, foveate));
      std::vector<std::string> row{variant_label(scheme)};
      for (int64_t p = 0; p < locations; ++p) row.push_back(fmt::format("{:.1f}", 100 * x.at("accuracy_mean").at(p).get<double>()));
      row.push_back(fmt::format("{:.2f}", 100 * x.at("periphery_mean").get<double>()));
      cells.push_back(row);
    }
    page.table(cells);
  }
  page.heading("All measurements");
  page.table(report::result_cells(rows, "target"));
  page.save(root + "/report.html");
  return results;
}

}  // namespace distillery::experiments
