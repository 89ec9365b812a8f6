#include "distillery/nn/retina.h"

#include <cmath>
#include <string>

namespace distillery::nn {

LocationMLPImpl::LocationMLPImpl(const LocationMLPOptions& options) : options_(options) { reset(); }

void LocationMLPImpl::reset() {
  TORCH_CHECK(options_.locations() >= 1, "LocationMLP: locations must be >= 1, got ", options_.locations());
  TORCH_CHECK(options_.in_features() >= 1, "LocationMLP: in_features must be >= 1, got ", options_.in_features());
  weights_.clear();
  biases_.clear();
  std::vector<int64_t> sizes{options_.in_features()};
  sizes.insert(sizes.end(), options_.hidden().begin(), options_.hidden().end());
  sizes.push_back(options_.num_classes());
  torch::NoGradGuard no_grad;
  for (size_t l = 0; l + 1 < sizes.size(); ++l) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(sizes[l]));
    auto weight = torch::empty({options_.locations(), sizes[l], sizes[l + 1]}).uniform_(-bound, bound);
    auto bias = torch::empty({options_.locations(), 1, sizes[l + 1]}).uniform_(-bound, bound);
    weights_.push_back(register_parameter("weight" + std::to_string(l), weight));
    biases_.push_back(register_parameter("bias" + std::to_string(l), bias));
  }
}

torch::Tensor LocationMLPImpl::forward(const torch::Tensor& views) {
  TORCH_CHECK(views.dim() >= 2 && views.size(0) == options_.locations(), "LocationMLP: expected views [",
              options_.locations(), ", B, ...], got ", views.sizes());
  auto x = views.reshape({views.size(0), views.size(1), -1});
  TORCH_CHECK(x.size(2) == options_.in_features(), "LocationMLP: expected ", options_.in_features(),
              " features per view, got ", x.size(2), " (views ", views.sizes(), ")");
  for (size_t l = 0; l < weights_.size(); ++l) {
    x = torch::baddbmm(biases_[l], x, weights_[l]);  // [P, B, D_in] x [P, D_in, D_out] + [P, 1, D_out]
    if (l + 1 < weights_.size()) x = options_.gelu() ? torch::gelu(x) : torch::relu(x);
  }
  return x;
}

int64_t LocationMLPImpl::parameters_per_location() const {
  int64_t count = 0;
  for (size_t l = 0; l < weights_.size(); ++l) count += weights_[l][0].numel() + biases_[l][0].numel();
  return count;
}

}  // namespace distillery::nn
