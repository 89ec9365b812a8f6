#pragma once
// Summaries of the results files for the generated pages: the README's headline table (one row per
// published figure) and the index of an experiment's explorations (one row per results file).
// docs/results/summary.yaml says which figures and columns; the numbers come from the files only.
#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

#include <string>
#include <vector>

namespace distillery::report {

/// The headline table. `headlines` is a YAML list of {figure, file | files, row, paper?, at_most?,
/// at_least?}; with several files the figure is their mean (and sd). Files are relative to
/// `results_folder`, and named relative to `page_folder` in the table's links.
std::string render_headline_table(const YAML::Node& headlines, const std::string& results_folder,
                                  const std::string& page_folder);

/// One row per results file of `folder` (sorted by name): its date, the settings its command
/// gave (`--profile`, `--set`), and the columns asked for, each {header, rows: [id, ...]} taking
/// the first row id the file has. Links are relative to `page_folder`.
std::string render_explorations_index(const std::string& folder, const YAML::Node& columns, const std::string& page_folder);

/// Rows of one results file (by id, in the order given) as a table of measurement and figure, with
/// the file, its date and machine beneath. Links are relative to `page_folder`.
std::string render_rows_table(const std::string& file, const std::vector<std::string>& ids, const std::string& page_folder);

/// The settings a command line gave: "--profile P" and every "--set key=value" but thread counts
/// and log intervals, which do not change a result.
std::string command_settings(const std::string& command);

}  // namespace distillery::report
