#pragma once
// Multi-digit scenes for GLOM's islands (issue 10): 2-3 MNIST digits pasted on a larger canvas,
// separated, touching or overlapping, seeded. Each scene comes with its image-level multi-label
// (which digits are present: a training signal) and each digit's pixel mask (for evaluation only:
// no training objective in this library takes masks).
#include <torch/torch.h>

#include <cstdint>
#include <string>

#include "distillery/data/dataset.h"

namespace distillery::data {

/// How the digits of a scene lie relative to each other (measured on their ink, pixels above
/// ink_threshold). Any: uniform random positions. Separated: every pair of digits at least
/// separation_gap + 1 pixels apart (Chebyshev distance). Touching: the new digit's ink comes within
/// one pixel of another digit's ink, sharing at most touch_overlap of the smaller ink area.
/// Overlapping: it shares between overlap_min and overlap_max of the smaller ink area.
enum class SceneLayout { Any, Separated, Touching, Overlapping };

/// "any" | "separated" | "touching" | "overlapping"; InputError naming `field` otherwise.
SceneLayout parse_scene_layout(const std::string& text, const std::string& field = "layout");
std::string scene_layout_name(SceneLayout layout);

struct SceneOptions {
  TORCH_ARG(int64_t, canvas) = 56;
  TORCH_ARG(int64_t, min_digits) = 2;
  TORCH_ARG(int64_t, max_digits) = 3;
  TORCH_ARG(SceneLayout, layout) = SceneLayout::Any;
  /// Digits of one scene have different classes (as in MultiMNIST).
  TORCH_ARG(bool, distinct_classes) = true;
  /// Single-digit scenes (min_digits = max_digits = 1) put the digit at the canvas centre.
  TORCH_ARG(bool, centre_single) = false;
  TORCH_ARG(double, ink_threshold) = 0.3;
  TORCH_ARG(int64_t, separation_gap) = 3;
  TORCH_ARG(double, touch_overlap) = 0.05;
  TORCH_ARG(double, overlap_min) = 0.10;
  TORCH_ARG(double, overlap_max) = 0.40;
  /// Placement attempts per digit before a scene is drawn again from new digits.
  TORCH_ARG(int64_t, max_attempts) = 200;
  TORCH_ARG(uint64_t, seed) = 1;
};

/// N scenes: images [N, 1, C, C] float in [0, 1] (pixelwise max of the digits); labels [N, 10]
/// float multi-hot; masks [N, C, C] int64, 0 background, k in 1..K the k-th digit (a pixel belongs
/// to the digit with the most ink there, if that ink exceeds ink_threshold); classes [N, max_digits]
/// int64 (-1 where a scene has fewer digits); num_digits [N] int64.
struct Scenes {
  torch::Tensor images;
  torch::Tensor labels;
  torch::Tensor masks;
  torch::Tensor classes;
  torch::Tensor num_digits;
  int64_t size() const { return images.defined() ? images.size(0) : 0; }
};

/// Draws `count` scenes from the digits of `digits` ([M, 1, 28, 28] MNIST-like), deterministic in
/// options.seed. Throws InputError when a layout cannot be met within the attempts.
Scenes make_scenes(const Dataset& digits, int64_t count, const SceneOptions& options);

}  // namespace distillery::data
