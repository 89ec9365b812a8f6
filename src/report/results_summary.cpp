#include "distillery/report/results_summary.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "distillery/error.h"
#include "distillery/report/metrics.h"
#include "distillery/report/results_page.h"

namespace distillery::report {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const json* find_row(const json& results, const std::string& id) {
  if (!results.contains("rows")) return nullptr;
  for (const auto& row : results.at("rows")) {
    if (row.value("id", "") == id) return &row;
  }
  return nullptr;
}

// A Markdown link to `file` from a page in `page_folder`, showing `text` (default: the file name).
std::string link(const std::string& file, const std::string& page_folder, const std::string& text = "") {
  const std::string relative = fs::path(file).lexically_relative(page_folder).generic_string();
  return fmt::format("[{}]({})", text.empty() ? fs::path(file).filename().string() : text, relative);
}

std::string yaml_text(const YAML::Node& node, const char* key, const std::string& where) {
  if (!node[key] || !node[key].IsScalar()) throw InputError(fmt::format("{}: '{}' is missing", where, key));
  return node[key].as<std::string>();
}

// Splits a command line the way a shell would for plain words and quoted strings.
std::vector<std::string> shell_words(const std::string& command) {
  std::vector<std::string> words;
  std::string word;
  bool in_word = false;
  char quote = 0;
  for (const char c : command) {
    if (quote) {
      if (c == quote) quote = 0;
      else word += c;
    } else if (c == '\'' || c == '"') {
      quote = c;
      in_word = true;
    } else if (c == ' ' || c == '\t') {
      if (in_word) words.push_back(word);
      word.clear();
      in_word = false;
    } else {
      word += c;
      in_word = true;
    }
  }
  if (in_word) words.push_back(word);
  return words;
}

// A dotted path into a results file ("machine.cpu") as text; "-" when absent.
std::string field_text(const json& results, const std::string& dotted) {
  const json* node = &results;
  size_t start = 0;
  while (start <= dotted.size()) {
    const size_t dot = std::min(dotted.find('.', start), dotted.size());
    const std::string key = dotted.substr(start, dot - start);
    if (!node->is_object() || !node->contains(key)) return "-";
    node = &node->at(key);
    start = dot + 1;
  }
  return node->is_string() ? node->get<std::string>() : node->dump();
}

}  // namespace

std::string command_settings(const std::string& command) {
  const auto words = shell_words(command);
  std::vector<std::string> settings;
  for (size_t i = 0; i + 1 < words.size(); ++i) {
    if (words[i] == "--profile") settings.push_back("profile " + words[i + 1]);
    if (words[i] != "--set") continue;
    const std::string& assignment = words[i + 1];
    if (assignment.rfind("train.threads=", 0) == 0 || assignment.rfind("run.log_every_seconds=", 0) == 0) continue;
    settings.push_back("`" + assignment + "`");
  }
  std::string text;
  for (const auto& s : settings) text += (text.empty() ? "" : ", ") + s;
  return text;
}

