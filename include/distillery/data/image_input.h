#pragma once
// Images from outside MNIST, prepared the way MNIST's were: grey, white ink on black, the digit
// scaled to fit a 20x20 box and centred by its centre of mass in a 28x28 field.
#include <torch/torch.h>

#include <string>

namespace distillery::data {

/// Grey image [H, W] in [0, 1] (any size, either polarity) -> [1, size, size] MNIST-style.
torch::Tensor prepare_like_mnist(const torch::Tensor& grey, int64_t size = 28, int64_t box = 20);

/// Reads a PNG/PGM/JPEG/BMP file and prepares it like MNIST.
torch::Tensor load_image_like_mnist(const std::string& path, int64_t size = 28);

/// A scene for GLOM: grey [H, W] in [0, 1] (either polarity) -> [size, size], light ink on dark,
/// the whole image resized (nothing cropped or centred: the digits keep their places).
torch::Tensor prepare_scene(const torch::Tensor& grey, int64_t size = 56);

}  // namespace distillery::data
