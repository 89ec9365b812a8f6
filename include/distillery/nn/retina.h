#pragma once
// Location networks of a retina: one small MLP per location, with no weights shared between
// locations ("Distillation and the Brain", Hinton 2021: a brain cannot copy weights between
// places). All P networks run as one batched computation: each layer's weight has a leading
// location dimension [P, D_in, D_out] and the layers are torch::baddbmm, so location p's output
// depends only on location p's weights and inputs.
#include <torch/torch.h>

#include <vector>

namespace distillery::nn {

struct LocationMLPOptions {
  /// Number of locations P (independent networks).
  TORCH_ARG(int64_t, locations) = 9;
  /// Inputs per location (784 for a 28x28 window, 196 for a 14x14 foveated periphery).
  TORCH_ARG(int64_t, in_features) = 784;
  TORCH_ARG(std::vector<int64_t>, hidden) = std::vector<int64_t>{256};
  TORCH_ARG(int64_t, num_classes) = 10;
  /// GELU between layers instead of ReLU (GLOM's column nets use GELU).
  TORCH_ARG(bool, gelu) = false;
};

class LocationMLPImpl : public torch::nn::Module {
 public:
  explicit LocationMLPImpl(const LocationMLPOptions& options);
  /// Draws every location's weights independently, as torch::nn::Linear does
  /// (uniform in +-1/sqrt(fan_in) for weights and biases).
  void reset();
  /// views [P, B, in_features] (or [P, B, ...] flattened to in_features) -> logits [P, B, K].
  torch::Tensor forward(const torch::Tensor& views);
  /// Parameters of one location's network (all locations have the same count).
  int64_t parameters_per_location() const;

  LocationMLPOptions options_;

 private:
  std::vector<torch::Tensor> weights_;  // [P, D_in, D_out] per layer
  std::vector<torch::Tensor> biases_;   // [P, 1, D_out] per layer
};
TORCH_MODULE(LocationMLP);

}  // namespace distillery::nn
