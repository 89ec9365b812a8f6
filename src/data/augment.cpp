#include "distillery/data/augment.h"

namespace distillery::data {

torch::Tensor shift_images(const torch::Tensor& images, const torch::Tensor& shifts, int64_t max_shift) {
  TORCH_CHECK(images.dim() == 4, "shift_images: expected [B, C, H, W], got ", images.sizes());
  TORCH_CHECK(shifts.dim() == 2 && shifts.size(0) == images.size(0) && shifts.size(1) == 2,
              "shift_images: expected shifts [", images.size(0), ", 2], got ", shifts.sizes());
  if (max_shift == 0) return images;
  const int64_t batch = images.size(0), channels = images.size(1);
  const int64_t height = images.size(2), width = images.size(3);
  // Pad once, then pick each image's window with two gathers: rows, then columns.
  auto padded = torch::constant_pad_nd(images, {max_shift, max_shift, max_shift, max_shift}, 0.0);
  auto dy = shifts.select(1, 0).unsqueeze(1), dx = shifts.select(1, 1).unsqueeze(1);
  auto rows = torch::arange(height, shifts.options()).unsqueeze(0) + (max_shift - dy);  // [B, H]
  auto cols = torch::arange(width, shifts.options()).unsqueeze(0) + (max_shift - dx);   // [B, W]
  auto row_index = rows.view({batch, 1, height, 1}).expand({batch, channels, height, width + 2 * max_shift});
  auto picked_rows = padded.gather(/*dim=*/2, row_index);
  auto col_index = cols.view({batch, 1, 1, width}).expand({batch, channels, height, width});
  return picked_rows.gather(/*dim=*/3, col_index);
}

torch::Tensor random_shifts(int64_t batch, int64_t max_shift, torch::Generator& generator) {
  return torch::randint(-max_shift, max_shift + 1, {batch, 2}, generator, torch::kInt64);
}

torch::Tensor shift_ids(const torch::Tensor& shifts, int64_t max_shift) {
  const int64_t side = 2 * max_shift + 1;
  return (shifts.select(1, 0) + max_shift) * side + (shifts.select(1, 1) + max_shift);
}

}  // namespace distillery::data
