// Distils a teacher into a student through the C++ API: no config files, no command line.
// Data: two Gaussian blobs per class in 20 dimensions, made here, so the example needs no dataset.
#include <distillery/distill/distiller.h>
#include <distillery/distill/teacher.h>
#include <distillery/nn/mlp.h>
#include <distillery/nn/model_spec.h>
#include <distillery/train/evaluate.h>
#include <distillery/train/trainer.h>

#include <iostream>

namespace dl = distillery;

int main() {
  torch::manual_seed(0);
  const int64_t classes = 4, dims = 20, n = 2000;
  auto centres = torch::randn({classes, dims}) * 2.0;
  auto labels = torch::randint(classes, {n}, torch::kInt64);
  auto points = centres.index_select(0, labels) + torch::randn({n, dims});
  dl::data::Dataset data{points.view({n, 1, 1, dims}), labels};  // images [N, C, H, W] with H = 1, W = 20

  // The architecture as data goes into checkpoints; this example writes none (no run_dir).
  dl::nn::ModelSpec spec;
  spec.num_classes = classes;
  auto make_mlp = [&](std::vector<int64_t> hidden) {
    return std::make_shared<dl::nn::MLPImpl>(
        dl::nn::MLPOptions().in_features(dims).hidden(hidden).num_classes(classes));
  };
  auto teacher = make_mlp({64, 64});
  dl::train::TrainOptions options;
  options.epochs = 5;
  options.batch_size = 50;
  dl::train::fit(*teacher, spec, data, nullptr, dl::train::cross_entropy_objective, options);

  auto student = make_mlp({8});
  dl::distill::ModelTeacher soft_teacher(teacher, "teacher");
  auto objective = dl::distill::make_distillation_objective(
      soft_teacher, /*cache=*/nullptr, dl::distill::SoftTargetLossOptions().temperature(4.0));
  dl::train::fit(*student, spec, data, nullptr, objective, options);

  const auto teacher_eval = dl::train::evaluate(*teacher, data);
  const auto student_eval = dl::train::evaluate(*student, data);
  std::cout << "teacher accuracy " << teacher_eval.accuracy << ", distilled student accuracy " << student_eval.accuracy << "\n";
  return student_eval.accuracy > 0.9 ? 0 : 1;
}
