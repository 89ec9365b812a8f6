#pragma once
// Distillation runs: a student trained on a transfer set to match a teacher's soft targets.
#include <nlohmann/json.hpp>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "distillery/config.h"
#include "distillery/distill/loss.h"
#include "distillery/distill/teacher.h"
#include "distillery/distill/teacher_cache.h"
#include "distillery/train/evaluate.h"
#include "distillery/train/trainer.h"

namespace distillery::distill {

/// Which distillation loss (distill.method) and its settings.
struct DistillMethod {
  std::string name = "kd";  // kd: Hinton's soft targets; dkd: decoupled KD
  double dkd_alpha = 1.0, dkd_beta = 8.0;
  int64_t warmup_steps = 0;  // dkd: its weight grows linearly to 1 over these steps
};

/// The trainer objective of distillation. The teacher sees exactly the student's (augmented)
/// batch; with a cache it runs at most once per (image, view). dkd's target class is the label,
/// or the teacher's argmax for an unlabeled image; the hard term applies to both methods.
train::Objective make_distillation_objective(Teacher& teacher, TeacherCache* cache, const SoftTargetLossOptions& options,
                                             const DistillMethod& method = {});

/// Bias adjustment results for classes missing from the transfer set.
struct BiasReport {
  std::vector<int64_t> classes;
  double validation_shift = 0.0;              // chosen on the validation split
  train::EvalResult test_after;               // test set with that shift
  std::optional<double> reference_shift;      // a published shift (distill.paper_bias_shift)
  std::optional<train::EvalResult> test_at_reference;
  nlohmann::json to_json() const;
};

struct DistillOutcome {
  std::string run_dir;
  std::shared_ptr<nn::ClassifierImpl> student;
  std::string teacher;
  train::TrainResult train;
  train::EvalResult test;               // before any bias adjustment
  std::optional<BiasReport> bias;
  int64_t teacher_rows = 0, teacher_lookups = 0;
  int64_t num_parameters = 0;
  std::string worth;  // teacher against student: accuracy, size, speed (report::worth_table)
};

/// `distillery distill`: trains the configured student on the transfer set (data.*) towards the
/// teachers in distill.teachers, then adjusts biases of missing classes when asked. Writes the
/// run folder (config.yaml, metrics.jsonl, checkpoint.pt, result.json).
DistillOutcome run_distillation(const Config& config, const std::atomic<bool>* stop_requested = nullptr);

}  // namespace distillery::distill
