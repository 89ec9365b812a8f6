#include "distillery/nn/mlp.h"

#include <ATen/Dispatch.h>

#include "distillery/nn/fused_dropout.h"

namespace distillery::nn {

namespace {

// Max-norm in place: scales each row of `weight` whose L2 norm exceeds max_norm back onto the
// sphere (factor max_norm / (norm + 1e-7), as torch::renorm). One read of the matrix plus a write
// of the rows that are too long, where renorm followed by copy_ reads and writes it several times
// (1.2 ms against 0.3 ms for the norms alone, the 1200-1200 teacher's hidden weights, one thread).
void clip_row_norms_(torch::Tensor& weight, double max_norm) {
  if (!weight.is_cpu() || !weight.is_contiguous() || weight.dim() != 2) {
    weight.copy_(torch::renorm(weight, /*p=*/2, /*dim=*/0, max_norm));
    return;
  }
  const auto norms = weight.norm(2, {1}).to(torch::kDouble).contiguous();  // one vectorised read
  const double* norm = norms.data_ptr<double>();
  const int64_t rows = weight.size(0), cols = weight.size(1);
  AT_DISPATCH_FLOATING_TYPES(weight.scalar_type(), "clip_row_norms_", [&] {
    scalar_t* data = weight.data_ptr<scalar_t>();
    for (int64_t r = 0; r < rows; ++r) {
      if (norm[r] <= max_norm) continue;
      const auto scale = static_cast<scalar_t>(max_norm / (norm[r] + 1e-7));
      scalar_t* row = data + r * cols;
      for (int64_t c = 0; c < cols; ++c) row[c] *= scale;
    }
  });
}

}  // namespace

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
  x = fused_dropout(x, options_.dropout_input(), is_training());
  for (size_t i = 0; i + 1 < layers_.size(); ++i) {
    x = fused_relu_dropout(layers_[i]->forward(x), options_.dropout_hidden(), is_training());
  }
  return layers_.back()->forward(x);
}

void MLPImpl::after_step() {
  if (options_.max_norm() <= 0) return;
  torch::NoGradGuard no_grad;
  // Each row of a Linear weight is one unit's incoming weight vector.
  for (size_t i = 0; i + 1 < layers_.size(); ++i) {
    clip_row_norms_(layers_[i]->weight, options_.max_norm());
  }
}

}  // namespace distillery::nn
