#include "distillery/train/predict_input.h"

#include <fmt/format.h>

#include "distillery/data/dataset.h"
#include "distillery/data/image_folder.h"
#include "distillery/data/image_input.h"
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

std::vector<std::string> class_names(const nn::ModelSpec& spec) {
  if (!spec.classes.empty()) return spec.classes;
  std::vector<std::string> names;
  for (int64_t c = 0; c < spec.num_classes; ++c) names.push_back(std::to_string(c));
  return names;
}

}  // namespace distillery::train
