#include "distillery/distill/distiller.h"

#include <spdlog/spdlog.h>

#include "distillery/distill/bias_adjustment.h"
#include "distillery/error.h"
#include "distillery/report/metrics.h"
#include "distillery/report/run_report.h"
#include "distillery/train/checkpoint.h"
#include "distillery/train/misclassified.h"
#include "distillery/train/model_cost.h"
#include "distillery/train/run.h"

namespace distillery::distill {

train::Objective make_distillation_objective(Teacher& teacher, TeacherCache* cache, const SoftTargetLossOptions& options,
                                             const DistillMethod& method) {
  return [&teacher, cache, options, method](const train::Batch& batch, const torch::Tensor& logits) {
    if (cache) cache->fill_ahead(batch.step);
    auto targets = cache ? cache->soft_targets(batch.images, batch.indices, batch.views)
                         : teacher.soft_targets(batch.images, options.temperature());
    if (method.name != "dkd") return soft_target_loss_from_probs(logits, targets, batch.labels, options);
    const auto target = batch.labels.defined() ? torch::where(batch.labels >= 0, batch.labels, targets.argmax(1)) : targets.argmax(1);
    const double warmup = method.warmup_steps > 0 ? std::min(1.0, double(batch.step + 1) / double(method.warmup_steps)) : 1.0;
    auto loss = warmup * options.soft_weight() *
                decoupled_kd_loss(logits, targets, target, options.temperature(), method.dkd_alpha, method.dkd_beta);
    if (options.hard_weight() > 0) loss = loss + options.hard_weight() * torch::nn::functional::cross_entropy(logits, batch.labels);
    return loss;
  };
}

nlohmann::json BiasReport::to_json() const {
  nlohmann::json json = {{"classes", classes}, {"validation_shift", validation_shift}, {"test_after", test_after.to_json()}};
  if (reference_shift) {
    json["reference_shift"] = *reference_shift;
    json["test_at_reference"] = test_at_reference->to_json();
  }
  return json;
}

DistillOutcome run_distillation(const Config& config, const std::atomic<bool>* stop_requested) {
  train::apply_thread_config(config);
  const bool unlabeled = config.get_string("data.labels") == "none";
  if (unlabeled && config.get_double("distill.hard_weight") > 0) {
    throw InputError(fmt::format("distill.hard_weight is {} but data.labels is none: an unlabeled transfer set has no hard "
                                 "labels (set distill.hard_weight=0)",
                                 config.get_double("distill.hard_weight")));
  }
  const auto run_data = train::load_run_data(config);
  DistillOutcome outcome;
  const auto spec = train::model_spec_from_config(config, run_data.train);
  auto teacher = load_teachers(config.get_string_list("distill.teachers"), config.get_string("distill.ensemble"),
                               data::model_input(run_data.train.images.slice(0, 0, 1)));
  if (teacher->num_classes() != spec.num_classes) {
    throw InputError(fmt::format("teacher {} has {} output classes but the student has {}", teacher->describe(),
                                 teacher->num_classes(), spec.num_classes));
  }
  outcome.teacher = teacher->describe();
  outcome.run_dir = train::prepare_run_dir(config);

  const auto loss_options = SoftTargetLossOptions()
                                .temperature(config.get_double("distill.temperature"))
                                .soft_weight(config.get_double("distill.soft_weight"))
                                .hard_weight(config.get_double("distill.hard_weight"));
  auto options = train::train_options_from_config(config);
  options.run_dir = outcome.run_dir;
  options.label = config.get_string("name");
  options.stop_requested = stop_requested;
  std::unique_ptr<TeacherCache> cache;
  if (config.get_bool("distill.cache")) {
    const data::Augmentation augmentation{options.jitter, options.flip};
    cache = std::make_unique<TeacherCache>(*teacher, loss_options.temperature(), run_data.train.size(), augmentation.view_count());
    cache->look_ahead(train::BatchStream(run_data.train, options.batch_size, augmentation, options.seed),
                      config.get_int("distill.teacher_batches"));
  }
  DistillMethod method;
  method.name = config.get_string("distill.method");
  method.dkd_alpha = config.get_double("distill.dkd_alpha");
  method.dkd_beta = config.get_double("distill.dkd_beta");
  method.warmup_steps = config.get_int("distill.dkd_warmup") * ((run_data.train.size() + options.batch_size - 1) / options.batch_size);
  torch::manual_seed(config.get_int("train.seed"));
  outcome.student = nn::make_model(spec);
  outcome.num_parameters = nn::count_parameters(*outcome.student);
  spdlog::info("{}: distilling {} into {} ({} parameters) at T = {} on {} transfer images", options.label,
               outcome.teacher, spec.kind, outcome.num_parameters, loss_options.temperature(), run_data.train.size());
  outcome.train = train::fit(*outcome.student, spec, run_data.train, &run_data.test,
                             make_distillation_objective(*teacher, cache.get(), loss_options, method), options,
                             {{"teacher", outcome.teacher}});
  if (!outcome.train.completed) {
    throw std::runtime_error(fmt::format("{}: interrupted at step {}; the same command resumes from {}/checkpoint.pt",
                                         options.label, outcome.train.steps, outcome.run_dir));
  }
  outcome.test = outcome.train.final_eval ? *outcome.train.final_eval : train::evaluate(*outcome.student, run_data.test);
  if (cache) outcome.teacher_rows = cache->teacher_rows(), outcome.teacher_lookups = cache->lookups();

  // Classes missing from an unlabeled transfer set are unknown: no bias to adjust.
  const auto missing = unlabeled ? std::vector<int64_t>{} : missing_classes(run_data.train.labels, spec.num_classes);
  if (!missing.empty() && config.get_bool("distill.adjust_bias")) {
    if (run_data.validation.size() == 0) {
      spdlog::warn("{}: classes missing from the transfer set, but data.validation is 0: no split to choose a bias shift on",
                   options.label);
    } else {
      BiasReport bias;
      bias.classes = missing;
      const auto validation_logits = train::predict_logits(*outcome.student, run_data.validation.images);
      bias.validation_shift = choose_bias_shift(validation_logits, run_data.validation.labels, missing).shift;
      const auto test_logits = train::predict_logits(*outcome.student, run_data.test.images);
      bias.test_after = train::score_logits(shift_class_logits(test_logits, missing, bias.validation_shift),
                                            run_data.test.labels, spec.num_classes);
      if (const double reference = config.get_double("distill.paper_bias_shift"); reference != 0.0) {
        bias.reference_shift = reference;
        bias.test_at_reference = train::score_logits(shift_class_logits(test_logits, missing, reference),
                                                     run_data.test.labels, spec.num_classes);
      }
      apply_bias_shift(*outcome.student, missing, bias.validation_shift);
      train::save_checkpoint(outcome.run_dir + "/checkpoint-bias-adjusted.pt", *outcome.student,
                             {spec, outcome.train.steps, {{"bias_shift", bias.validation_shift}, {"classes", missing}}},
                             nullptr);
      outcome.bias = bias;
    }
  }

  nlohmann::json result = {{"name", options.label},
                           {"teacher", outcome.teacher},
                           {"temperature", loss_options.temperature()},
                           {"test", outcome.test.to_json()},
                           {"steps", outcome.train.steps},
                           {"seconds", outcome.train.seconds},
                           {"samples_per_second", outcome.train.samples_per_second},
                           {"parameters", outcome.num_parameters},
                           {"teacher_rows", outcome.teacher_rows},
                           {"teacher_lookups", outcome.teacher_lookups}};
  if (outcome.bias) result["bias"] = outcome.bias->to_json();
  train::add_data_summary(result, run_data);
  result["misclassified"] = train::save_misclassified(*outcome.student, run_data.test, outcome.run_dir + "/misclassified.png");
  // What the student buys: the teacher scored and measured beside it.
  const auto image_shape = run_data.test.images.sizes().slice(1);
  train::export_and_measure_model(result, *outcome.student, spec, outcome.run_dir, "student.ts.pt", image_shape);
  const train::Forward teacher_forward = [&](const torch::Tensor& images) { return teacher->logits(images); };
  result["teacher_test"] =
      train::score_logits(train::predict_logits(teacher_forward, run_data.test.images), run_data.test.labels, spec.num_classes).to_json();
  int64_t teacher_bytes = 0;
  for (const auto& path : config.get_string_list("distill.teachers")) teacher_bytes += train::file_size_or_zero(path);
  result["teacher_cost"] = train::measure_model_cost(teacher_forward, image_shape, teacher->num_parameters(), teacher_bytes).to_json();
  outcome.worth = report::worth_table(result);
  report::write_file_atomic(outcome.run_dir + "/result.json", result.dump(2));
  report::write_run_report(outcome.run_dir);
  return outcome;
}

}  // namespace distillery::distill
