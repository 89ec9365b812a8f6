#pragma once
// The GLOM islands study (issue 10): trains GLOM on multi-digit MNIST scenes without masks
// (denoising, island regulariser, contrastive push-apart, image-level multi-labels), then scores
// its islands against the digits' masks (FG-ARI) on held-out separated, touching and overlapping
// two-digit scenes, per level and per iteration, beside the attention-off ablations and the
// trivial baselines, with MNIST accuracy from the top level.
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "distillery/experiments/hinton2015.h"
#include "distillery/nn/glom.h"

namespace distillery::experiments {

/// Reads configs_dir/glom/<profile>.yaml, writes runs_dir/glom-<profile>/{results.json,
/// report.html, metrics.jsonl, seed checkpoints} (and options.results_path), prints the table.
nlohmann::json run_glom_study(const ExperimentOptions& options);

/// A model the study trained (runs/glom-<profile>/model-seed1.pt), built from the training config
/// kept beside it (model-seed1.yaml), in eval mode. InputError naming the file if either is
/// missing or they do not fit.
nn::Glom load_glom_model(const std::string& model_path);

/// `distillery islands`: each image file (PNG, PGM, JPEG, BMP; resized to the model's canvas, light
/// ink on dark) parsed by the model at model_path (nn::parse_scene with objects and threshold);
/// writes out_dir/<image stem>-islands.png (the input, then each level's islands, enlarged 4x) and returns, per
/// image: {image, picture, digits: [{class, probability}] (those above 0.5, at least one), levels:
/// [{level, islands, ink_pixels: [per island, largest first]}]}.
nlohmann::json parse_image_files(const std::string& model_path, const std::vector<std::string>& images, int64_t objects,
                                 double threshold, const std::string& out_dir);

}  // namespace distillery::experiments
