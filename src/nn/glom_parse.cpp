#include "distillery/nn/glom_parse.h"

#include <algorithm>

#include "distillery/nn/islands.h"

namespace distillery::nn {

SceneParse parse_scene(Glom& model, const torch::Tensor& image, int64_t objects, double threshold, double ink) {
  const auto& o = model->options_;
  TORCH_CHECK(image.dim() == 2 && image.size(0) == o.image_size() && image.size(1) == o.image_size(), "parse_scene: expected a [",
              o.image_size(), ", ", o.image_size(), "] image, got ", image.sizes());
  TORCH_CHECK(objects >= 0, "parse_scene: objects must be >= 0, got ", objects);
  torch::NoGradGuard no_grad;
  model->eval();
  const auto input = image.to(torch::kFloat32).contiguous();
  const auto out = model->forward(input.view({1, 1, o.image_size(), o.image_size()}));
  const int64_t grid = model->grid(), patch = o.patch_size();
  const auto on_ink = ink_patches(input, patch, ink);
  const auto ink_pixels = input.gt(ink).reshape({-1});
  SceneParse parse;
  parse.class_probabilities = torch::sigmoid(out.image_logits[0]);
  for (int64_t l = 0; l < o.levels(); ++l) {
    const auto emb = out.levels[0].select(1, l);  // [N, D]
    torch::Tensor labels;
    if (objects > 0) {
      labels = cluster_ink_pixels(emb, on_ink, grid, patch, objects, 1, true);
    } else {
      labels = patch_labels_to_pixels(threshold_islands(emb, grid, grid, threshold).masked_fill(on_ink.logical_not(), -1), grid, patch);
    }
    const auto flat = labels.reshape({-1});
    const auto chosen = flat.masked_select(ink_pixels.logical_and(flat.ge(0)));
    std::vector<int64_t> sizes;
    if (chosen.numel() > 0) {
      const auto counts = torch::bincount(chosen).contiguous();
      const auto* c = counts.data_ptr<int64_t>();
      for (int64_t i = 0; i < counts.numel(); ++i) {
        if (c[i] > 0) sizes.push_back(c[i]);
      }
    }
    std::sort(sizes.rbegin(), sizes.rend());
    parse.islands.push_back(labels);
    parse.island_ink.push_back(sizes);
  }
  return parse;
}

}  // namespace distillery::nn