std::string render_headline_table(const YAML::Node& headlines, const std::string& results_folder,
                                  const std::string& page_folder) {
  std::string table = "| figure | paper | ours | target | results file |\n| --- | ---: | ---: | --- | --- |\n";
  for (const auto& headline : headlines) {
    const std::string figure = yaml_text(headline, "figure", "docs/results/summary.yaml, headline");
    const std::string where = "docs/results/summary.yaml, headline '" + figure + "'";
    const std::string id = yaml_text(headline, "row", where);
    std::vector<std::string> files;
    if (headline["files"]) files = headline["files"].as<std::vector<std::string>>();
    else files.push_back(yaml_text(headline, "file", where));

    std::vector<double> values;
    json paper, ours, unit_row;
    std::string links;
    for (const auto& name : files) {
      const std::string path = results_folder + "/" + name;
      const json results = read_json_file(path);
      const json* row = find_row(results, id);
      if (!row) throw InputError(fmt::format("{}: no row '{}' (asked by {})", path, id, where));
      unit_row = *row;
      ours = row->value("ours", json());
      if (files.size() > 1) values.push_back(ours.get<double>());
      // After the first file, only the part of the name that differs (..."-seed-2.json").
      const std::string first = fs::path(files.front()).filename().string();
      const std::string own = fs::path(name).filename().string();
      size_t common = 0;
      while (common < first.size() && common < own.size() && first[common] == own[common]) ++common;
      while (common > 0 && own[common - 1] != '-') --common;
      links += (links.empty() ? "" : ", ") + link(path, page_folder, links.empty() ? own : own.substr(common));
    }
    const std::string unit = unit_row.value("unit", "");
    paper = headline["paper"] ? json(headline["paper"].as<std::string>()) : unit_row.value("paper", json());
    std::string ours_text;
    double compared = 0;
    if (values.empty()) {
      ours_text = format_result_value(ours, unit);
      if (ours.is_number()) compared = ours.get<double>();
    } else {
      double mean = 0, spread = 0;
      for (double v : values) mean += v;
      mean /= static_cast<double>(values.size());
      for (double v : values) spread += (v - mean) * (v - mean);
      const double sd = std::sqrt(spread / static_cast<double>(values.size() - 1));
      const std::string sd_text = unit == "%" ? fmt::format("{:.2f}%", sd) : fmt::format("{:.2g}", sd);
      ours_text = fmt::format("{} (mean of {}, sd {})", format_result_value(mean, unit), values.size(), sd_text);
      compared = mean;
    }
    std::string target;
    if (headline["at_most"] || headline["at_least"]) {
      const bool at_most = static_cast<bool>(headline["at_most"]);
      const double bound = (at_most ? headline["at_most"] : headline["at_least"]).as<double>();
      const bool met = at_most ? compared <= bound : compared >= bound;
      target = fmt::format("{} {}: {}", at_most ? "at most" : "at least", format_result_value(bound, unit), met ? "met" : "**not met**");
    }
    table += fmt::format("| {} | {} | {} | {} | {} |\n", figure, format_result_value(paper, unit), ours_text, target, links);
  }
  return table;
}

std::string render_rows_table(const std::string& file, const std::vector<std::string>& ids, const std::string& page_folder) {
  const json results = read_json_file(file);
  std::string table = "| measurement | ours |\n| --- | ---: |\n";
  for (const auto& id : ids) {
    const json* row = find_row(results, id);
    if (!row) throw InputError(fmt::format("{}: no row '{}' (asked by docs/results/summary.yaml)", file, id));
    table += fmt::format("| {} | {} |\n", row->value("what", id), format_result_value(row->value("ours", json()), row->value("unit", "")));
  }
  const json machine = results.value("machine", json::object());
  table += fmt::format("\nFrom {} ({}, {}, {} cores; `{}`).\n", link(file, page_folder), results.value("date", "?").substr(0, 10),
                       machine.value("cpu", "?"), machine.value("cores", 0), results.value("command", "?"));
  return table;
}

std::string render_explorations_index(const std::string& folder, const YAML::Node& columns, const std::string& page_folder) {
  std::vector<std::string> files;
  for (const auto& entry : fs::directory_iterator(folder)) {
    if (entry.path().extension() == ".json") files.push_back(entry.path().string());
  }
  std::sort(files.begin(), files.end());
  std::string table = "| results file | date | settings |";
  std::string rule = "| --- | --- | --- |";
  for (const auto& column : columns) {
    table += " " + yaml_text(column, "header", "docs/results/summary.yaml, exploration column") + " |";
    rule += " ---: |";
  }
  table += "\n" + rule + "\n";
  for (const auto& path : files) {
    const json results = read_json_file(path);
    const std::string date = results.value("date", "?").substr(0, 10);
    table += fmt::format("| {} | {} | {} |", link(path, page_folder), date, command_settings(results.value("command", "")));
    for (const auto& column : columns) {
      std::string cell = "-";
      if (column["field"]) cell = field_text(results, column["field"].as<std::string>());
      for (const auto& id : column["rows"] ? column["rows"].as<std::vector<std::string>>() : std::vector<std::string>{}) {
        if (const json* row = find_row(results, id)) {
          cell = format_result_value(row->value("ours", json()), row->value("unit", ""));
          break;
        }
      }
      table += " " + cell + " |";
    }
    table += "\n";
  }
  return table;
}

}  // namespace distillery::report
