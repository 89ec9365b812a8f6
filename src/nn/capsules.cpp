#include "distillery/nn/capsules.h"

namespace distillery::nn {

torch::Tensor squash(const torch::Tensor& s, int64_t dim, double eps) {
  auto squared = s.pow(2).sum(dim, /*keepdim=*/true);
  return s * (squared / (1.0 + squared)) / torch::sqrt(squared + eps);
}

// ---- PrimaryCaps --------------------------------------------------------------------------------

PrimaryCapsImpl::PrimaryCapsImpl(const PrimaryCapsOptions& options) : options_(options) { reset(); }

void PrimaryCapsImpl::reset() {
  TORCH_CHECK(options_.num_types() > 0 && options_.caps_dim() > 0 && options_.kernel_size() > 0 && options_.stride() > 0,
              "PrimaryCaps: sizes must be positive");
  conv_ = register_module("conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(options_.in_channels(),
                                                                               options_.num_types() * options_.caps_dim(),
                                                                               options_.kernel_size())
                                                         .stride(options_.stride())));
}

int64_t PrimaryCapsImpl::output_size(int64_t size) const {
  return (size - options_.kernel_size()) / options_.stride() + 1;
}

torch::Tensor PrimaryCapsImpl::forward(const torch::Tensor& features) {
  TORCH_CHECK(features.dim() == 4 && features.size(1) == options_.in_channels(),
              "PrimaryCaps: expected features [B, ", options_.in_channels(), ", H, W], got ", features.sizes());
  auto x = conv_->forward(features);  // [B, types * dim, H', W']
  const auto batch = x.size(0), height = x.size(2), width = x.size(3);
  x = x.view({batch, options_.num_types(), options_.caps_dim(), height, width})
          .permute({0, 1, 3, 4, 2})
          .reshape({batch, options_.num_types() * height * width, options_.caps_dim()});
  return squash(x, /*dim=*/-1);
}

// ---- RoutingCaps --------------------------------------------------------------------------------

RoutingCapsImpl::RoutingCapsImpl(const RoutingCapsOptions& options) : options_(options) { reset(); }

void RoutingCapsImpl::reset() {
  TORCH_CHECK(options_.num_caps_in() > 0 && options_.dim_in() > 0 && options_.num_caps_out() > 0 && options_.dim_out() > 0,
              "RoutingCaps: sizes must be positive");
  TORCH_CHECK(options_.iterations() >= 1, "RoutingCaps: iterations must be >= 1, got ", options_.iterations());
  weight = register_parameter(
      "weight", torch::randn({options_.num_caps_in(), options_.dim_in(), options_.num_caps_out() * options_.dim_out()}) *
                    options_.init_std());
}

torch::Tensor RoutingCapsImpl::predictions(const torch::Tensor& caps_in) {
  TORCH_CHECK(caps_in.dim() == 3 && caps_in.size(1) == options_.num_caps_in() && caps_in.size(2) == options_.dim_in(),
              "RoutingCaps: expected capsules [B, ", options_.num_caps_in(), ", ", options_.dim_in(), "], got ",
              caps_in.sizes());
  const auto batch = caps_in.size(0);
  // One matrix product per input capsule i, all at once: [N_in, B, D_in] x [N_in, D_in, N_out * D_out].
  auto u_hat = torch::bmm(caps_in.transpose(0, 1), weight);  // [N_in, B, N_out * D_out]
  // Laid out [B, N_out, N_in, D_out] in memory (what dynamic_routing works in), viewed as
  // [B, N_in, N_out, D_out].
  return u_hat.view({options_.num_caps_in(), batch, options_.num_caps_out(), options_.dim_out()})
      .permute({1, 2, 0, 3})
      .contiguous()
      .transpose(1, 2);
}

RoutingOutput RoutingCapsImpl::forward(const torch::Tensor& caps_in) {
  return dynamic_routing(predictions(caps_in), options_.iterations());
}

// ---- losses -------------------------------------------------------------------------------------

