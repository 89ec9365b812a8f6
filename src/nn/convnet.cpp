#include "distillery/nn/convnet.h"

namespace distillery::nn {

ConvNetImpl::ConvNetImpl(const ConvNetOptions& options) : options_(options) { reset(); }

void ConvNetImpl::reset() {
  using torch::nn::Conv2dOptions;
  conv1_ = register_module("conv1", torch::nn::Conv2d(Conv2dOptions(options_.in_channels(), options_.channels1(), 5).padding(2)));
  conv2_ = register_module("conv2", torch::nn::Conv2d(Conv2dOptions(options_.channels1(), options_.channels2(), 5).padding(2)));
  const int64_t pooled = options_.image_size() / 4;
  fc1_ = register_module("fc1", torch::nn::Linear(options_.channels2() * pooled * pooled, options_.hidden()));
  fc2_ = register_module("fc2", torch::nn::Linear(options_.hidden(), options_.num_classes()));
}

torch::Tensor ConvNetImpl::forward(const torch::Tensor& images) {
  TORCH_CHECK(images.dim() == 4 && images.size(1) == options_.in_channels() &&
                  images.size(2) == options_.image_size() && images.size(3) == options_.image_size(),
              "ConvNet: expected [B, ", options_.in_channels(), ", ", options_.image_size(), ", ",
              options_.image_size(), "], got ", images.sizes());
  auto x = torch::max_pool2d(torch::relu(conv1_->forward(images)), 2);
  x = torch::max_pool2d(torch::relu(conv2_->forward(x)), 2);
  x = torch::relu(fc1_->forward(x.flatten(1)));
  x = torch::dropout(x, options_.dropout(), is_training());
  return fc2_->forward(x);
}

}  // namespace distillery::nn
