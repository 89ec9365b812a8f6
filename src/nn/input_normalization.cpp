#include "distillery/nn/input_normalization.h"

#include <cmath>

namespace distillery::nn {

InputNormalizationImpl::InputNormalizationImpl(std::shared_ptr<ClassifierImpl> model, const std::vector<double>& mean,
                                               const std::vector<double>& std)
    : model_(register_module("model", std::move(model))) {
  const auto channels = static_cast<int64_t>(mean.size());
  mean_ = register_buffer("input_mean", torch::tensor(mean, torch::kFloat32).view({1, channels, 1, 1}));
  std_ = register_buffer("input_std", torch::tensor(std, torch::kFloat32).view({1, channels, 1, 1}));
}

torch::Tensor InputNormalizationImpl::forward(const torch::Tensor& images) {
  return model_->forward((images - mean_.to(images.dtype())) / std_.to(images.dtype()));
}

std::pair<std::vector<double>, std::vector<double>> channel_statistics(const torch::Tensor& images) {
  const int64_t channels = images.size(1);
  const double scale = images.scalar_type() == torch::kUInt8 ? 1.0 / 255.0 : 1.0;
  auto sum = torch::zeros({channels}, torch::kFloat64), squares = torch::zeros({channels}, torch::kFloat64);
  constexpr int64_t kChunk = 4096;
  for (int64_t begin = 0; begin < images.size(0); begin += kChunk) {
    const auto chunk = images.slice(0, begin, begin + kChunk).to(torch::kFloat64).mul_(scale).transpose(0, 1).flatten(1);
    sum += chunk.sum(1);
    squares += chunk.square().sum(1);
  }
  const double count = static_cast<double>(images.numel() / channels);
  std::vector<double> mean(channels), std(channels);
  for (int64_t c = 0; c < channels; ++c) {
    mean[c] = sum[c].item<double>() / count;
    std[c] = std::sqrt(std::max(squares[c].item<double>() / count - mean[c] * mean[c], 0.0));
  }
  return {mean, std};
}

}  // namespace distillery::nn
