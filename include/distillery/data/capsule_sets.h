#pragma once
// Test and training sets of the capsules paper (Sabour, Frosst & Hinton 2017) generated from MNIST:
// MultiMNIST (two overlapping digits of different classes) and an affine-transformed MNIST test set
// that measures robustness to affine changes the way affNIST does. Both are seeded and batched.
#include <torch/torch.h>

#include <cstdint>

#include "distillery/data/dataset.h"

namespace distillery::data {

struct MultiMnistOptions {
  TORCH_ARG(int64_t, canvas) = 36;    // output images are canvas x canvas
  TORCH_ARG(int64_t, max_shift) = 4;  // each digit is shifted by up to this many pixels each way
  TORCH_ARG(uint64_t, seed) = 1;
};

/// Two digits overlaid on one canvas.
struct MultiMnist {
  torch::Tensor images;      // [N, 1, canvas, canvas] in [0, 1]: the sum of the two, clipped at 1
  torch::Tensor labels;      // [N, 2] int64: the classes of the two digits, always different
  torch::Tensor components;  // [N, 2, 1, canvas, canvas]: each digit alone, where it is on the canvas
  int64_t size() const { return labels.defined() ? labels.size(0) : 0; }
  /// Two-hot targets [N, num_classes].
  torch::Tensor targets(int64_t num_classes = 10) const;
};

/// `count` pairs of images from `source` (images [M, 1, S, S], S <= canvas) with different labels,
/// each centred on the canvas and shifted by its own random (dy, dx) in [-max_shift, max_shift]^2,
/// as in the paper (which draws 1,000 MultiMNIST images per MNIST image). Deterministic in seed.
MultiMnist make_multi_mnist(const Dataset& source, int64_t count, const MultiMnistOptions& options = {});

/// The paper's MultiMNIST evaluation: an image counts as right when the two classes with the
/// longest capsules (largest scores) are exactly its two digits. scores [N, K], labels [N, 2];
/// returns the number of images that are wrong.
int64_t multi_mnist_errors(const torch::Tensor& scores, const torch::Tensor& labels);

/// Random affine transformations, each image its own, drawn uniformly from these ranges.
struct AffineMnistOptions {
  TORCH_ARG(double, max_rotation_degrees) = 20.0;
  TORCH_ARG(double, max_shear) = 0.2;
  TORCH_ARG(double, min_scale) = 0.8;
  TORCH_ARG(double, max_scale) = 1.2;
  TORCH_ARG(double, max_translation) = 3.0;  // pixels, each axis
  TORCH_ARG(uint64_t, seed) = 1;
};

/// Every image of `source` [N, C, H, W] under its own random rotation, shear, scale and translation
/// (bilinear sampling, zero outside), labels unchanged. Deterministic in seed.
Dataset make_affine_mnist(const Dataset& source, const AffineMnistOptions& options = {});

}  // namespace distillery::data
