#include "distillery/experiments/codistill.h"

#include <spdlog/spdlog.h>

#include <filesystem>
#include <fstream>
#include <iostream>

#include "distillery/config.h"
#include "distillery/distill/codistill.h"
#include "distillery/distill/distributed.h"
#include "distillery/error.h"
#include "distillery/report/html.h"
#include "distillery/report/metrics.h"
#include "distillery/report/results_page.h"
#include "distillery/train/run.h"

namespace distillery::experiments {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::vector<std::string> profile_overrides(const std::string& profile) {
  if (profile == "paper") return {};
  if (profile == "quick") return {"train.epochs=15", "data.train_limit=20000", "codistill.burn_in=100"};
  if (profile == "test") return {"train.epochs=1", "data.train_limit=2000", "data.test_limit=1000", "model.hidden=[64]"};
  throw InputError("--profile: unknown profile '" + profile + "' (known: quick, paper)");
}

struct Run {
  distill::CodistillOutcome outcome;
  json result;
};

// One group of peers: co-distilled with the config's alpha, or alone (alpha 0, whatever the
// overrides say), otherwise identical.
Run run_group(const ExperimentOptions& options, const std::string& root, int64_t peers, bool codistilled, int64_t seed) {
  Config config = Config::load(options.configs_dir + "/codistill/mlp-2peers.yaml");
  for (const auto& o : profile_overrides(options.profile)) config.set(o);
  config.set("run.dir", root);
  config.set("name", fmt::format("p{}-{}-seed{}", peers, codistilled ? "codistilled" : "alone", seed));
  config.set("codistill.peers", std::to_string(peers));
  config.set("train.seed", std::to_string(seed));
  if (!options.data_dir.empty()) config.set("data.dir", options.data_dir);
  for (const auto& o : options.overrides) config.set(o);
  if (!codistilled) config.set("codistill.alpha=0");
  Run run;
  run.outcome = distill::run_codistill(config);
  std::ifstream in(run.outcome.run_dir + "/result.json");
  run.result = json::parse(in);
  return run;
}

double mean_errors(const distill::CodistillOutcome& outcome) {
  double sum = 0;
  for (const auto& p : outcome.peers) sum += p.test.errors;
  return sum / outcome.peers.size();
}

// Fraction of test images on which peer 0 of two runs predicts differently.
double churn(const distill::CodistillOutcome& a, const distill::CodistillOutcome& b) {
  return (a.peers[0].test_probs.argmax(1) != b.peers[0].test_probs.argmax(1)).to(torch::kFloat64).mean().item<double>();
}

// Mean over peers of the first step at which a co-distilled peer reaches the final test error of
// the same peer trained alone, as a fraction of the run's steps (null if some peer never does).
json steps_to_baseline_fraction(const distill::CodistillOutcome& codistilled, const distill::CodistillOutcome& alone) {
  double sum = 0;
  for (size_t i = 0; i < codistilled.peers.size(); ++i) {
    const int64_t target = alone.peers[i].test.errors;
    int64_t reached = -1;
    for (const auto& [step, errors] : codistilled.peers[i].curve) {
      if (errors <= target) {
        reached = step;
        break;
      }
    }
    if (reached < 0) return nullptr;
    sum += double(reached) / double(codistilled.steps);
  }
  return sum / codistilled.peers.size();
}

}  // namespace

