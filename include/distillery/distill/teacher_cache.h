#pragma once
// The teacher runs at most once per distinct input: its soft targets for each (training image,
// augmented view) are kept in memory, so later epochs read them instead of running the teacher again.
// It can also run the teacher ahead of the student: every step's batch is a function of the seed
// and the step, so the rows of the next few batches are known, and one teacher pass over all of
// them runs its matrix products on many rows at once, which is faster per row than one batch.
#include <optional>

#include <torch/torch.h>

#include "distillery/distill/teacher.h"
#include "distillery/train/trainer.h"

namespace distillery::distill {

class TeacherCache {
 public:
  /// Room for `dataset_size` images x `view_count` augmented views (data::Augmentation) x K
  /// classes of float32.
  TeacherCache(Teacher& teacher, double temperature, int64_t dataset_size, int64_t view_count);

  /// Soft targets [B, K] for a batch: `images` [B, C, H, W] already augmented, `indices` [B] into
  /// the training set, `views` [B] which view each is. Runs the teacher only on the rows not seen before.
  torch::Tensor soft_targets(const torch::Tensor& images, const torch::Tensor& indices, const torch::Tensor& views);

  /// From now on, fill_ahead(step) runs the teacher once on the rows of `batches` batches of
  /// `stream` (the trainer's own, rebuilt from the same dataset, batch size, augmentation and seed).
  void look_ahead(train::BatchStream stream, int64_t batches);

  /// If look-ahead is on and `step` is not yet filled: one teacher pass over the rows of steps
  /// step .. step + batches - 1 that are not cached. Otherwise nothing.
  void fill_ahead(int64_t step);

  int64_t teacher_rows() const { return teacher_rows_; }  // images the teacher actually ran on
  int64_t lookups() const { return lookups_; }            // images asked for
  int64_t bytes() const { return targets_.numel() * 4 + filled_.numel(); }

 private:
  Teacher& teacher_;
  double temperature_;
  int64_t view_count_;
  torch::Tensor targets_;  // [N * S, K] float32
  torch::Tensor filled_;   // [N * S] bool
  int64_t teacher_rows_ = 0, lookups_ = 0;
  std::optional<train::BatchStream> ahead_;
  int64_t ahead_batches_ = 1, filled_until_step_ = -1;

  // The teacher on the rows whose keys are not filled yet; stores them.
  void fill(const torch::Tensor& images, const torch::Tensor& keys);
  torch::Tensor keys(const torch::Tensor& indices, const torch::Tensor& views) const;
};

}  // namespace distillery::distill
