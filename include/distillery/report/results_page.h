#pragma once
// docs/RESULTS.md is generated from the machine-readable results files (docs/results/*.json),
// never typed by hand. Each file holds rows {id, what, paper, ours, unit} and the command,
// git revision, machine and date of the run that produced them.
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace distillery::report {

/// Renders results objects as one Markdown page.
std::string render_results_markdown(const std::vector<nlohmann::json>& results);

/// Reads every *.json in `folder` (sorted by name) and writes the page to `output`.
void write_results_page(const std::string& folder, const std::string& output);

/// A value as a table cell: "-" for null, a percentage for unit "%", else the number.
std::string format_result_value(const nlohmann::json& value, const std::string& unit);

}  // namespace distillery::report