torch::Tensor margin_loss(const torch::Tensor& lengths, const torch::Tensor& targets, const MarginLossOptions& options) {
  TORCH_CHECK(lengths.dim() == 2, "margin_loss: expected lengths [B, K], got ", lengths.sizes());
  torch::Tensor present;
  if (targets.dim() == 1) {
    TORCH_CHECK(targets.size(0) == lengths.size(0), "margin_loss: targets [", targets.size(0), "] for lengths ",
                lengths.sizes());
    present = torch::one_hot(targets.to(torch::kInt64), lengths.size(1)).to(lengths.dtype());
  } else {
    TORCH_CHECK(targets.sizes() == lengths.sizes(), "margin_loss: targets ", targets.sizes(), " for lengths ",
                lengths.sizes());
    present = targets.to(lengths.dtype());
  }
  auto loss = present * torch::relu(options.m_plus() - lengths).pow(2) +
              options.lambda() * (1.0 - present) * torch::relu(lengths - options.m_minus()).pow(2);
  return loss.sum(/*dim=*/1).mean();
}

torch::Tensor reconstruction_loss(const torch::Tensor& reconstructions, const torch::Tensor& images, double weight) {
  TORCH_CHECK(reconstructions.numel() == images.numel() && reconstructions.size(0) == images.size(0),
              "reconstruction_loss: reconstructions ", reconstructions.sizes(), " for images ", images.sizes());
  return weight * (reconstructions.reshape(images.sizes()) - images).pow(2).flatten(1).sum(/*dim=*/1).mean();
}

// ---- decoder ------------------------------------------------------------------------------------

CapsDecoderImpl::CapsDecoderImpl(const CapsDecoderOptions& options) : options_(options) { reset(); }

void CapsDecoderImpl::reset() {
  layers_ = torch::nn::Sequential();
  int64_t width = options_.num_caps() * options_.caps_dim();
  for (auto size : options_.hidden()) {
    layers_->push_back(torch::nn::Linear(width, size));
    layers_->push_back(torch::nn::ReLU());
    width = size;
  }
  layers_->push_back(torch::nn::Linear(width, options_.in_channels() * options_.image_size() * options_.image_size()));
  layers_->push_back(torch::nn::Sigmoid());
  register_module("layers", layers_);
}

torch::Tensor CapsDecoderImpl::forward(const torch::Tensor& poses, const torch::Tensor& which) {
  TORCH_CHECK(poses.dim() == 3 && poses.size(1) == options_.num_caps() && poses.size(2) == options_.caps_dim(),
              "CapsDecoder: expected poses [B, ", options_.num_caps(), ", ", options_.caps_dim(), "], got ", poses.sizes());
  TORCH_CHECK(which.dim() == 1 && which.size(0) == poses.size(0), "CapsDecoder: expected which [", poses.size(0),
              "], got ", which.sizes());
  auto mask = torch::one_hot(which.to(torch::kInt64), options_.num_caps()).to(poses.dtype()).unsqueeze(-1);
  auto images = layers_->forward((poses * mask).flatten(1));
  return images.view({poses.size(0), options_.in_channels(), options_.image_size(), options_.image_size()});
}

// ---- CapsNet ------------------------------------------------------------------------------------

CapsNetImpl::CapsNetImpl(const CapsNetOptions& options) : options_(options) { reset(); }

int64_t CapsNetImpl::num_primary_caps() const {
  const int64_t conv_out = options_.image_size() - options_.conv_kernel() + 1;
  const int64_t primary_out = (conv_out - options_.primary_kernel()) / options_.primary_stride() + 1;
  return options_.primary_types() * primary_out * primary_out;
}

void CapsNetImpl::reset() {
  const int64_t conv_out = options_.image_size() - options_.conv_kernel() + 1;
  TORCH_CHECK(conv_out >= options_.primary_kernel(), "CapsNet: image_size ", options_.image_size(),
              " is too small for a ", options_.conv_kernel(), "x", options_.conv_kernel(), " convolution and ",
              options_.primary_kernel(), "x", options_.primary_kernel(), " primary capsules");
  conv_ = register_module("conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(options_.in_channels(), options_.conv_channels(),
                                                                               options_.conv_kernel())));
  primary_ = register_module(
      "primary", PrimaryCaps(PrimaryCapsOptions(options_.conv_channels(), options_.primary_types(), options_.primary_dim())
                                 .kernel_size(options_.primary_kernel())
                                 .stride(options_.primary_stride())));
  digits_ = register_module("digits", RoutingCaps(RoutingCapsOptions(num_primary_caps(), options_.primary_dim(),
                                                                     options_.num_classes(), options_.class_dim())
                                                      .iterations(options_.iterations())));
  decoder_ = register_module("decoder", CapsDecoder(CapsDecoderOptions(options_.num_classes(), options_.class_dim(),
                                                                       options_.in_channels(), options_.image_size())
                                                        .hidden(options_.decoder_hidden())));
  logit_bias_ = register_buffer("logit_bias", torch::zeros({options_.num_classes()}));
}

