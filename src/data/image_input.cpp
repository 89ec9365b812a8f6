#include "distillery/data/image_input.h"

#include "distillery/error.h"
#include "distillery/report/image.h"

namespace distillery::data {

torch::Tensor prepare_like_mnist(const torch::Tensor& grey, int64_t size, int64_t box) {
  TORCH_CHECK(grey.dim() == 2, "prepare_like_mnist: expected [H, W], got ", grey.sizes());
  auto image = grey.to(torch::kFloat32);
  // MNIST digits are light on dark; a photo or drawing usually has a light background.
  if (image.mean().item<double>() > 0.5) image = 1.0 - image;
  // Crop to the ink, scale its longer side to `box`, keep the aspect ratio.
  auto ink = (image > 0.1).nonzero();
  if (ink.size(0) > 0) {
    const int64_t top = ink.select(1, 0).min().item<int64_t>(), bottom = ink.select(1, 0).max().item<int64_t>() + 1;
    const int64_t left = ink.select(1, 1).min().item<int64_t>(), right = ink.select(1, 1).max().item<int64_t>() + 1;
    image = image.slice(0, top, bottom).slice(1, left, right);
  }
  const int64_t h = image.size(0), w = image.size(1);
  const double scale = double(box) / double(std::max(h, w));
  const int64_t new_h = std::max<int64_t>(1, std::lround(h * scale)), new_w = std::max<int64_t>(1, std::lround(w * scale));
  auto scaled = torch::nn::functional::interpolate(
                    image.view({1, 1, h, w}),
                    torch::nn::functional::InterpolateFuncOptions().size(std::vector<int64_t>{new_h, new_w}).mode(torch::kArea))
                    .view({new_h, new_w});
  // Place so that the centre of mass lands in the middle of the field.
  const double mass = scaled.sum().item<double>();
  double cy = (new_h - 1) / 2.0, cx = (new_w - 1) / 2.0;
  if (mass > 0) {
    cy = (scaled.sum(1) * torch::arange(new_h, torch::kFloat32)).sum().item<double>() / mass;
    cx = (scaled.sum(0) * torch::arange(new_w, torch::kFloat32)).sum().item<double>() / mass;
  }
  const int64_t top = std::clamp<int64_t>(std::lround((size - 1) / 2.0 - cy), 0, size - new_h);
  const int64_t left = std::clamp<int64_t>(std::lround((size - 1) / 2.0 - cx), 0, size - new_w);
  auto field = torch::zeros({size, size}, torch::kFloat32);
  field.slice(0, top, top + new_h).slice(1, left, left + new_w).copy_(scaled);
  return field.unsqueeze(0);
}

torch::Tensor prepare_scene(const torch::Tensor& grey, int64_t size) {
  TORCH_CHECK(grey.dim() == 2, "prepare_scene: expected [H, W], got ", grey.sizes());
  auto image = grey.to(torch::kFloat32);
  if (image.mean().item<double>() > 0.5) image = 1.0 - image;
  if (image.size(0) == size && image.size(1) == size) return image.contiguous();
  // Area averaging when shrinking keeps thin strokes; bilinear when enlarging.
  const bool shrink = image.size(0) >= size && image.size(1) >= size;
  auto resize = torch::nn::functional::InterpolateFuncOptions().size(std::vector<int64_t>{size, size});
  if (shrink) {
    resize.mode(torch::kArea);
  } else {
    resize.mode(torch::kBilinear).align_corners(false);
  }
  return torch::nn::functional::interpolate(image.view({1, 1, image.size(0), image.size(1)}), resize).view({size, size}).clamp(0, 1);
}

torch::Tensor load_image_like_mnist(const std::string& path, int64_t size) {
  return prepare_like_mnist(report::read_grey_image(path), size);
}

}  // namespace distillery::data
