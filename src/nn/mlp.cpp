#include "distillery/nn/mlp.h"

namespace distillery::nn {

MLPImpl::MLPImpl(const MLPOptions& options) : options_(options) { reset(); }

void MLPImpl::reset() {
  layers_.clear();
  int64_t width = options_.in_features();
  std::vector<int64_t> sizes = options_.hidden();
  sizes.push_back(options_.num_classes());
  for (size_t i = 0; i < sizes.size(); ++i) {
    layers_.push_back(register_module("fc" + std::to_string(i + 1), torch::nn::Linear(width, sizes[i])));
    width = sizes[i];
  }
}

torch::Tensor MLPImpl::forward(const torch::Tensor& images) {
  auto x = images.reshape({images.size(0), -1});
  TORCH_CHECK(x.size(1) == options_.in_features(), "MLP: expected ", options_.in_features(),
              " input features, got ", x.size(1), " from input of shape ", images.sizes());
  x = torch::dropout(x, options_.dropout_input(), is_training());
  for (size_t i = 0; i + 1 < layers_.size(); ++i) {
    x = torch::relu(layers_[i]->forward(x));
    x = torch::dropout(x, options_.dropout_hidden(), is_training());
  }
  return layers_.back()->forward(x);
}

void MLPImpl::after_step() {
  if (options_.max_norm() <= 0) return;
  torch::NoGradGuard no_grad;
  // Each row of a Linear weight is one unit's incoming weight vector.
  for (size_t i = 0; i + 1 < layers_.size(); ++i) {
    auto& weight = layers_[i]->weight;
    weight.copy_(torch::renorm(weight, /*p=*/2, /*dim=*/0, options_.max_norm()));
  }
}

}  // namespace distillery::nn
