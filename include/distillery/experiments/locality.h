#pragma once
// The locality study of "Distillation and the Brain": a retina of independent location networks
// where labels exist only at the fovea, and the schemes that move knowledge to the periphery
// (distill/locality.h), with and without foveation, over several seeds.
#include <nlohmann/json.hpp>

#include "distillery/experiments/hinton2015.h"

namespace distillery::experiments {

/// Runs variants (a)-(e) x {uniform, foveated} x locality.seeds from configs/locality/retina.yaml,
/// prints the table, writes runs_dir/locality-<profile>/ (one folder per run, results.json,
/// retina_accuracy.png, report.html) and options.results_path, and returns the results.
nlohmann::json run_locality_study(const ExperimentOptions& options);

}  // namespace distillery::experiments
