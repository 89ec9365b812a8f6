#pragma once
// The teacher runs at most once per distinct input: its soft targets for each (training image,
// shift) are kept in memory, so later epochs read them instead of running the teacher again.
#include <torch/torch.h>

#include "distillery/distill/teacher.h"

namespace distillery::distill {

class TeacherCache {
 public:
  /// Room for `dataset_size` images x (2 max_shift + 1)^2 shifts x K classes of float32.
  TeacherCache(Teacher& teacher, double temperature, int64_t dataset_size, int64_t max_shift);

  /// Soft targets [B, K] for a batch: `images` [B, C, H, W] already shifted, `indices` [B] into
  /// the training set, `shifts` [B, 2]. Runs the teacher only on the rows not seen before.
  torch::Tensor soft_targets(const torch::Tensor& images, const torch::Tensor& indices, const torch::Tensor& shifts);

  int64_t teacher_rows() const { return teacher_rows_; }  // images the teacher actually ran on
  int64_t lookups() const { return lookups_; }            // images asked for
  int64_t bytes() const { return targets_.numel() * 4 + filled_.numel(); }

 private:
  Teacher& teacher_;
  double temperature_;
  int64_t max_shift_;
  torch::Tensor targets_;  // [N * S, K] float32
  torch::Tensor filled_;   // [N * S] bool
  int64_t teacher_rows_ = 0, lookups_ = 0;
};

}  // namespace distillery::distill
