#pragma once
// Dropout (Srivastava et al. 2014) as one pass over memory, optionally fused with the ReLU before
// it. torch::dropout draws a float Bernoulli mask with one mt19937 call per element, then multiplies
// twice; on the 1200-1200 MLP that was a quarter of a training step in the Python reference. Here the
// keep decisions come from a counter-based hash (splitmix64 of seed + element index; one 32-bit
// uniform per element), the seed is drawn from LibTorch's default CPU generator (so torch::manual_seed
// and a checkpoint's saved RNG state make runs repeat exactly), and backward keeps a byte mask.
#include <torch/torch.h>

namespace distillery::nn {

/// [any shape] -> same shape. While training, each element is kept with probability 1 - p and
/// scaled by 1 / (1 - p), else zeroed (p is used to 2^-32 resolution). Not training, or p = 0: x.
torch::Tensor fused_dropout(const torch::Tensor& x, double p, bool training);

/// dropout(relu(x)) in one pass forward and one backward; not training, or p = 0: relu(x).
torch::Tensor fused_relu_dropout(const torch::Tensor& x, double p, bool training);

}  // namespace distillery::nn
