#pragma once
// SGD with momentum (torch::optim::SGD's rule: buf = momentum * buf + (1 - dampening) * (grad +
// weight_decay * p); p -= lr * buf, or lr * (grad + momentum * buf) with Nesterov) as one pass
// over each parameter. torch::optim::SGD makes three (buf.mul_, buf.add_, p.add_) plus a fourth
// for weight decay; on the 2.4M-parameter teacher they were about 15% of a step in the Python
// reference's profile. The state is torch::optim::SGD's own (SGDParamState::momentum_buffer), so
// checkpoints of either load in the other, and the rule is the same (tested against it).
#include <torch/torch.h>

#include <vector>

namespace distillery::train {

class FusedSGD : public torch::optim::SGD {
 public:
  FusedSGD(std::vector<torch::Tensor> params, torch::optim::SGDOptions defaults)
      : torch::optim::SGD(std::move(params), std::move(defaults)) {}
  torch::Tensor step(LossClosure closure = nullptr) override;
};

}  // namespace distillery::train
