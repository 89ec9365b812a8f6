#include "distillery/distill/teacher_cache.h"

namespace distillery::distill {

TeacherCache::TeacherCache(Teacher& teacher, double temperature, int64_t dataset_size, int64_t view_count)
    : teacher_(teacher), temperature_(temperature), view_count_(view_count) {
  targets_ = torch::empty({dataset_size * view_count, teacher.num_classes()}, torch::kFloat32);
  filled_ = torch::zeros({dataset_size * view_count}, torch::kBool);
}

torch::Tensor TeacherCache::keys(const torch::Tensor& indices, const torch::Tensor& views) const {
  return indices * view_count_ + views;
}

void TeacherCache::fill(const torch::Tensor& images, const torch::Tensor& keys) {
  auto missing = filled_.index_select(0, keys).logical_not().nonzero().flatten();
  if (missing.numel() == 0) return;
  auto missing_keys = keys.index_select(0, missing);
  // A key drawn twice (the same image and shift in two batches ahead) runs once: any of its rows
  // stands for the others, since they hold the same input.
  auto [unique_keys, inverse] = at::_unique(missing_keys, /*sorted=*/false, /*return_inverse=*/true);
  auto representative = torch::empty({unique_keys.size(0)}, torch::kInt64)
                            .scatter_(0, inverse, torch::arange(missing_keys.size(0), torch::kInt64));
  auto fresh = teacher_.soft_targets(images.index_select(0, missing.index_select(0, representative)), temperature_);
  targets_.index_copy_(0, unique_keys, fresh);
  filled_.index_fill_(0, unique_keys, true);
  teacher_rows_ += unique_keys.size(0);
}

torch::Tensor TeacherCache::soft_targets(const torch::Tensor& images, const torch::Tensor& indices,
                                         const torch::Tensor& views) {
  const auto batch_keys = keys(indices, views);
  lookups_ += batch_keys.size(0);
  fill(images, batch_keys);
  return targets_.index_select(0, batch_keys);
}

void TeacherCache::look_ahead(train::BatchStream stream, int64_t batches) {
  TORCH_CHECK(batches >= 1, "teacher cache: look-ahead needs at least 1 batch, got ", batches);
  ahead_.emplace(std::move(stream));
  ahead_batches_ = batches;
  filled_until_step_ = -1;
}

void TeacherCache::fill_ahead(int64_t step) {
  const bool filled = step < filled_until_step_ && step >= filled_until_step_ - ahead_batches_;
  if (!ahead_ || ahead_batches_ <= 1 || step < 0 || filled) return;
  std::vector<torch::Tensor> images, batch_keys;
  for (int64_t s = step; s < step + ahead_batches_; ++s) {
    auto batch = ahead_->batch(s);
    images.push_back(batch.images);
    batch_keys.push_back(keys(batch.indices, batch.views));
  }
  fill(torch::cat(images), torch::cat(batch_keys));
  filled_until_step_ = step + ahead_batches_;
}

}  // namespace distillery::distill
