#pragma once
// Capsule networks with dynamic routing: Sabour, Frosst & Hinton 2017, "Dynamic Routing Between
// Capsules". A capsule is a group of neurons whose activity vector is an entity's pose; its length
// is the probability that the entity is present. Lower capsules send their output to the higher
// capsules whose predictions they agree with (routing by agreement).
//
// Also the paper's CNN baseline (three 5x5 convolutions, two fully connected layers, dropout).
#include <torch/torch.h>

#include <vector>

#include "distillery/nn/classifier.h"

namespace distillery::nn {

/// The squashing non-linearity (paper eq. 1): v = |s|^2 / (1 + |s|^2) * s / |s|, along `dim`.
/// Short vectors shrink to almost zero length, long ones to just below 1. `eps` keeps the
/// gradient finite at s = 0. Any shape -> the same shape.
torch::Tensor squash(const torch::Tensor& s, int64_t dim = -1, double eps = 1e-8);

/// What one routing pass produces.
struct RoutingOutput {
  torch::Tensor poses;     // v: [B, N_out, D_out]
  torch::Tensor coupling;  // c of the last iteration: [B, N_in, N_out], rows sum to 1 over N_out
};

/// Routing by agreement (paper procedure 1) on the predictions u_hat [B, N_in, N_out, D_out]:
/// logits b = 0; `iterations` times: c = softmax_j(b), s_j = sum_i c_ij u_hat_j|i, v_j = squash(s_j),
/// b_ij += u_hat_j|i . v_j (the last update is skipped: it would not be used). The logits are local
/// to the call, never parameters. Gradients flow through every iteration. Batched: no loop over
/// capsules, only over iterations. On CPU one fused kernel per image with a hand-written backward
/// pass (src/nn/dynamic_routing.cpp); float or double (other types are routed in float); first
/// derivatives only (its backward is not itself differentiable).
RoutingOutput dynamic_routing(const torch::Tensor& predictions, int64_t iterations);

/// The same routing written op by op in LibTorch, differentiated by autograd: the oracle the fused
/// kernel is tested against, its micro-benchmark baseline, and the path for non-CPU tensors.
RoutingOutput dynamic_routing_reference(const torch::Tensor& predictions, int64_t iterations);

/// Convolutional capsules: a convolution with num_types * caps_dim channels, read as num_types
/// capsule types of caps_dim dimensions at each output position, squashed.
struct PrimaryCapsOptions {
  PrimaryCapsOptions(int64_t in_channels, int64_t num_types, int64_t caps_dim)
      : in_channels_(in_channels), num_types_(num_types), caps_dim_(caps_dim) {}
  TORCH_ARG(int64_t, in_channels);
  TORCH_ARG(int64_t, num_types);  // paper: 32
  TORCH_ARG(int64_t, caps_dim);   // paper: 8
  TORCH_ARG(int64_t, kernel_size) = 9;
  TORCH_ARG(int64_t, stride) = 2;
};

class PrimaryCapsImpl : public torch::nn::Module {
 public:
  explicit PrimaryCapsImpl(const PrimaryCapsOptions& options);
  void reset();
  /// Feature maps [B, in_channels, H, W] -> capsules [B, num_types * H' * W', caps_dim], with
  /// H' = (H - kernel_size) / stride + 1; capsule index = (type * H' + y) * W' + x.
  torch::Tensor forward(const torch::Tensor& features);
  /// H' for an input of size `size`.
  int64_t output_size(int64_t size) const;

  PrimaryCapsOptions options_;

