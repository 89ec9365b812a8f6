#pragma once
// Checkpoints: model weights, its architecture, optimizer state, progress and RNG state in one
// file, written to a temporary file and renamed so that a crash never leaves a torn checkpoint.
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <memory>
#include <string>

#include "distillery/nn/classifier.h"
#include "distillery/nn/model_spec.h"

namespace distillery::train {

/// What a checkpoint holds besides tensors.
struct CheckpointMeta {
  nn::ModelSpec spec;
  int64_t step = 0;        // optimizer steps taken
  nlohmann::json extra;    // anything the writer wants to keep (config, results)
};

/// Writes atomically: `path`.tmp, fsync, rename. The optimizer may be null.
void save_checkpoint(const std::string& path, nn::ClassifierImpl& model, const CheckpointMeta& meta,
                     torch::optim::Optimizer* optimizer);

/// Reads only the metadata.
CheckpointMeta read_checkpoint_meta(const std::string& path);

/// Copies the checkpoint's weights into `model`, and the optimizer state and global RNG state when
/// `optimizer` is given. Throws InputError naming the first tensor whose name or shape differs.
CheckpointMeta load_checkpoint_into(const std::string& path, nn::ClassifierImpl& model,
                                    torch::optim::Optimizer* optimizer);

/// Builds the checkpoint's model from its stored architecture and loads its weights (eval mode).
struct LoadedModel {
  std::shared_ptr<nn::ClassifierImpl> model;
  CheckpointMeta meta;
};
LoadedModel load_model(const std::string& path);

/// A fingerprint of a module's weights and buffers (FNV-1a over names, shapes and bytes, in hex):
/// equal digests mean bitwise-equal weights, so two runs can be compared without a tolerance.
std::string weights_digest(const torch::nn::Module& module);

/// NaN and Inf entries among a module's parameters and buffers (0 for a healthy checkpoint).
int64_t count_nonfinite(const torch::nn::Module& module);

}  // namespace distillery::train
