#pragma once
// The co-distillation study: peers on disjoint MNIST shards, trained alone and co-distilled, with
// the ensemble of independent peers, the steps needed to reach the independent error, prediction
// churn between seeds, and the bytes exchanged against a gradient all-reduce.
#include <nlohmann/json.hpp>

#include "distillery/experiments/hinton2015.h"

namespace distillery::experiments {

/// Writes runs_dir/codistill-<profile>/results.json (and options.results_path) and prints the
/// table. options.executable, when set, is the distillery binary used to repeat the 2-peer run
/// as 2 worker processes over Gloo.
nlohmann::json run_codistill_study(const ExperimentOptions& options);

}  // namespace distillery::experiments
