#include "distillery/report/run_report.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <filesystem>

#include "distillery/error.h"
#include "distillery/report/html.h"
#include "distillery/report/image.h"
#include "distillery/report/metrics.h"

namespace distillery::report {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

json read_result(const std::string& run_dir) {
  const std::string path = run_dir + "/result.json";
  if (!fs::exists(path)) throw InputError(run_dir + ": not a finished run folder (no result.json)");
  return read_json_file(path);
}

}  // namespace

std::string write_run_report(const std::string& run_dir) {
  if (!fs::is_directory(run_dir)) throw InputError(run_dir + ": run folder does not exist");
  const json result = read_result(run_dir);
  HtmlReport page("distillery run: " + result.value("name", fs::path(run_dir).filename().string()));
  page.heading("Result");
  std::vector<std::vector<std::string>> rows = {{"measurement", "value"}};
  if (result.contains("test")) {
    const auto& test = result.at("test");
    rows.push_back({"test errors", fmt::format("{} of {}", test.at("errors").get<int64_t>(), test.at("count").get<int64_t>())});
    rows.push_back({"test accuracy", fmt::format("{:.2f}%", 100.0 * test.at("accuracy").get<double>())});
  }
  for (const char* key : {"teacher", "temperature", "steps", "seconds", "samples_per_second", "parameters", "teacher_rows", "teacher_lookups"}) {
    if (result.contains(key)) {
      const auto& v = result.at(key);
      rows.push_back({key, v.is_string() ? v.get<std::string>() : v.is_number_float() ? fmt::format("{:.4g}", v.get<double>()) : v.dump()});
    }
  }
  page.table(rows);
  const std::string metrics_path = run_dir + "/metrics.jsonl";
  if (fs::exists(metrics_path)) {
    Series errors{"test errors", {}, {}}, loss{"training loss", {}, {}};
    for (const auto& record : read_metrics(metrics_path)) {
      if (record.value("kind", "") != "epoch") continue;
      const double epoch = record.at("epoch").get<double>();
      if (record.contains("test_errors")) errors.x.push_back(epoch), errors.y.push_back(record.at("test_errors").get<double>());
      if (record.contains("loss")) loss.x.push_back(epoch), loss.y.push_back(record.at("loss").get<double>());
    }
    page.heading("Training curves");
    page.line_chart("test errors after each epoch", "epoch", "test errors", {errors});
    page.line_chart("mean training loss per epoch", "epoch", "loss", {loss});
  }
  if (result.contains("test") && result.at("test").contains("confusion")) {
    const auto cells = result.at("test").at("confusion").get<std::vector<int64_t>>();
    const auto k = static_cast<int64_t>(std::lround(std::sqrt(double(cells.size()))));
    page.heading("Confusion matrix");
    page.confusion("test set", torch::tensor(cells, torch::kInt64).view({k, k}));
  }
  if (result.contains("misclassified") && fs::exists(run_dir + "/misclassified.png")) {
    std::vector<std::string> pairs;
    for (const auto& example : result.at("misclassified")) {
      pairs.push_back(fmt::format("{}→{}", example.at("label").get<int64_t>(), example.at("predicted").get<int64_t>()));
    }
    page.heading("Misclassified test images");
    page.image("the first " + std::to_string(pairs.size()) + " misclassified, row by row (label→predicted): " +
                   fmt::format("{}", fmt::join(pairs, " ")),
               read_grey_image(run_dir + "/misclassified.png"), /*display_scale=*/2);
  }
  if (fs::exists(run_dir + "/config.yaml")) {
    page.heading("Config");
    page.preformatted(read_file_text(run_dir + "/config.yaml"));
  }
  const std::string path = run_dir + "/report.html";
  page.save(path);
  return path;
}

namespace {

// "1.64 M", "620 k": multiply-adds and parameters as people read them.
std::string count_text(double value) {
  if (value >= 1e9) return fmt::format("{:.2f} G", value / 1e9);
  if (value >= 1e6) return fmt::format("{:.2f} M", value / 1e6);
  if (value >= 1e3) return fmt::format("{:.1f} k", value / 1e3);
  return fmt::format("{:.0f}", value);
}

std::string bytes_text(double bytes) {
  if (bytes <= 0) return "-";
  if (bytes >= (1 << 20)) return fmt::format("{:.1f} MiB", bytes / (1 << 20));
  return fmt::format("{:.0f} KiB", bytes / 1024);
}

// The cost columns of a result.json "cost" (or "teacher_cost") block.
std::string cost_cells(const json& cost) {
  if (!cost.is_object()) return "- | - | - | -";
  return fmt::format("{} | {} | {:.3f} | {:.0f}", count_text(cost.value("multiply_adds", 0.0)), bytes_text(cost.value("file_bytes", 0.0)),
                     cost.value("latency_ms", 0.0), cost.value("images_per_second", 0.0));
}

std::string accuracy_text(const json& test) {
  return test.contains("accuracy") ? fmt::format("{:.2f}%", 100.0 * test.at("accuracy").get<double>()) : "-";
}

}  // namespace

std::string compare_runs(const std::vector<std::string>& run_dirs) {
  std::string table =
      "| run | test errors | accuracy | steps | seconds | samples/s | parameters | multiply-adds | file | latency ms (batch 1) | images/s (batch 64) |\n"
      "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n";
  for (const auto& dir : run_dirs) {
    const json r = read_result(dir);
    const json test = r.value("test", json::object());
    table += fmt::format("| {} | {} | {} | {} | {} | {} | {} | {} |\n", dir, test.contains("errors") ? test.at("errors").dump() : "-",
                         accuracy_text(test), r.value("steps", int64_t{0}), fmt::format("{:.1f}", r.value("seconds", 0.0)),
                         fmt::format("{:.0f}", r.value("samples_per_second", 0.0)), r.value("parameters", int64_t{0}),
                         cost_cells(r.value("cost", json())));
  }
  return table;
}

std::string worth_table(const json& result) {
  if (!result.contains("cost") || !result.contains("teacher_cost")) return "";
  const json& student = result.at("cost");
  const json& teacher = result.at("teacher_cost");
  std::string table = "| | test accuracy | parameters | multiply-adds | file | latency ms (batch 1) | images/s (batch 64) |\n"
                      "| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n";
  table += fmt::format("| teacher | {} | {} | {} |\n", accuracy_text(result.value("teacher_test", json::object())),
                       count_text(teacher.value("parameters", 0.0)), cost_cells(teacher));
  table += fmt::format("| student | {} | {} | {} |\n", accuracy_text(result.value("test", json::object())),
                       count_text(student.value("parameters", 0.0)), cost_cells(student));
  const auto ratio = [&](const char* key) {
    const double s = student.value(key, 0.0), t = teacher.value(key, 0.0);
    return s > 0 && t > 0 ? fmt::format("{:.1f}x", t / s) : std::string("-");
  };
  const double points = 100.0 * (result.value("test", json::object()).value("accuracy", 0.0) -
                                 result.value("teacher_test", json::object()).value("accuracy", 0.0));
  const double speed = teacher.value("images_per_second", 0.0) > 0
                           ? student.value("images_per_second", 0.0) / teacher.value("images_per_second", 0.0) : 0.0;
  table += fmt::format("| student buys | {:+.2f} points | {} smaller | {} fewer | {} smaller | {} faster | {:.1f}x |\n", points,
                       ratio("parameters"), ratio("multiply_adds"), ratio("file_bytes"), ratio("latency_ms"), speed);
  return table;
}

}  // namespace distillery::report
