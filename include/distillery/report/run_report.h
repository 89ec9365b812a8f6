#pragma once
// Reports over run folders: report.html for one run, a comparison table for several.
#include <string>
#include <vector>

namespace distillery::report {

/// Writes run_dir/report.html from the run's config.yaml, metrics.jsonl and result.json: config,
/// final results, training curves, confusion matrix. Returns the path. InputError if run_dir
/// holds no run.
std::string write_run_report(const std::string& run_dir);

/// A Markdown table of the final metrics (test errors, accuracy, steps, seconds, samples/s,
/// parameters) of each run folder.
std::string compare_runs(const std::vector<std::string>& run_dirs);

}  // namespace distillery::report
