#pragma once
// Images of the user's own given to a trained model: the preprocessing its checkpoint records.
#include <torch/torch.h>

#include <string>
#include <vector>

#include "distillery/data/dataset.h"
#include "distillery/nn/model_spec.h"

namespace distillery::train {

/// An image file as the model's input [1, C, H, W] float in [0, 1]. A model trained on an image
/// folder repeats that folder's preprocessing (channels, resize, crop); an MNIST-style model takes
/// the image centred like an MNIST digit. InputError names the file if its size does not fit.
torch::Tensor load_model_input(const std::string& path, const nn::ModelSpec& spec);

/// Labeled images to score a model on, from `path`: a folder of class folders (decoded with the
/// model's preprocessing, its classes among the model's) or a tensor file (data/tensor_file.h).
data::Dataset load_labeled_images(const std::string& path, const nn::ModelSpec& spec);

/// InputError naming `source` unless `dataset`'s images [C, H, W] and labels fit the model.
void require_model_input(const data::Dataset& dataset, const nn::ModelSpec& spec, const std::string& source);

/// The model's class names: its image folder's, else "0", "1", ...
std::vector<std::string> class_names(const nn::ModelSpec& spec);

}  // namespace distillery::train
