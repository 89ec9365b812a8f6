#include "distillery/data/capsule_sets.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>

#include "distillery/data/augment.h"
#include "distillery/error.h"

namespace distillery::data {

torch::Tensor MultiMnist::targets(int64_t num_classes) const {
  return torch::zeros({size(), num_classes}).scatter_(/*dim=*/1, labels, 1.0);
}

MultiMnist make_multi_mnist(const Dataset& source, int64_t count, const MultiMnistOptions& options) {
  TORCH_CHECK(source.images.dim() == 4, "make_multi_mnist: expected source images [M, C, S, S], got ", source.images.sizes());
  const int64_t size = source.images.size(2), canvas = options.canvas();
  if (size > canvas || (canvas - size) % 2 != 0) {
    throw InputError("make_multi_mnist: canvas " + std::to_string(canvas) + " must be at least the image size " +
                     std::to_string(size) + " and differ from it by an even number");
  }
  if (torch::bincount(source.labels).gt(0).sum().item<int64_t>() < 2) throw InputError("make_multi_mnist: the source needs at least two classes");
  if (count <= 0) throw InputError("make_multi_mnist: count must be positive, got " + std::to_string(count));
  auto generator = at::make_generator<at::CPUGeneratorImpl>(options.seed());
  const int64_t n = source.size();
  auto first = torch::randint(n, {count}, generator, torch::kInt64);
  auto second = torch::randint(n, {count}, generator, torch::kInt64);
  // Redraw the second digit wherever it has the first one's class, all such pairs at once.
  for (auto same = (source.labels.index_select(0, first) == source.labels.index_select(0, second)).nonzero().flatten();
       same.numel() > 0;
       same = (source.labels.index_select(0, first) == source.labels.index_select(0, second)).nonzero().flatten()) {
    second.index_put_({same}, torch::randint(n, {same.numel()}, generator, torch::kInt64));
  }
  const int64_t margin = (canvas - size) / 2;
  auto place = [&](const torch::Tensor& indices) {
    auto centred = torch::constant_pad_nd(source.images.index_select(0, indices), {margin, margin, margin, margin}, 0.0);
    auto shifts = random_shifts(count, options.max_shift(), generator);
    return shift_images(centred, shifts, options.max_shift());
  };
  MultiMnist out;
  auto a = place(first), b = place(second);
  out.components = torch::stack({a, b}, /*dim=*/1);
  out.images = (a + b).clamp_max(1.0);
  out.labels = torch::stack({source.labels.index_select(0, first), source.labels.index_select(0, second)}, /*dim=*/1);
  return out;
}

int64_t multi_mnist_errors(const torch::Tensor& scores, const torch::Tensor& labels) {
  TORCH_CHECK(scores.dim() == 2 && labels.dim() == 2 && labels.size(1) == 2 && scores.size(0) == labels.size(0),
              "multi_mnist_errors: expected scores [N, K] and labels [N, 2], got ", scores.sizes(), " and ", labels.sizes());
  auto top2 = std::get<0>(std::get<1>(scores.topk(2, /*dim=*/1)).sort(/*dim=*/1));
  auto truth = std::get<0>(labels.sort(/*dim=*/1));
  return (top2 != truth).any(/*dim=*/1).sum().item<int64_t>();
}

Dataset make_affine_mnist(const Dataset& source, const AffineMnistOptions& options) {
  TORCH_CHECK(source.images.dim() == 4, "make_affine_mnist: expected images [N, C, H, W], got ", source.images.sizes());
  if (options.min_scale() <= 0 || options.min_scale() > options.max_scale()) {
    throw InputError("make_affine_mnist: scale range [" + std::to_string(options.min_scale()) + ", " +
                     std::to_string(options.max_scale()) + "] is not a positive interval");
  }
  auto generator = at::make_generator<at::CPUGeneratorImpl>(options.seed());
  const int64_t n = source.size(), height = source.images.size(2), width = source.images.size(3);
  auto uniform = [&](double low, double high) { return torch::rand({n}, generator, torch::kDouble) * (high - low) + low; };
  const double max_angle = options.max_rotation_degrees() * M_PI / 180.0;
  auto angle = uniform(-max_angle, max_angle);
  auto shear = uniform(-options.max_shear(), options.max_shear());
  auto scale = uniform(options.min_scale(), options.max_scale());
  // Translation in affine_grid's normalised coordinates ([-1, 1] spans the image).
  auto tx = uniform(-options.max_translation(), options.max_translation()) * (2.0 / width);
  auto ty = uniform(-options.max_translation(), options.max_translation()) * (2.0 / height);
  // Forward map A = R(angle) * Shear(shear) * scale on (x, y); affine_grid wants the output->input
  // map, so theta = [A^-1 | -A^-1 t].
  auto cos = angle.cos(), sin = angle.sin();
  auto a11 = scale * cos, a12 = scale * (cos * shear - sin);
  auto a21 = scale * sin, a22 = scale * (sin * shear + cos);
  auto det = a11 * a22 - a12 * a21;
  auto i11 = a22 / det, i12 = -a12 / det, i21 = -a21 / det, i22 = a11 / det;
  auto theta = torch::stack({torch::stack({i11, i12, -(i11 * tx + i12 * ty)}, 1),
                             torch::stack({i21, i22, -(i21 * tx + i22 * ty)}, 1)},
                            1)
                   .to(source.images.dtype());  // [N, 2, 3]
  auto grid = torch::nn::functional::affine_grid(theta, source.images.sizes(), /*align_corners=*/false);
  Dataset out;
  out.images = torch::nn::functional::grid_sample(source.images, grid,
                                                  torch::nn::functional::GridSampleFuncOptions()
                                                      .mode(torch::kBilinear)
                                                      .padding_mode(torch::kZeros)
                                                      .align_corners(false))
                   .clamp(0.0, 1.0);
  out.labels = source.labels.clone();
  return out;
}

}  // namespace distillery::data
