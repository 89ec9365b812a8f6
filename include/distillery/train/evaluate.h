#pragma once
// Evaluation: errors, accuracy, per-class errors and the confusion matrix.
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <functional>
#include <string>
#include <vector>

#include "distillery/data/dataset.h"
#include "distillery/nn/classifier.h"

namespace distillery::train {

struct EvalResult {
  int64_t count = 0;
  int64_t errors = 0;
  double accuracy = 0.0;
  torch::Tensor confusion;  // [C, C] int64: row = true class, column = predicted class
  std::vector<std::string> classes;  // the dataset's class names (empty: the digits 0-9)

  /// Errors among examples of class c.
  int64_t class_errors(int64_t c) const;
  int64_t class_count(int64_t c) const;
  nlohmann::json to_json() const;
};

/// A network as a function: images [B, C, H, W] (float, 0-1) -> logits [B, K].
using Forward = std::function<torch::Tensor(const torch::Tensor&)>;

/// Logits of `forward` on all images [N, C, H, W] (uint8 or float) without autograd, batch by batch.
torch::Tensor predict_logits(const Forward& forward, const torch::Tensor& images, int64_t batch_size = 1000);
/// The same for `model`, in eval mode (its mode restored after).
torch::Tensor predict_logits(nn::ClassifierImpl& model, const torch::Tensor& images, int64_t batch_size = 1000);

/// Scores predictions (logits [N, C]) against labels [N].
EvalResult score_logits(const torch::Tensor& logits, const torch::Tensor& labels, int64_t num_classes);

EvalResult evaluate(nn::ClassifierImpl& model, const data::Dataset& dataset, int64_t batch_size = 1000);

}  // namespace distillery::train
