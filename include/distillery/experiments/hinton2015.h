#pragma once
// The MNIST experiments of Hinton, Vinyals & Dean 2015, run from configs/hinton2015/ and reported
// beside the paper's figures.
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace distillery::experiments {

struct ExperimentOptions {
  std::string profile = "quick";       // quick | paper
  std::string configs_dir = "configs";
  std::string runs_dir = "runs";
  std::string data_dir;                // empty: default data cache
  std::vector<std::string> overrides;  // key=value applied to every run
  bool fresh = false;                  // rerun sub-runs that already have a result
  std::string results_path;            // write the machine-readable results here (empty: don't)
  std::string command;                 // the command line, recorded with the results
  std::string executable;              // the distillery binary, for studies that start workers
};

/// Runs every experiment of the paper (teacher, hard-label student, distilled student, digit 3
/// omitted, only 7s and 8s, temperature sweep of a 30-30 student), prints the comparison table,
/// writes run_dir/results.json (and options.results_path) and returns the results.
nlohmann::json run_hinton2015(const ExperimentOptions& options);

/// The comparison table of a results object as Markdown.
std::string hinton2015_table(const nlohmann::json& results);

}  // namespace distillery::experiments