CapsNetOutput CapsNetImpl::run(const torch::Tensor& images, const torch::Tensor& mask) {
  TORCH_CHECK(images.dim() == 4 && images.size(1) == options_.in_channels() && images.size(2) == options_.image_size() &&
                  images.size(3) == options_.image_size(),
              "CapsNet: expected images [B, ", options_.in_channels(), ", ", options_.image_size(), ", ",
              options_.image_size(), "], got ", images.sizes());
  auto routed = digits_->forward(primary_->forward(torch::relu(conv_->forward(images))));
  CapsNetOutput out;
  out.poses = routed.poses;
  out.coupling = routed.coupling;
  out.lengths = torch::sqrt(out.poses.pow(2).sum(/*dim=*/-1) + 1e-12);
  if (mask.defined()) out.reconstruction = decoder_->forward(out.poses, mask);
  return out;
}

torch::Tensor CapsNetImpl::forward(const torch::Tensor& images) {
  auto lengths = run(images).lengths.clamp(1e-6, 1.0 - 1e-6);
  return torch::log(lengths) - torch::log1p(-lengths) + logit_bias_;
}

torch::Tensor CapsNetImpl::reconstruct(const torch::Tensor& poses, const torch::Tensor& which) {
  return decoder_->forward(poses, which);
}

torch::Tensor capsnet_loss(CapsNetImpl& model, const torch::Tensor& images, const torch::Tensor& labels,
                           const CapsNetLossOptions& options) {
  const bool reconstruct = options.reconstruction_weight() > 0;
  TORCH_CHECK(!reconstruct || labels.dim() == 1,
              "capsnet_loss: reconstruction needs one class per image (labels [B]), got labels ", labels.sizes());
  auto out = model.run(images, reconstruct ? labels : torch::Tensor());
  auto loss = margin_loss(out.lengths, labels, options.margin);
  if (reconstruct) loss = loss + reconstruction_loss(out.reconstruction, images, options.reconstruction_weight());
  return loss;
}

// ---- CNN baseline -------------------------------------------------------------------------------

CapsCnnBaselineImpl::CapsCnnBaselineImpl(const CapsCnnBaselineOptions& options) : options_(options) { reset(); }

void CapsCnnBaselineImpl::reset() {
  TORCH_CHECK(!options_.channels().empty(), "CapsCnnBaseline: needs at least one convolution");
  features_ = torch::nn::Sequential();
  int64_t in = options_.in_channels();
  for (auto c : options_.channels()) {
    features_->push_back(torch::nn::Conv2d(torch::nn::Conv2dOptions(in, c, 5).padding(2)));
    features_->push_back(torch::nn::ReLU());
    in = c;
  }
  register_module("features", features_);
  hidden_ = torch::nn::Sequential();
  int64_t width = in * options_.image_size() * options_.image_size();
  for (auto h : options_.hidden()) {
    hidden_->push_back(torch::nn::Linear(width, h));
    hidden_->push_back(torch::nn::ReLU());
    width = h;
  }
  register_module("hidden", hidden_);
  out_ = register_module("out", torch::nn::Linear(width, options_.num_classes()));
}

torch::Tensor CapsCnnBaselineImpl::forward(const torch::Tensor& images) {
  TORCH_CHECK(images.dim() == 4 && images.size(1) == options_.in_channels() && images.size(2) == options_.image_size() &&
                  images.size(3) == options_.image_size(),
              "CapsCnnBaseline: expected [B, ", options_.in_channels(), ", ", options_.image_size(), ", ",
              options_.image_size(), "], got ", images.sizes());
  auto x = features_->forward(images).flatten(1);
  if (!hidden_->is_empty()) x = hidden_->forward(x);
  return out_->forward(torch::dropout(x, options_.dropout(), is_training()));
}

}  // namespace distillery::nn
