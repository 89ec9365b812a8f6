#include "distillery/experiments/hinton2015.h"

#include <spdlog/spdlog.h>

#include <filesystem>
#include <fstream>
#include <iostream>

#include "distillery/config.h"
#include "distillery/distill/distiller.h"
#include "distillery/error.h"
#include "distillery/data/dataset.h"
#include "distillery/report/html.h"
#include "distillery/report/image.h"
#include "distillery/report/metrics.h"
#include "distillery/report/results_page.h"
#include "distillery/train/checkpoint.h"
#include "distillery/train/run.h"

namespace distillery::experiments {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// Per-profile overrides. The config files hold the paper profile; quick shortens training so that
// the whole experiment fits in a few minutes on a 2-core machine.
std::vector<std::string> profile_overrides(const std::string& profile, const std::string& run) {
  if (profile == "paper") return {};
  if (profile == "quick") {  // 10,000 training images: soft targets matter most when data is scarce
    if (run == "teacher") return {"data.train_limit=10000", "train.epochs=15"};
    if (run == "sweep" || run == "sweep-hard") return {"data.train_limit=10000", "train.epochs=15"};
    return {"data.train_limit=10000", "train.epochs=10"};
  }
  if (profile == "test") {  // a seconds-long smoke run for the test suite
    return {"train.epochs=1", "data.train_limit=3000", "data.test_limit=1000", "data.validation=500"};
  }
  throw InputError("--profile: unknown profile '" + profile + "' (known: quick, paper)");
}

struct Context {
  const ExperimentOptions& options;
  std::string root;  // runs_dir/hinton2015-<profile>
};

Config make_config(const Context& context, const std::string& file, const std::string& name) {
  const std::string path = context.options.configs_dir + "/hinton2015/" + file;
  Config config = Config::load(path);
  for (const auto& o : profile_overrides(context.options.profile, file.substr(0, file.find('.')))) config.set(o);
  config.set("run.dir", context.root);
  config.set("name", name);
  if (!context.options.data_dir.empty()) config.set("data.dir", context.options.data_dir);
  for (const auto& o : context.options.overrides) config.set(o);
  return config;
}

// Runs a sub-run unless it already finished (its result.json exists), so an interrupted
// experiment resumes where it stopped.
json run_or_reuse(const Context& context, const Config& config, bool distill) {
  const std::string dir = context.root + "/" + config.get_string("name");
  const std::string result_path = dir + "/result.json";
  if (context.options.fresh && fs::exists(dir)) {
    fs::remove_all(dir);
  } else if (auto finished = train::finished_run(config)) {
    spdlog::info("{}: reusing the finished run in {}", config.get_string("name"), dir);
    return *finished;
  }
  if (distill) distill::run_distillation(config);
  else train::run_training(config);
  std::ifstream in(result_path);
  return json::parse(in);
}

int64_t errors_of(const json& result) { return result.at("test").at("errors").get<int64_t>(); }
int64_t class_errors_of(const json& test, int64_t c) { return test.at("per_class").at(c).at("errors").get<int64_t>(); }
int64_t class_count_of(const json& test, int64_t c) { return test.at("per_class").at(c).at("count").get<int64_t>(); }


report::Series test_error_curve(const std::string& run_dir, const std::string& name) {
  report::Series series{name, {}, {}};
  const std::string path = run_dir + "/metrics.jsonl";
  if (!fs::exists(path)) return series;
  for (const auto& record : report::read_metrics(path)) {
    if (record.value("kind", "") != "epoch" || !record.contains("test_errors")) continue;
    series.x.push_back(record.at("epoch").get<double>());
    series.y.push_back(record.at("test_errors").get<double>());
  }
  return series;
}

torch::Tensor confusion_of(const json& test) {
  const auto cells = test.at("confusion").get<std::vector<int64_t>>();
  const auto k = static_cast<int64_t>(std::lround(std::sqrt(double(cells.size()))));
  return torch::tensor(cells, torch::kInt64).view({k, k});
}

// The never-seen digit: test 3s that the omit-3 student (after bias adjustment) gets right and wrong.
void add_never_seen_grid(report::HtmlReport& page, const Context& context) {
  const std::string path = context.root + "/omit3/checkpoint-bias-adjusted.pt";
  if (!fs::exists(path)) return;
  auto loaded = train::load_model(path);
  auto test = data::load_dataset("mnist", "test", data::resolve_data_dir(context.options.data_dir));
  auto threes = data::keep_classes(test, {3});
  auto predicted = train::predict_logits(*loaded.model, threes.images).argmax(1);
  auto right = (predicted == 3).nonzero().flatten(), wrong = (predicted != 3).nonzero().flatten();
  page.paragraph(fmt::format("The omit-3 student never saw a 3 during training. After the bias shift it classifies {} of the "
                             "{} test 3s correctly.", right.numel(), threes.size()));
  if (right.numel() > 0) page.image("test 3s classified correctly (first 60)", report::image_grid(threes.images.index_select(0, right.slice(0, 0, 60)), 20));
  if (wrong.numel() > 0) page.image("test 3s classified wrongly (first 60)", report::image_grid(threes.images.index_select(0, wrong.slice(0, 0, 60)), 20));
}

void write_report(const Context& context, const json& results) {
  report::HtmlReport page("Hinton, Vinyals & Dean 2015 on MNIST (profile " + context.options.profile + ")");
  page.paragraph(fmt::format("Command: {}. Revision {}, {}, {}.", results.value("command", ""), results.at("git_revision").get<std::string>(),
                             results.at("machine").at("cpu").get<std::string>(), results.at("date").get<std::string>()));
  page.heading("Results beside the paper");
  page.table(report::result_cells(results.at("rows"), "paper"));
  page.heading("Training curves");
  std::vector<report::Series> curves;
  for (const char* name : {"teacher", "student-hard", "student-distilled", "omit3"}) {
    curves.push_back(test_error_curve(context.root + "/" + name, name));
  }
  page.line_chart("test errors after each epoch", "epoch", "test errors", curves);
  page.heading("Confusion matrices");
  const auto& runs = results.at("runs");
  page.confusion("student 800-800, distilled at T = 20", confusion_of(runs.at("student-distilled").at("test")));
  page.confusion("digit 3 omitted, before bias adjustment", confusion_of(runs.at("omit3").at("test")));
  if (runs.at("omit3").contains("bias")) {
    page.confusion("digit 3 omitted, after the validation-chosen bias shift", confusion_of(runs.at("omit3").at("bias").at("test_after")));
  }
  page.heading("The digit the student never saw");
  add_never_seen_grid(page, context);
  page.save(context.root + "/report.html");
}

}  // namespace

