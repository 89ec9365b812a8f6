#pragma once
// Reports over run folders: report.html for one run, a comparison table for several.
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace distillery::report {

/// Writes run_dir/report.html from the run's config.yaml, metrics.jsonl and result.json: config,
/// final results, training curves, confusion matrix. Returns the path. InputError if run_dir
/// holds no run.
std::string write_run_report(const std::string& run_dir);

/// A Markdown table of the final metrics (test errors, accuracy, steps, seconds, samples/s,
/// parameters) of each run folder, and what each model costs to run (multiply-adds per image,
/// file size, latency at batch 1, images/s at batch 64) where its result.json measured it.
std::string compare_runs(const std::vector<std::string>& run_dirs);

/// A distill run's result.json as a Markdown table, teacher against student: test accuracy,
/// parameters, multiply-adds per image, file size, latency at batch 1, images/s at batch 64, and
/// the student's ratio to the teacher on each. "" when the result has no such measurements.
std::string worth_table(const nlohmann::json& result);

}  // namespace distillery::report
