#pragma once
// A small ConvNet baseline: two 5x5 convolutions with max-pooling, then two linear layers.
#include <torch/torch.h>

#include "distillery/nn/classifier.h"

namespace distillery::nn {

struct ConvNetOptions {
  TORCH_ARG(int64_t, in_channels) = 1;
  TORCH_ARG(int64_t, image_size) = 28;
  TORCH_ARG(int64_t, channels1) = 32;
  TORCH_ARG(int64_t, channels2) = 64;
  TORCH_ARG(int64_t, hidden) = 256;
  TORCH_ARG(int64_t, num_classes) = 10;
  TORCH_ARG(double, dropout) = 0.0;
};

class ConvNetImpl : public ClassifierImpl {
 public:
  explicit ConvNetImpl(const ConvNetOptions& options);
  void reset();
  /// [B, in_channels, S, S] -> logits [B, num_classes].
  torch::Tensor forward(const torch::Tensor& images) override;
  torch::Tensor output_bias() override { return fc2_->bias; }
  int64_t num_classes() const override { return options_.num_classes(); }

  ConvNetOptions options_;

 private:
  torch::nn::Conv2d conv1_ = nullptr, conv2_ = nullptr;
  torch::nn::Linear fc1_ = nullptr, fc2_ = nullptr;
};
TORCH_MODULE(ConvNet);

}  // namespace distillery::nn
