#pragma once
// Multilayer perceptron with ReLU, dropout on inputs and hidden layers, and the max-norm weight
// constraint of Srivastava et al. 2014 (Hinton's MNIST teacher: 784-1200-1200-10).
#include <torch/torch.h>

#include <vector>

#include "distillery/nn/classifier.h"

namespace distillery::nn {

struct MLPOptions {
  TORCH_ARG(int64_t, in_features) = 784;
  TORCH_ARG(std::vector<int64_t>, hidden) = std::vector<int64_t>{1200, 1200};
  TORCH_ARG(int64_t, num_classes) = 10;
  TORCH_ARG(double, dropout_input) = 0.0;
  TORCH_ARG(double, dropout_hidden) = 0.0;
  /// Maximum L2 norm of each hidden unit's incoming weights; 0 disables the constraint.
  TORCH_ARG(double, max_norm) = 0.0;
};

class MLPImpl : public ClassifierImpl {
 public:
  explicit MLPImpl(const MLPOptions& options);
  void reset();
  /// [B, ...] (flattened to in_features) -> logits [B, num_classes].
  torch::Tensor forward(const torch::Tensor& images) override;
  void after_step() override;
  torch::Tensor output_bias() override { return layers_.back()->bias; }
  int64_t num_classes() const override { return options_.num_classes(); }

  MLPOptions options_;

 private:
  std::vector<torch::nn::Linear> layers_;
};
TORCH_MODULE(MLP);

}  // namespace distillery::nn
