#pragma once
// Scenes for a retina of P = grid x grid locations: MNIST digits placed in the cells of a canvas
// (3x3 cells of 28x28 on an 84x84 canvas by default), each location seeing one cell's window, and
// foveation: the centre location sees its window at full resolution, the peripheral ones a blurred
// and subsampled view (14x14), so that one set of weights could not even be applied everywhere.
#include <torch/torch.h>

#include <cstdint>

namespace distillery::data {

struct RetinaOptions {
  /// Locations per side; P = grid * grid, the fovea is the centre cell (grid must be odd).
  TORCH_ARG(int64_t, grid) = 3;
  /// Side of a cell and of a location's window, in pixels (MNIST: 28).
  TORCH_ARG(int64_t, window) = 28;
  /// Each digit is shifted by up to this many pixels inside the canvas (the part that leaves its
  /// cell is seen, if at all, by the neighbouring window).
  TORCH_ARG(int64_t, jitter) = 2;
  /// Foveation: peripheral locations see a blurred and subsampled view.
  TORCH_ARG(bool, foveate) = false;
  /// Standard deviation of the peripheral Gaussian blur, in window pixels.
  TORCH_ARG(double, blur_sigma) = 1.0;
  /// Peripheral subsampling factor (2: 28x28 -> 14x14 by 2x2 averages after the blur).
  TORCH_ARG(int64_t, subsample) = 2;
};

/// Checks the options (odd grid, window divisible by subsample, ...); InputError naming the field.
void check_retina_options(const RetinaOptions& options);

int64_t retina_locations(const RetinaOptions& options);
/// Index of the centre location (row-major cells).
int64_t fovea_location(const RetinaOptions& options);
/// Side of a peripheral location's view: window / subsample when foveated, else window.
int64_t peripheral_side(const RetinaOptions& options);

/// Places each digit in its cell and shifts it: digits [B, 1, W, W], cells [B] int64 in [0, P),
/// shifts [B, 2] int64 (|dy|, |dx| <= jitter) -> canvas [B, 1, grid * W, grid * W].
torch::Tensor compose_scenes(const torch::Tensor& digits, const torch::Tensor& cells, const torch::Tensor& shifts,
                             const RetinaOptions& options);

/// Cuts a canvas into its locations' windows: [B, 1, grid * W, grid * W] -> [B, P, W, W]
/// (location p = row p / grid, column p % grid).
torch::Tensor retina_windows(const torch::Tensor& canvas, const RetinaOptions& options);

/// What the location that holds a digit sees of it: the same as
/// retina_windows(compose_scenes(...))[b, cells[b]], without building the canvas.
/// digits [B, 1, W, W], shifts [B, 2] -> [B, W, W].
torch::Tensor own_window(const torch::Tensor& digits, const torch::Tensor& shifts, const RetinaOptions& options);

/// The peripheral view of windows: Gaussian blur (blur_sigma), then subsample x subsample
/// averages. [..., W, W] -> [..., W / subsample, W / subsample]. Identity when foveate is false.
torch::Tensor peripheral_view(const torch::Tensor& windows, const RetinaOptions& options);

/// A peripheral view resampled (bilinear) back to the window's size, so that a network trained on
/// full-resolution windows can be applied to it: [..., w, w] -> [..., W, W].
torch::Tensor upsample_view(const torch::Tensor& views, const RetinaOptions& options);

}  // namespace distillery::data
