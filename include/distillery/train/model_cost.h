#pragma once
// What a model costs to run: parameters, multiply-adds per image, file size, and measured
// inference speed on this CPU. What a distilled student buys is read against its teacher's.
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <string>

#include "distillery/nn/classifier.h"
#include "distillery/train/evaluate.h"

namespace distillery::train {

struct ModelCost {
  int64_t parameters = 0;
  double multiply_adds = 0;       ///< per image, of the convolutions and matrix products
  int64_t file_bytes = 0;         ///< the model's file (0: none)
  double latency_ms = 0;          ///< one image at a time: median milliseconds per call
  double images_per_second = 0;   ///< batches of 64: median throughput

  nlohmann::json to_json() const;
};

/// Measures a model given as its forward function on images of `image_shape` [C, H, W]: its
/// multiply-adds counted by LibTorch's profiler on one image (aten conv2d, mm, addmm, bmm,
/// baddbmm), then latency at batch 1 and throughput at batch 64, each the median of `repeats`
/// timed calls after warm-up, on the current threads, without gradients.
ModelCost measure_model_cost(const Forward& forward, torch::IntArrayRef image_shape,
                             int64_t parameters, int64_t file_bytes, int repeats = 20);

/// Multiply-adds of one forward pass on one image of `image_shape`, counted by LibTorch's profiler.
double multiply_adds_per_image(const Forward& forward, torch::IntArrayRef image_shape);

/// The same for a classifier (eval mode during the measurement, restored after), with the size of
/// the file at `file` (0 if there is none).
ModelCost measure_classifier_cost(nn::ClassifierImpl& model, torch::IntArrayRef image_shape, const std::string& file);

/// The size of a file, 0 if it does not exist.
int64_t file_size_or_zero(const std::string& path);

}  // namespace distillery::train