 private:
  torch::nn::Conv2d conv_ = nullptr;
};
TORCH_MODULE(PrimaryCaps);

/// A fully connected capsule layer: every input capsule i predicts every output capsule j through
/// its own transform matrix W_ij [D_out, D_in] (u_hat_j|i = W_ij u_i), then dynamic routing.
struct RoutingCapsOptions {
  RoutingCapsOptions(int64_t num_caps_in, int64_t dim_in, int64_t num_caps_out, int64_t dim_out)
      : num_caps_in_(num_caps_in), dim_in_(dim_in), num_caps_out_(num_caps_out), dim_out_(dim_out) {}
  TORCH_ARG(int64_t, num_caps_in);
  TORCH_ARG(int64_t, dim_in);
  TORCH_ARG(int64_t, num_caps_out);
  TORCH_ARG(int64_t, dim_out);
  TORCH_ARG(int64_t, iterations) = 3;
  TORCH_ARG(double, init_std) = 0.01;  // of W's entries
};

class RoutingCapsImpl : public torch::nn::Module {
 public:
  explicit RoutingCapsImpl(const RoutingCapsOptions& options);
  void reset();
  /// Predictions u_hat = W u: [B, N_in, D_in] -> [B, N_in, N_out, D_out] (one batched matrix
  /// product over the N_in input capsules).
  torch::Tensor predictions(const torch::Tensor& caps_in);
  /// [B, N_in, D_in] -> poses [B, N_out, D_out] and the coupling coefficients.
  RoutingOutput forward(const torch::Tensor& caps_in);

  RoutingCapsOptions options_;
  torch::Tensor weight;  // W: [N_in, D_in, N_out * D_out]
};
TORCH_MODULE(RoutingCaps);

/// The margin loss (paper eq. 4), summed over classes and averaged over the batch:
/// L_k = T_k max(0, m+ - |v_k|)^2 + lambda (1 - T_k) max(0, |v_k| - m-)^2.
struct MarginLossOptions {
  TORCH_ARG(double, m_plus) = 0.9;
  TORCH_ARG(double, m_minus) = 0.1;
  TORCH_ARG(double, lambda) = 0.5;
};
/// lengths [B, K]; targets [B] class indices, or [B, K] 0/1 (several digits present, MultiMNIST).
torch::Tensor margin_loss(const torch::Tensor& lengths, const torch::Tensor& targets,
                          const MarginLossOptions& options = {});

/// The reconstruction decoder: the poses with every capsule but one masked to zero
/// [B, K, D] -> hidden ReLU layers -> sigmoid image [B, C, H, W].
struct CapsDecoderOptions {
  CapsDecoderOptions(int64_t num_caps, int64_t caps_dim, int64_t in_channels, int64_t image_size)
      : num_caps_(num_caps), caps_dim_(caps_dim), in_channels_(in_channels), image_size_(image_size) {}
  TORCH_ARG(int64_t, num_caps);
  TORCH_ARG(int64_t, caps_dim);
  TORCH_ARG(int64_t, in_channels);
  TORCH_ARG(int64_t, image_size);
  TORCH_ARG(std::vector<int64_t>, hidden) = std::vector<int64_t>{512, 1024};
};

class CapsDecoderImpl : public torch::nn::Module {
 public:
  explicit CapsDecoderImpl(const CapsDecoderOptions& options);
  void reset();
  /// poses [B, K, D], which [B] (the capsule to keep) -> images [B, C, H, W] in (0, 1).
  torch::Tensor forward(const torch::Tensor& poses, const torch::Tensor& which);

  CapsDecoderOptions options_;

