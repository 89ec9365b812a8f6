#pragma once
// The GLOM islands study (issue 10): trains GLOM on multi-digit MNIST scenes without masks
// (denoising, island regulariser, contrastive push-apart, image-level multi-labels), then scores
// its islands against the digits' masks (FG-ARI) on held-out separated, touching and overlapping
// two-digit scenes, per level and per iteration, beside the attention-off ablations and the
// trivial baselines, with MNIST accuracy from the top level.
#include <nlohmann/json.hpp>

#include "distillery/experiments/hinton2015.h"

namespace distillery::experiments {

/// Reads configs_dir/glom/<profile>.yaml, writes runs_dir/glom-<profile>/{results.json,
/// report.html, metrics.jsonl, seed checkpoints} (and options.results_path), prints the table.
nlohmann::json run_glom_study(const ExperimentOptions& options);

}  // namespace distillery::experiments
