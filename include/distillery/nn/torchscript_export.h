#pragma once
// A trained model as TorchScript, for anyone to torch.jit.load in Python or C++ without distillery.
#include <torch/script.h>

#include <string>

#include "distillery/nn/classifier.h"
#include "distillery/nn/model_spec.h"

namespace distillery::nn {

/// Whether `spec`'s architecture has a TorchScript export (mlp, convnet, torchscript).
bool has_torchscript_export(const ModelSpec& spec);

/// The model as a TorchScript module in eval mode, mapping images [B, C, H, W] (0-1) to logits:
/// its own weights (copied), its input normalisation included. A TorchScript student is its own
/// module; a built-in model is written out as the same operations on the same weights (dropout,
/// which does nothing at inference, left out). InputError for an architecture without an export.
torch::jit::Module to_torchscript(ClassifierImpl& model, const ModelSpec& spec);

/// to_torchscript, saved atomically at `path`.
void export_torchscript(ClassifierImpl& model, const ModelSpec& spec, const std::string& path);

}  // namespace distillery::nn
