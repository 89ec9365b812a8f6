#pragma once
// The interface every classifier in distillery offers to trainers, teachers and reports.
#include <torch/torch.h>

namespace distillery::nn {

class ClassifierImpl : public torch::nn::Module {
 public:
  /// Images [B, C, H, W] -> logits [B, num_classes].
  virtual torch::Tensor forward(const torch::Tensor& images) = 0;
  /// Called after every optimizer step (weight constraints such as max-norm).
  virtual void after_step() {}
  /// The bias of the output layer [num_classes]: bias adjustment for classes missing from a
  /// transfer set shifts entries of it.
  virtual torch::Tensor output_bias() = 0;
  virtual int64_t num_classes() const = 0;
  /// The architecture itself, without a wrapper such as input normalisation (for code that needs
  /// a particular kind, e.g. a CapsNet's reconstructions).
  virtual ClassifierImpl& core() { return *this; }
};

}  // namespace distillery::nn
