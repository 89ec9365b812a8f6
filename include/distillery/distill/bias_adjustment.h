#pragma once
// Bias adjustment for classes missing from a transfer set (Hinton et al. 2015, section 3): a
// student that never saw a class under-predicts it; raising that class's output bias repairs
// much of the damage. The shift is chosen on a validation split, never on the test set.
#include <torch/torch.h>

#include <vector>

#include "distillery/nn/classifier.h"

namespace distillery::distill {

/// Classes in 0..num_classes-1 that never occur in `labels`.
std::vector<int64_t> missing_classes(const torch::Tensor& labels, int64_t num_classes);

/// logits [N, K] with `shift` added to the columns of `classes`.
torch::Tensor shift_class_logits(const torch::Tensor& logits, const std::vector<int64_t>& classes, double shift);

struct BiasChoice {
  double shift = 0.0;
  int64_t validation_errors = 0;
};

/// The shift in [0, max_shift] (steps of `step`) with the fewest validation errors; ties go to
/// the smallest shift.
BiasChoice choose_bias_shift(const torch::Tensor& validation_logits, const torch::Tensor& validation_labels,
                             const std::vector<int64_t>& classes, double max_shift = 20.0, double step = 0.1);

/// Adds `shift` to the output bias of `classes` in the model itself.
void apply_bias_shift(nn::ClassifierImpl& model, const std::vector<int64_t>& classes, double shift);

}  // namespace distillery::distill
