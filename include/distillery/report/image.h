#pragma once
// PNG images: single images, grids of images, and PNG/PGM input for prediction.
#include <torch/torch.h>

#include <string>

namespace distillery::report {

/// Writes [H, W] (grey) or [3, H, W] (colour) float values in [0, 1] as a PNG file.
void write_png(const std::string& path, const torch::Tensor& image);

/// PNG bytes of the same, for embedding in HTML.
std::string encode_png(const torch::Tensor& image);

/// Tiles images [N, C, H, W] into one [C, rows * (H + pad) + pad, columns * (W + pad) + pad] image.
torch::Tensor image_grid(const torch::Tensor& images, int64_t columns, int64_t pad = 2, double background = 0.5);

/// Reads a PNG, PGM, JPEG or BMP file as grey [H, W] float in [0, 1]; InputError if it cannot.
torch::Tensor read_grey_image(const std::string& path);

/// Islands as colours over a grey image: labels [H, W] (island index, -1 for none) and image [H, W]
/// in [0, 1] -> [3, H, W]; a colour per island (8, repeating), the input in dim grey where -1.
torch::Tensor colour_islands(const torch::Tensor& labels, const torch::Tensor& image);

/// Base64 of bytes, for data: URIs.
std::string base64(const std::string& bytes);

}  // namespace distillery::report