std::string hinton2015_table(const json& results) { return report::result_rows_markdown(results.at("rows"), "paper"); }

json run_hinton2015(const ExperimentOptions& options) {
  Context context{options, options.runs_dir + "/hinton2015-" + options.profile};
  fs::create_directories(context.root);
  const auto start = std::chrono::steady_clock::now();
  json rows = json::array();
  json runs = json::object();

  const auto teacher = run_or_reuse(context, make_config(context, "teacher.yaml", "teacher"), false);
  runs["teacher"] = teacher;
  const std::string teacher_path = context.root + "/teacher/checkpoint.pt";
  auto distill_config = [&](const std::string& file, const std::string& name) {
    Config config = make_config(context, file, name);
    config.set("distill.teachers", "[" + teacher_path + "]");
    return config;
  };
  rows.push_back(report::result_row("teacher", "teacher 1200-1200, dropout + max-norm + 2-px jitter: test errors", 67, errors_of(teacher), "errors"));

  const auto hard = run_or_reuse(context, make_config(context, "student-hard.yaml", "student-hard"), false);
  runs["student-hard"] = hard;
  rows.push_back(report::result_row("student_hard", "student 800-800, hard labels, no regularisation: test errors", 146, errors_of(hard), "errors"));

  const Config distilled_config = distill_config("student-distilled.yaml", "student-distilled");
  const auto distilled = run_or_reuse(context, distilled_config, true);
  runs["student-distilled"] = distilled;
  rows.push_back(report::result_row("student_distilled",
                                    fmt::format("student 800-800, distilled at T = {} (hard-label weight {}): test errors",
                                                distilled_config.get_double("distill.temperature"),
                                                distilled_config.get_double("distill.hard_weight")),
                                    74, errors_of(distilled), "errors"));

  const auto omit3 = run_or_reuse(context, distill_config("omit3.yaml", "omit3"), true);
  runs["omit3"] = omit3;
  const auto& omit3_test = omit3.at("test");
  rows.push_back(report::result_row("omit3_errors", "digit 3 omitted from transfer set: test errors", 206, errors_of(omit3), "errors"));
  rows.push_back(report::result_row("omit3_errors_on_3", "digit 3 omitted: errors on the test 3s", 133, class_errors_of(omit3_test, 3), "errors"));
  if (omit3.contains("bias")) {
    const auto& bias = omit3.at("bias");
    const auto& after = bias.at("test_after");
    rows.push_back(report::result_row("omit3_bias_shift", "digit 3 omitted: bias shift of class 3 chosen on validation", 3.5,
                       bias.at("validation_shift"), "shift"));
    rows.push_back(report::result_row("omit3_bias_errors", "digit 3 omitted + validation-chosen bias: test errors", 109, after.at("errors"), "errors"));
    rows.push_back(report::result_row("omit3_bias_3s_right", "digit 3 omitted + validation-chosen bias: % of test 3s right", 98.6,
                       100.0 * (1.0 - double(class_errors_of(after, 3)) / double(class_count_of(after, 3))), "%"));
    if (bias.contains("test_at_reference")) {
      const auto& at_paper = bias.at("test_at_reference");
      rows.push_back(report::result_row("omit3_paper_shift_errors", "digit 3 omitted + the paper's shift 3.5 (chosen on test by the paper): test errors",
                         109, at_paper.at("errors"), "errors"));
    }
  }

  const auto only78 = run_or_reuse(context, distill_config("only78.yaml", "only78"), true);
  runs["only78"] = only78;
  rows.push_back(report::result_row("only78_error", "transfer set of only 7s and 8s: test error", 47.3,
                     100.0 * (1.0 - only78.at("test").at("accuracy").get<double>()), "%"));
  if (only78.contains("bias")) {
    const auto& bias = only78.at("bias");
    rows.push_back(report::result_row("only78_bias_error", "only 7s and 8s + validation-chosen bias on the other classes: test error", 13.2,
                       100.0 * (1.0 - bias.at("test_after").at("accuracy").get<double>()), "%"));
    rows.push_back(report::result_row("only78_bias_shift", "only 7s and 8s: bias shift chosen on validation (paper: 7.6)", 7.6,
                       bias.at("validation_shift"), "shift"));
  }

  // Temperature sweep of a 30-30 student (the paper: T between 2.5 and 4 works best at this size).
  const auto sweep_hard = run_or_reuse(context, make_config(context, "sweep-hard.yaml", "sweep30-hard"), false);
  runs["sweep30-hard"] = sweep_hard;
  rows.push_back(report::result_row("sweep30_hard", "student 30-30, hard labels: test errors", nullptr, errors_of(sweep_hard), "errors"));
  for (double t : {1.0, 2.0, 3.0, 4.0, 8.0, 20.0}) {
    const std::string name = fmt::format("sweep30-T{}", t);
    Config config = distill_config("sweep.yaml", name);
    config.set("distill.temperature", fmt::format("{}", t));
    const auto result = run_or_reuse(context, config, true);
    runs[name] = result;
    rows.push_back(report::result_row(fmt::format("sweep30_T{}", t), fmt::format("student 30-30, distilled at T = {}: test errors", t), nullptr,
                       errors_of(result), "errors"));
  }

  json results = report::results_record("hinton2015", "Hinton, Vinyals & Dean 2015: distillation on MNIST", options.profile,
                                        options.command,
                                        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), rows);
  results["runs"] = runs;
  std::cout << "\nHinton, Vinyals & Dean 2015 on MNIST, profile " << options.profile << " (runs in " << context.root << ")\n";
  if (options.profile == "quick") {
    // A newcomer's first table (`make demo`): say the budget, and show the full run's figures beside it.
    double train_seconds = 0;
    for (const auto& [name, run] : runs.items()) train_seconds += run.value("seconds", 0.0);
    std::cout << fmt::format(
        "The quick profile trains on 10,000 of the 60,000 images for 10-15 epochs ({:.1f} minutes of training\n"
        "here); the paper profile trains on all of them for 50-120 epochs (about 1.5 hours of compute on 2 cores).\n\n",
        train_seconds / 60);
    const std::string paper_file = "docs/results/hinton2015.json";
    json paper_rows = json::array();
    if (fs::exists(paper_file)) paper_rows = report::read_json_file(paper_file).value("rows", json::array());
    std::cout << report::result_rows_beside_markdown(results.at("rows"), "paper", "ours, quick", paper_rows,
                                                     "ours, paper profile (" + paper_file + ")")
              << "\n";
  } else {
    std::cout << "\n" << hinton2015_table(results) << "\n";
  }
  const bool ordering = errors_of(distilled) < errors_of(hard);
  std::cout << (ordering ? "distilled student beats the hard-label student: " : "distilled student does NOT beat the hard-label student: ")
            << errors_of(distilled) << " vs " << errors_of(hard) << " test errors\n";
  report::save_results(results, context.root, options.results_path);
  write_report(context, results);
  std::cout << "report: " << context.root << "/report.html\n";
  return results;
}

}  // namespace distillery::experiments