json run_codistill_study(const ExperimentOptions& options) {
  const std::string root = options.runs_dir + "/codistill-" + options.profile;
  if (options.fresh && fs::exists(root)) fs::remove_all(root);
  fs::create_directories(root);
  const auto start = std::chrono::steady_clock::now();
  json rows = json::array(), notes = json::array();
  json groups = json::object();
  for (int64_t peers : {2, 4}) {
    const auto alone1 = run_group(options, root, peers, false, 1);
    const auto alone2 = run_group(options, root, peers, false, 2);
    const auto codist1 = run_group(options, root, peers, true, 1);
    const auto codist2 = run_group(options, root, peers, true, 2);
    const double alone_errors = mean_errors(alone1.outcome), codist_errors = mean_errors(codist1.outcome);
    auto peers_better_by_10 = [](const distill::CodistillOutcome& codistilled, const distill::CodistillOutcome& alone) {
      int64_t count = 0;
      for (size_t i = 0; i < codistilled.peers.size(); ++i) {
        if (codistilled.peers[i].test.errors <= 0.9 * alone.peers[i].test.errors) ++count;
      }
      return count;
    };
    const std::string p = std::to_string(peers);
    rows.push_back(report::result_row("alone_" + p, p + " peers, each trained alone on its shard: mean test errors", nullptr, alone_errors, "errors"));
    rows.push_back(report::result_row("codistilled_" + p, p + " peers co-distilled: mean test errors", nullptr, codist_errors, "errors"));
    rows.push_back(report::result_row("relative_gain_" + p, p + " peers: relative error reduction from co-distillation (target >= 10% for every peer)",
                       10.0, 100.0 * (1.0 - codist_errors / alone_errors), "%"));
    rows.push_back(report::result_row("peers_better_" + p, p + " peers: peers with >= 10% fewer errors than alone", peers,
                                      peers_better_by_10(codist1.outcome, alone1.outcome), "peers"));
    const double alone_errors_2 = mean_errors(alone2.outcome), codist_errors_2 = mean_errors(codist2.outcome);
    rows.push_back(report::result_row("relative_gain_seed2_" + p, p + " peers, seed 2: relative error reduction from co-distillation", 10.0,
                                      100.0 * (1.0 - codist_errors_2 / alone_errors_2), "%"));
    rows.push_back(report::result_row("peers_better_seed2_" + p, p + " peers, seed 2: peers with >= 10% fewer errors than alone", peers,
                                      peers_better_by_10(codist2.outcome, alone2.outcome), "peers"));
    rows.push_back(report::result_row("ensemble_" + p, p + " independent peers as an ensemble (mean probability): test errors", nullptr,
                       alone1.result.at("group").at("ensemble_errors"), "errors"));
    rows.push_back(report::result_row("steps_to_baseline_" + p, p + " peers co-distilled: fraction of the steps needed to reach the alone error (Anil: about 0.5)",
                       0.5, steps_to_baseline_fraction(codist1.outcome, alone1.outcome), "fraction"));
    rows.push_back(report::result_row("churn_alone_" + p, p + " peers alone: churn between seeds 1 and 2 (peer 0)", nullptr,
                       100.0 * churn(alone1.outcome, alone2.outcome), "%"));
    rows.push_back(report::result_row("churn_codistilled_" + p, p + " peers co-distilled: churn between seeds 1 and 2 (peer 0)", nullptr,
                       100.0 * churn(codist1.outcome, codist2.outcome), "%"));
    rows.push_back(report::result_row("bytes_ratio_" + p, p + " peers: gradient all-reduce bytes / exchanged weight bytes per step (target >= 50)", 50.0,
                       codist1.outcome.bytes_per_step > 0 ? json(codist1.outcome.allreduce_bytes_per_step / codist1.outcome.bytes_per_step)
                                                          : json("no exchange"), "x"));
    groups["p" + p] = {{"alone_seed1", alone1.result}, {"codistilled_seed1", codist1.result},
                       {"alone_seed2", alone2.result.at("group")}, {"codistilled_seed2", codist2.result.at("group")}};
  }
  if (!options.executable.empty()) {
    // The 2-peer co-distilled run again, as two worker processes exchanging over Gloo.
    std::vector<std::string> args = {"codistill", "--config", options.configs_dir + "/codistill/mlp-2peers.yaml",
                                     "--set", "run.dir=" + root, "--set", "name=p2-gloo", "--set", "train.seed=1"};
    for (const auto& o : profile_overrides(options.profile)) args.insert(args.end(), {"--set", o});
    if (!options.data_dir.empty()) args.insert(args.end(), {"--data-dir", options.data_dir});
    for (const auto& o : options.overrides) args.insert(args.end(), {"--set", o});
    const auto exits = distill::launch_local_workers(options.executable, args, 2);
    Config config = Config::load(options.configs_dir + "/codistill/mlp-2peers.yaml");
    for (const auto& o : profile_overrides(options.profile)) config.set(o);
    if (!options.data_dir.empty()) config.set("data.dir", options.data_dir);
    const auto labels = train::load_run_data(config).test.labels;
    const auto group = distill::write_group_report(root + "/p2-gloo", 2, labels, exits);
    const auto& in_process = groups.at("p2").at("codistilled_seed1").at("group").at("peer_errors");
    const bool same = group.at("group").at("peer_errors") == in_process;
    rows.push_back(report::result_row("gloo_matches", "2 peers as 2 processes over Gloo on 127.0.0.1: same test errors as in one process", "yes",
                       same ? "yes" : "no: " + group.at("group").at("peer_errors").dump(), ""));
    groups["p2_gloo"] = group;
  }
  {
    const Config base = Config::load(options.configs_dir + "/codistill/mlp-2peers.yaml");
    notes.push_back(fmt::format("Peers: 800-800 MLPs, SGD, each on a disjoint shard; the distillation term is alpha = {} times the "
                                "T^2-scaled KL at T = {} to stale copies of the other peers, refreshed every {} steps, after a "
                                "burn-in of {} steps (the quick profile's overrides: {}).",
                                base.get_double("codistill.alpha"), base.get_double("codistill.temperature"),
                                base.get_int("codistill.exchange_every"), base.get_int("codistill.burn_in"),
                                fmt::join(profile_overrides(options.profile), ", ")));
  }
  notes.push_back("Churn: fraction of the 10,000 test images on which peer 0 of the seed-1 and seed-2 runs disagree.");
  json results = report::results_record("codistill", "Co-distillation on MNIST shards (Anil et al. 2018)", options.profile,
                                        options.command,
                                        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), rows);
  results["notes"] = notes;
  results["groups"] = groups;
  const std::string table = report::result_rows_markdown(rows, "target");
  std::cout << "\nCo-distillation on MNIST shards, profile " << options.profile << " (runs in " << root << ")\n\n" << table << "\n";
  report::save_results(results, root, options.results_path);
  report::HtmlReport page("Co-distillation on MNIST shards (profile " + options.profile + ")");
  page.table(report::result_cells(rows, "target"));
  for (const char* p : {"p2", "p4"}) {
    std::vector<report::Series> curves;
    for (const char* kind : {"alone_seed1", "codistilled_seed1"}) {
      for (const auto& peer : groups.at(p).at(kind).at("peers")) {
        report::Series s{fmt::format("{} peer {}", kind, peer.at("rank").get<int64_t>()), {}, {}};
        for (const auto& point : peer.at("curve")) s.x.push_back(point[0].get<double>()), s.y.push_back(point[1].get<double>());
        curves.push_back(s);
      }
    }
    page.line_chart(std::string(p) + ": test errors during training", "step", "test errors", curves);
  }
  page.save(root + "/report.html");
  return results;
}

}  // namespace distillery::experiments
