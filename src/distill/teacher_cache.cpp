#include "distillery/distill/teacher_cache.h"

#include "distillery/data/augment.h"

namespace distillery::distill {

TeacherCache::TeacherCache(Teacher& teacher, double temperature, int64_t dataset_size, int64_t max_shift)
    : teacher_(teacher), temperature_(temperature), max_shift_(max_shift) {
  const int64_t shifts = (2 * max_shift + 1) * (2 * max_shift + 1);
  targets_ = torch::empty({dataset_size * shifts, teacher.num_classes()}, torch::kFloat32);
  filled_ = torch::zeros({dataset_size * shifts}, torch::kBool);
}

torch::Tensor TeacherCache::soft_targets(const torch::Tensor& images, const torch::Tensor& indices,
                                         const torch::Tensor& shifts) {
  const int64_t side = (2 * max_shift_ + 1) * (2 * max_shift_ + 1);
  auto keys = indices * side + data::shift_ids(shifts, max_shift_);
  auto missing = filled_.index_select(0, keys).logical_not().nonzero().flatten();
  lookups_ += keys.size(0);
  if (missing.numel() > 0) {
    auto fresh = teacher_.soft_targets(images.index_select(0, missing), temperature_);
    auto missing_keys = keys.index_select(0, missing);
    targets_.index_copy_(0, missing_keys, fresh);
    filled_.index_fill_(0, missing_keys, true);
    teacher_rows_ += missing.numel();
  }
  return targets_.index_select(0, keys);
}

}  // namespace distillery::distill