 private:
  torch::nn::Sequential layers_ = nullptr;
};
TORCH_MODULE(CapsDecoder);

/// Sum of squared differences per image, averaged over the batch, times `weight` (paper: 0.0005,
/// which keeps the reconstruction from dominating the margin loss). images and reconstructions
/// have the same shape [B, ...].
torch::Tensor reconstruction_loss(const torch::Tensor& reconstructions, const torch::Tensor& images, double weight = 0.0005);

/// The paper's CapsNet: Conv 256 9x9 ReLU -> PrimaryCaps 32 x 8D 9x9 stride 2 -> DigitCaps 10 x 16D
/// (routing) -> decoder 512-1024-784. Every size is an option, down to a small quick network.
struct CapsNetOptions {
  TORCH_ARG(int64_t, in_channels) = 1;
  TORCH_ARG(int64_t, image_size) = 28;
  TORCH_ARG(int64_t, conv_channels) = 256;
  TORCH_ARG(int64_t, conv_kernel) = 9;
  TORCH_ARG(int64_t, primary_types) = 32;
  TORCH_ARG(int64_t, primary_dim) = 8;
  TORCH_ARG(int64_t, primary_kernel) = 9;
  TORCH_ARG(int64_t, primary_stride) = 2;
  TORCH_ARG(int64_t, num_classes) = 10;
  TORCH_ARG(int64_t, class_dim) = 16;
  TORCH_ARG(int64_t, iterations) = 3;
  TORCH_ARG(std::vector<int64_t>, decoder_hidden) = std::vector<int64_t>{512, 1024};
};

struct CapsNetOutput {
  torch::Tensor lengths;         // [B, K]: |v_k|, the probability that class k is present
  torch::Tensor poses;           // [B, K, class_dim]
  torch::Tensor reconstruction;  // [B, C, H, W]; undefined when not asked for
  torch::Tensor coupling;        // [B, N_primary, K] of the last routing iteration
};

class CapsNetImpl : public ClassifierImpl {
 public:
  explicit CapsNetImpl(const CapsNetOptions& options);
  void reset();
  /// images [B, C, S, S] -> lengths, poses, and (when `mask` is defined) the reconstruction from
  /// the capsule `mask` [B] names (training: the true class; testing: the longest capsule).
  CapsNetOutput run(const torch::Tensor& images, const torch::Tensor& mask = {});
  /// Classifier view, images [B, C, S, S] -> logits [B, K]: the log-odds log(l / (1 - l)) of the
  /// capsule lengths plus `logit_bias` (zero unless bias adjustment shifts it). The margin loss
  /// trains each length as an independent presence probability, so its log-odds is the natural
  /// logit: the argmax is the longest capsule, and softmax(logits / T) of a confident CapsNet is
  /// as sharp as its lengths say (0.95 vs 0.05 gives p ~ 0.96 at T = 1), which log(l) would not be.
  torch::Tensor forward(const torch::Tensor& images) override;
  /// Reconstructions of `poses` [B, K, D] masked to capsule `which` [B].
  torch::Tensor reconstruct(const torch::Tensor& poses, const torch::Tensor& which);
  torch::Tensor output_bias() override { return logit_bias_; }
  int64_t num_classes() const override { return options_.num_classes(); }
  int64_t num_primary_caps() const;

  CapsNetOptions options_;

 private:
  torch::nn::Conv2d conv_ = nullptr;
  PrimaryCaps primary_ = nullptr;
  RoutingCaps digits_ = nullptr;
  CapsDecoder decoder_ = nullptr;
  torch::Tensor logit_bias_;
};
TORCH_MODULE(CapsNet);

/// The loss of one CapsNet training batch: margin loss plus the weighted reconstruction loss
/// (weight 0: no decoder pass). targets [B] or [B, K] as margin_loss takes them.
struct CapsNetLossOptions {
  MarginLossOptions margin;
  TORCH_ARG(double, reconstruction_weight) = 0.0005;
};
torch::Tensor capsnet_loss(CapsNetImpl& model, const torch::Tensor& images, const torch::Tensor& labels,
                           const CapsNetLossOptions& options = {});

/// The paper's CNN baseline: convolutions of `channels` (paper 256, 256, 128; 5x5, stride 1, same
/// padding, ReLU), fully connected `hidden` (paper 328, 192; ReLU), dropout, then the class layer.
struct CapsCnnBaselineOptions {
  TORCH_ARG(int64_t, in_channels) = 1;
  TORCH_ARG(int64_t, image_size) = 28;
  TORCH_ARG(std::vector<int64_t>, channels) = std::vector<int64_t>{256, 256, 128};
  TORCH_ARG(std::vector<int64_t>, hidden) = std::vector<int64_t>{328, 192};
  TORCH_ARG(int64_t, num_classes) = 10;
  TORCH_ARG(double, dropout) = 0.5;
};

class CapsCnnBaselineImpl : public ClassifierImpl {
 public:
  explicit CapsCnnBaselineImpl(const CapsCnnBaselineOptions& options);
  void reset();
  /// [B, in_channels, S, S] -> logits [B, num_classes].
  torch::Tensor forward(const torch::Tensor& images) override;
  torch::Tensor output_bias() override { return out_->bias; }
  int64_t num_classes() const override { return options_.num_classes(); }

  CapsCnnBaselineOptions options_;

 private:
  torch::nn::Sequential features_ = nullptr, hidden_ = nullptr;
  torch::nn::Linear out_ = nullptr;
};
TORCH_MODULE(CapsCnnBaseline);

}  // namespace distillery::nn
