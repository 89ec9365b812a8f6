#pragma once
// Parsing one image with a trained GLOM: its islands at every level, read out per pixel, as a
// user sees them (`distillery islands`). The study scores the same readouts against masks.
#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "distillery/nn/glom.h"

namespace distillery::nn {

struct SceneParse {
  /// Per level: [S, S] int64 island of each pixel of an ink patch, -1 elsewhere.
  std::vector<torch::Tensor> islands;
  /// Per level: ink pixels (above the ink threshold) of each island, largest first.
  std::vector<std::vector<int64_t>> island_ink;
  /// [C]: the image-level class probabilities (sigmoid of the MIL logits): which digits are present.
  torch::Tensor class_probabilities;
};

/// image [S, S] in [0, 1], S the model's image size. objects > 0: that many islands per level by
/// spherical k-means of the ink patches' embeddings, each pixel joining the centre nearest to the
/// embedding interpolated at it; 0: islands by agreement (neighbouring ink patches whose cosine
/// exceeds `threshold`, connected), one label per patch.
SceneParse parse_scene(Glom& model, const torch::Tensor& image, int64_t objects, double threshold = 0.9, double ink = 0.3);

}  // namespace distillery::nn
