#pragma once
// Images of the user's own given to a trained model: the preprocessing its checkpoint records.
#include <torch/torch.h>

#include <string>
#include <vector>

#include "distillery/nn/model_spec.h"

namespace distillery::train {

/// An image file as the model's input [1, C, H, W] float in [0, 1]. A model trained on an image
/// folder repeats that folder's preprocessing (channels, resize, crop); an MNIST-style model takes
/// the image centred like an MNIST digit. InputError names the file if its size does not fit.
torch::Tensor load_model_input(const std::string& path, const nn::ModelSpec& spec);

/// The model's class names: its image folder's, else "0", "1", ...
std::vector<std::string> class_names(const nn::ModelSpec& spec);

}  // namespace distillery::train
