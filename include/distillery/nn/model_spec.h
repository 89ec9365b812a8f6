#pragma once
// A model's architecture as data: built from a config, stored in every checkpoint, so that a
// checkpoint alone is enough to rebuild its model.
#include <nlohmann/json.hpp>

#include <memory>
#include <string>
#include <vector>

#include "distillery/nn/classifier.h"

namespace distillery::nn {

struct ModelSpec {
  std::string kind = "mlp";  // mlp | convnet | capsnet | capsnet-cnn | torchscript
  int64_t in_channels = 1;
  int64_t image_size = 28;
  int64_t num_classes = 10;
  std::vector<int64_t> hidden = {1200, 1200};  // mlp: hidden layer sizes; convnet: [hidden]
  std::vector<int64_t> channels = {32, 64};    // convnet only
  double dropout_input = 0.0;
  double dropout_hidden = 0.0;
  double max_norm = 0.0;
  // capsnet: channels = [conv channels, primary capsule types], hidden = decoder layers;
  // capsnet-cnn (the capsules paper's CNN baseline): channels = its convolutions, hidden = its
  // fully connected layers, dropout_hidden before the class layer.
  int64_t routing_iterations = 3;              // capsnet
  std::vector<int64_t> capsule_dims = {8, 16};  // capsnet: primary and class capsule dimensions
  // A model trained on an image folder keeps its class names and the preprocessing that eval and
  // predict must repeat (in_channels is the channel count the images were converted to).
  std::vector<std::string> classes;  // empty: the digits 0-9
  bool folder_input = false;         // false: MNIST-style input (predict centres a digit)
  int64_t input_resize = 0, input_crop = 0;
  // data.normalize: per-channel (x - mean) / std inside the model (empty: none).
  std::vector<double> input_mean, input_std;
  // torchscript: the module's file as given, and its bytes (kept in the checkpoint beside the
  // JSON, so that the checkpoint alone rebuilds the model).
  std::string script_path, script;

  nlohmann::json to_json() const;
  /// `source` names where the JSON came from, for error messages.
  static ModelSpec from_json(const nlohmann::json& json, const std::string& source);
};

std::shared_ptr<ClassifierImpl> make_model(const ModelSpec& spec);

/// Number of trainable scalars.
int64_t count_parameters(const torch::nn::Module& module);

}  // namespace distillery::nn
