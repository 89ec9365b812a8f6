#include "distillery/distill/bias_adjustment.h"

namespace distillery::distill {

std::vector<int64_t> missing_classes(const torch::Tensor& labels, int64_t num_classes) {
  auto counts = torch::bincount(labels, /*weights=*/{}, num_classes);
  std::vector<int64_t> missing;
  for (int64_t c = 0; c < num_classes; ++c) {
    if (counts[c].item<int64_t>() == 0) missing.push_back(c);
  }
  return missing;
}

torch::Tensor shift_class_logits(const torch::Tensor& logits, const std::vector<int64_t>& classes, double shift) {
  auto offset = torch::zeros({logits.size(1)}, logits.options());
  for (auto c : classes) offset[c] = shift;
  return logits + offset;
}

BiasChoice choose_bias_shift(const torch::Tensor& validation_logits, const torch::Tensor& validation_labels,
                             const std::vector<int64_t>& classes, double max_shift, double step) {
  BiasChoice best{0.0, std::numeric_limits<int64_t>::max()};
  const int64_t steps = static_cast<int64_t>(std::round(max_shift / step));
  for (int64_t i = 0; i <= steps; ++i) {
    const double shift = i * step;
    auto predicted = shift_class_logits(validation_logits, classes, shift).argmax(/*dim=*/1);
    const int64_t errors = (predicted != validation_labels).sum().item<int64_t>();
    if (errors < best.validation_errors) best = {shift, errors};
  }
  return best;
}

void apply_bias_shift(nn::ClassifierImpl& model, const std::vector<int64_t>& classes, double shift) {
  torch::NoGradGuard no_grad;
  auto bias = model.output_bias();
  for (auto c : classes) bias[c] += shift;
}

}  // namespace distillery::distill
