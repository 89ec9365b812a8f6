#pragma once
// A student written in PyTorch: a TorchScript module (torch.jit.script or torch.jit.trace, saved
// with .save()) trained here like a built-in model. Its parameters and buffers are registered on
// this module as the very same tensors, so the optimizer, checkpoints, digests and resume see them,
// and the TorchScript module, saved again, holds the trained weights.
#include <torch/script.h>
#include <torch/torch.h>

#include <map>
#include <string>

#include "distillery/nn/classifier.h"

namespace distillery::nn {

class TorchScriptClassifierImpl : public ClassifierImpl {
 public:
  /// `bytes`: the saved module; `source` names it in errors. The module must map images
  /// [B, in_channels, image_size, image_size] to logits [B, num_classes], or to a dict with
  /// "logits" and named feature maps; InputError naming `source` otherwise, or if it has no
  /// trainable parameters.
  TorchScriptClassifierImpl(const std::string& bytes, const std::string& source, int64_t in_channels, int64_t image_size,
                            int64_t num_classes);

  torch::Tensor forward(const torch::Tensor& images) override;
  /// The module's output dict's feature maps by name (empty when it returns logits alone).
  std::map<std::string, torch::Tensor> features(const torch::Tensor& images);
  void train(bool on = true) override;
  /// The last 1-D parameter of num_classes values (the output layer's bias); InputError if none.
  torch::Tensor output_bias() override;
  int64_t num_classes() const override { return num_classes_; }

  /// The TorchScript module itself (its weights are this module's parameters).
  torch::jit::Module& script() { return module_; }

 private:
  torch::jit::Module module_;
  std::string source_;
  int64_t num_classes_;

  c10::IValue run(const torch::Tensor& images);
};

/// The logits in a TorchScript module's output: the tensor itself, or a dict's "logits" entry.
/// InputError naming `source` for anything else. Teachers and students read outputs alike.
torch::Tensor torchscript_logits(const c10::IValue& output, const std::string& source);

/// The parameter name under which a TorchScript module's "a.b.weight" is registered ("a__b__weight":
/// a torch::nn::Module name cannot hold '.').
std::string torchscript_parameter_name(const std::string& name);

}  // namespace distillery::nn
