#pragma once
// Batched augmentation: every operation takes a whole batch at once.
#include <torch/torch.h>

#include <cstdint>

namespace distillery::data {

/// Translates each image of [B, C, H, W] by its own integer (dy, dx) from `shifts` [B, 2] int64,
/// filling with zeros. |dy|, |dx| <= max_shift. Output has the input's shape.
torch::Tensor shift_images(const torch::Tensor& images, const torch::Tensor& shifts, int64_t max_shift);

/// Draws shifts [B, 2] uniformly from {-max_shift..max_shift}^2 (Hinton's jitter).
torch::Tensor random_shifts(int64_t batch, int64_t max_shift, torch::Generator& generator);

/// Index of a shift among the (2 * max_shift + 1)^2 possible ones: [B, 2] -> [B].
torch::Tensor shift_ids(const torch::Tensor& shifts, int64_t max_shift);

/// The training augmentation a config names: random shifts with zero fill (data.jitter, the same
/// as torchvision's RandomCrop(size, padding=jitter)) and left-right flips (data.flip).
struct Augmentation {
  int64_t jitter = 0;
  bool flip = false;
  /// Distinct views of one image: (2 jitter + 1)^2 shifts, twice that with flips.
  int64_t view_count() const { return (2 * jitter + 1) * (2 * jitter + 1) * (flip ? 2 : 1); }
};

/// Augmented images and, for each, which of its image's views it is (int64 in [0, view_count)).
struct AugmentedImages {
  torch::Tensor images, views;
};

/// Draws each image's shift, then whether it flips, from `generator`, and applies them.
AugmentedImages augment(const torch::Tensor& images, const Augmentation& augmentation, torch::Generator& generator);

}  // namespace distillery::data
