#pragma once
// docs/RESULTS.md is generated from the machine-readable results files (docs/results/*.json),
// never typed by hand. Each file holds rows {id, what, paper, ours, unit} and the command,
// git revision, machine and date of the run that produced them.
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace distillery::report {

/// Renders results objects as one Markdown page (each linked to its file when it has "results_file",
/// a path relative to docs/).
std::string render_results_markdown(const std::vector<nlohmann::json>& results);

/// One measurement: what was measured, the published figure or target (null if none), ours, and
/// the unit ("errors", "%", "x", ...).
nlohmann::json result_row(const std::string& id, const std::string& what, const nlohmann::json& paper,
                          const nlohmann::json& ours, const std::string& unit);

/// The fields every results file carries: experiment, title, profile, the command that produced
/// it, git revision, machine, date, seconds, rows.
nlohmann::json results_record(const std::string& experiment, const std::string& title, const std::string& profile,
                              const std::string& command, double seconds, const nlohmann::json& rows);

/// Writes `results` to run_folder/results.json and, when `results_path` is not empty, to
/// `results_path` too (both atomically), saying where.
void save_results(const nlohmann::json& results, const std::string& run_folder, const std::string& results_path);

/// Rows as table cells (header first): measurement, `reference_header`, ours.
std::vector<std::vector<std::string>> result_cells(const nlohmann::json& rows, const std::string& reference_header);

/// The same cells as a Markdown table.
std::string result_rows_markdown(const nlohmann::json& rows, const std::string& reference_header);

/// The same table with one more column: each row's "ours" in `other_rows` (matched by id; "-" when
/// absent), headed `other_header`. Shows a short run's figures beside those of a full one.
std::string result_rows_beside_markdown(const nlohmann::json& rows, const std::string& reference_header,
                                        const std::string& ours_header, const nlohmann::json& other_rows,
                                        const std::string& other_header);

/// A value as a table cell: "-" for null, a percentage for unit "%", else the number.
std::string format_result_value(const nlohmann::json& value, const std::string& unit);

}  // namespace distillery::report
