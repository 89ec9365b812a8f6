#include "distillery/data/retina_scenes.h"

#include <fmt/format.h>

#include <cmath>

#include "distillery/data/augment.h"
#include "distillery/error.h"

namespace distillery::data {

void check_retina_options(const RetinaOptions& options) {
  if (options.grid() < 1 || options.grid() % 2 == 0) {
    throw InputError(fmt::format("locality.grid = {}: must be odd and >= 1 (the fovea is the centre cell)", options.grid()));
  }
  if (options.window() < 2) throw InputError(fmt::format("retina window = {}: must be >= 2", options.window()));
  if (options.jitter() < 0 || options.jitter() >= options.window()) {
    throw InputError(fmt::format("locality.jitter = {}: must be in [0, {})", options.jitter(), options.window()));
  }
  if (options.subsample() < 1 || options.window() % options.subsample() != 0) {
    throw InputError(fmt::format("locality.subsample = {}: must divide the window size {}", options.subsample(), options.window()));
  }
  if (!(options.blur_sigma() >= 0)) throw InputError(fmt::format("locality.blur_sigma = {}: must be >= 0", options.blur_sigma()));
}

int64_t retina_locations(const RetinaOptions& options) { return options.grid() * options.grid(); }

int64_t fovea_location(const RetinaOptions& options) { return retina_locations(options) / 2; }

int64_t peripheral_side(const RetinaOptions& options) {
  return options.foveate() ? options.window() / options.subsample() : options.window();
}

torch::Tensor compose_scenes(const torch::Tensor& digits, const torch::Tensor& cells, const torch::Tensor& shifts,
                             const RetinaOptions& options) {
  const int64_t w = options.window(), g = options.grid(), batch = digits.size(0);
  TORCH_CHECK(digits.dim() == 4 && digits.size(1) == 1 && digits.size(2) == w && digits.size(3) == w,
              "compose_scenes: expected digits [B, 1, ", w, ", ", w, "], got ", digits.sizes());
  TORCH_CHECK(cells.dim() == 1 && cells.size(0) == batch, "compose_scenes: expected cells [", batch, "], got ", cells.sizes());
  TORCH_CHECK(shifts.dim() == 2 && shifts.size(0) == batch && shifts.size(1) == 2,
              "compose_scenes: expected shifts [", batch, ", 2], got ", shifts.sizes());
  // Put each digit in its cell of [B, P, W, W], lay the cells out as the canvas, then shift the
  // whole canvas so that a digit can cross into its neighbours' windows.
  auto cell_stack = torch::zeros({batch, g * g, w, w}, digits.options());
  cell_stack.index_put_({torch::arange(batch, cells.options()), cells}, digits.squeeze(1));
  auto canvas = cell_stack.view({batch, g, g, w, w}).permute({0, 1, 3, 2, 4}).reshape({batch, 1, g * w, g * w});
  return shift_images(canvas, shifts, options.jitter());
}

torch::Tensor retina_windows(const torch::Tensor& canvas, const RetinaOptions& options) {
  const int64_t w = options.window(), g = options.grid();
  TORCH_CHECK(canvas.dim() == 4 && canvas.size(1) == 1 && canvas.size(2) == g * w && canvas.size(3) == g * w,
              "retina_windows: expected canvas [B, 1, ", g * w, ", ", g * w, "], got ", canvas.sizes());
  const int64_t batch = canvas.size(0);
  return canvas.view({batch, g, w, g, w}).permute({0, 1, 3, 2, 4}).reshape({batch, g * g, w, w});
}

torch::Tensor own_window(const torch::Tensor& digits, const torch::Tensor& shifts, const RetinaOptions& options) {
  const int64_t w = options.window();
  TORCH_CHECK(digits.dim() == 4 && digits.size(1) == 1 && digits.size(2) == w && digits.size(3) == w,
              "own_window: expected digits [B, 1, ", w, ", ", w, "], got ", digits.sizes());
  return shift_images(digits, shifts, options.jitter()).squeeze(1);
}

namespace {

// Normalised 1-D Gaussian of radius ceil(3 sigma): [2r + 1].
torch::Tensor gaussian_taps(double sigma, const torch::TensorOptions& options) {
  const int64_t radius = static_cast<int64_t>(std::ceil(3.0 * sigma));
  auto x = torch::arange(-radius, radius + 1, options);
  auto taps = torch::exp(-(x * x) / (2.0 * sigma * sigma));
  return taps / taps.sum();
}

}  // namespace

torch::Tensor peripheral_view(const torch::Tensor& windows, const RetinaOptions& options) {
  const int64_t w = options.window();
  TORCH_CHECK(windows.dim() >= 2 && windows.size(-1) == w && windows.size(-2) == w,
              "peripheral_view: expected [..., ", w, ", ", w, "], got ", windows.sizes());
  if (!options.foveate()) return windows;
  auto sizes = windows.sizes().vec();
  auto x = windows.reshape({-1, 1, w, w});
  if (options.blur_sigma() > 0) {
    auto taps = gaussian_taps(options.blur_sigma(), x.options());
    const int64_t radius = taps.size(0) / 2;
    // Separable blur with zero padding (the window's surround is dark).
    x = torch::conv2d(x, taps.view({1, 1, -1, 1}), {}, /*stride=*/1, /*padding=*/torch::IntArrayRef{radius, 0});
    x = torch::conv2d(x, taps.view({1, 1, 1, -1}), {}, /*stride=*/1, /*padding=*/torch::IntArrayRef{0, radius});
  }
  if (options.subsample() > 1) x = torch::avg_pool2d(x, options.subsample());
  sizes[sizes.size() - 2] = x.size(2);
  sizes[sizes.size() - 1] = x.size(3);
  return x.reshape(sizes);
}

torch::Tensor upsample_view(const torch::Tensor& views, const RetinaOptions& options) {
  const int64_t w = options.window();
  TORCH_CHECK(views.dim() >= 2 && views.size(-1) == views.size(-2), "upsample_view: expected [..., w, w], got ", views.sizes());
  if (views.size(-1) == w) return views;
  auto sizes = views.sizes().vec();
  const int64_t side = views.size(-1);
  auto x = views.reshape({-1, 1, side, side});
  x = torch::nn::functional::interpolate(
      x, torch::nn::functional::InterpolateFuncOptions().size(std::vector<int64_t>{w, w}).mode(torch::kBilinear).align_corners(false));
  sizes[sizes.size() - 2] = w;
  sizes[sizes.size() - 1] = w;
  return x.reshape(sizes);
}

}  // namespace distillery::data
