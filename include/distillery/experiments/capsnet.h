#pragma once
// The experiments of Sabour, Frosst & Hinton 2017 ("Dynamic Routing Between Capsules"), run from
// configs/capsnet/ and reported beside the paper's figures: MNIST accuracy, the routing-iteration
// and reconstruction ablation, the CNN baseline, affine-transformed MNIST (CapsNet vs CNN) and
// MultiMNIST; report.html shows reconstructions and the effect of each pose dimension.
#include <nlohmann/json.hpp>

#include "distillery/experiments/hinton2015.h"

namespace distillery::experiments {

/// Writes runs_dir/capsnet-<profile>/results.json and report.html (and options.results_path),
/// prints the table and returns the results. Finished sub-runs are reused unless options.fresh.
nlohmann::json run_capsnet(const ExperimentOptions& options);

}  // namespace distillery::experiments
