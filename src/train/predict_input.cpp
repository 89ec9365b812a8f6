#include "distillery/train/predict_input.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <filesystem>

#include "distillery/data/dataset.h"
#include "distillery/data/image_folder.h"
#include "distillery/data/image_input.h"
#include "distillery/data/tensor_file.h"
#include "distillery/error.h"

namespace distillery::train {

torch::Tensor load_model_input(const std::string& path, const nn::ModelSpec& spec) {
  if (!spec.folder_input) return data::load_image_like_mnist(path, spec.image_size).unsqueeze(0);
  const auto image = data::decode_image(path, {spec.in_channels, spec.input_resize, spec.input_crop});
  if (image.size(1) != spec.image_size || image.size(2) != spec.image_size) {
    throw InputError(fmt::format("{}: after the model's preprocessing (resize {}, crop {}) the image is {}x{}, the model takes {}x{}",
                                 path, spec.input_resize, spec.input_crop, image.size(1), image.size(2), spec.image_size,
                                 spec.image_size));
  }
  return data::model_input(image.unsqueeze(0));
}

data::Dataset load_labeled_images(const std::string& path, const nn::ModelSpec& spec) {
  data::Dataset dataset;
  if (std::filesystem::is_directory(path)) {
    auto folder = data::load_image_folder(path, {spec.in_channels, spec.input_resize, spec.input_crop}, true, data::OnBadImage::Skip,
                                          spec.classes);
    if (folder.classes.empty()) throw InputError(path + ": holds no class folders (ROOT/<class>/<image>) to score against");
    dataset = {folder.images, folder.labels, folder.classes};
  } else {
    auto file = data::read_tensor_file(path);
    if (!file.labels.defined()) throw InputError(path + ": holds no labels to score against");
    if (!file.classes.empty() && !spec.classes.empty() && file.classes != spec.classes) {
      throw InputError(fmt::format("{}: classes [{}] differ from the model's [{}]", path, fmt::join(file.classes, ", "), fmt::join(spec.classes, ", ")));
    }
    dataset = {file.images, file.labels, spec.classes};
  }
  require_model_input(dataset, spec, path);
  return dataset;
}

void require_model_input(const data::Dataset& dataset, const nn::ModelSpec& spec, const std::string& source) {
  const auto shape = dataset.images.sizes().slice(1);
  if (shape != torch::IntArrayRef({spec.in_channels, spec.image_size, spec.image_size})) {
    throw InputError(fmt::format("{}: images are [{}] (channels, height, width) but the model takes [{}, {}, {}]", source,
                                 fmt::join(shape, ", "), spec.in_channels, spec.image_size, spec.image_size));
  }
  if (dataset.size() > 0) {
    const int64_t largest = dataset.labels.max().item<int64_t>(), smallest = dataset.labels.min().item<int64_t>();
    if (smallest < 0 || largest >= spec.num_classes) {
      throw InputError(fmt::format("{}: label {} is outside the model's {} classes", source, smallest < 0 ? smallest : largest, spec.num_classes));
    }
  }
}

std::vector<std::string> class_names(const nn::ModelSpec& spec) {
  if (!spec.classes.empty()) return spec.classes;
  std::vector<std::string> names;
  for (int64_t c = 0; c < spec.num_classes; ++c) names.push_back(std::to_string(c));
  return names;
}

}  // namespace distillery::train
