#pragma once
// Per-channel standardisation of a model's input, (x - mean) / std, held inside the model: the
// statistics travel in its checkpoint and its export, so eval and predict repeat exactly what
// training did.
#include <torch/torch.h>

#include <memory>
#include <vector>

#include "distillery/nn/classifier.h"

namespace distillery::nn {

class InputNormalizationImpl : public ClassifierImpl {
 public:
  /// `mean` and `std` hold one value per input channel.
  InputNormalizationImpl(std::shared_ptr<ClassifierImpl> model, const std::vector<double>& mean, const std::vector<double>& std);

  torch::Tensor forward(const torch::Tensor& images) override;
  void after_step() override { model_->after_step(); }
  torch::Tensor output_bias() override { return model_->output_bias(); }
  int64_t num_classes() const override { return model_->num_classes(); }
  ClassifierImpl& core() override { return model_->core(); }

 private:
  std::shared_ptr<ClassifierImpl> model_;
  torch::Tensor mean_, std_;  // [1, C, 1, 1] buffers
};

/// Per-channel mean and standard deviation of images [N, C, H, W] (uint8 0-255 or float in [0, 1]),
/// on the [0, 1] scale, computed in double over chunks so that a uint8 set is never copied whole.
std::pair<std::vector<double>, std::vector<double>> channel_statistics(const torch::Tensor& images);

}  // namespace distillery::nn
