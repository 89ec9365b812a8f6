#include "distillery/report/generated_pages.h"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <map>

#include "distillery/error.h"
#include "distillery/report/config_reference.h"
#include "distillery/report/metrics.h"
#include "distillery/report/results_page.h"
#include "distillery/report/results_summary.h"

namespace distillery::report {
namespace fs = std::filesystem;

namespace {

YAML::Node load_summary(const std::string& path) {
  if (!fs::exists(path)) throw InputError(path + ": not found (it says which results the generated pages show)");
  try {
    return YAML::LoadFile(path);
  } catch (const YAML::Exception& e) {
    throw InputError(fmt::format("{}: {}", path, e.what()));
  }
}

YAML::Node required(const YAML::Node& node, const char* key, const std::string& path) {
  if (!node[key]) throw InputError(fmt::format("{}: '{}' is missing", path, key));
  return node[key];
}

std::string marker(const std::string& edge, const std::string& block) {
  return fmt::format("<!-- {} generated {} -->", edge, block);
}

std::string describe(const GeneratedPage& page) {
  return page.block.empty() ? page.path : fmt::format("{} (block {})", page.path, page.block);
}

// Works out every page; with `write`, rewrites the stale ones. Returns the stale ones.
std::vector<std::string> update_pages(const std::string& root, bool write) {
  std::map<std::string, std::string> before, after;
  std::vector<std::string> stale;
  for (const auto& page : generated_pages(root)) {
    if (!after.count(page.path)) {
      if (!page.block.empty() && !fs::exists(page.path)) throw InputError(page.path + ": not found (it holds a generated block)");
      before[page.path] = after[page.path] = fs::exists(page.path) ? read_file_text(page.path) : "";
    }
    const std::string updated = apply_generated_page(page, after[page.path]);
    if (updated != after[page.path]) stale.push_back(describe(page));
    after[page.path] = updated;
  }
  if (write) {
    for (const auto& [path, text] : after) {
      if (text != before[path]) write_file_atomic(path, text);
    }
  }
  return stale;
}

}  // namespace

std::vector<GeneratedPage> generated_pages(const std::string& root) {
  const std::string results_folder = root + "/docs/results";
  const std::string summary_path = results_folder + "/summary.yaml";
  const YAML::Node summary = load_summary(summary_path);
  std::vector<GeneratedPage> pages;

  std::vector<nlohmann::json> results;
  for (const auto& name : required(summary, "results_page", summary_path).as<std::vector<std::string>>()) {
    auto file = read_json_file(results_folder + "/" + name);
    file["results_file"] = "results/" + name;  // as linked from docs/RESULTS.md
    results.push_back(file);
  }
  pages.push_back({root + "/docs/RESULTS.md", "", render_results_markdown(results)});

  pages.push_back({root + "/README.md", "headline-results",
                   render_headline_table(required(summary, "headlines", summary_path), results_folder, root)});

  for (const auto& exploration : required(summary, "explorations", summary_path)) {
    const std::string folder = required(exploration, "folder", summary_path).as<std::string>();
    for (const auto& page : required(exploration, "pages", summary_path).as<std::vector<std::string>>()) {
      const std::string path = root + "/" + page;
      pages.push_back({path, folder + "-explorations",
                       render_explorations_index(results_folder + "/" + folder, required(exploration, "columns", summary_path),
                                                 fs::path(path).parent_path().string())});
    }
  }

  if (summary["tables"]) {
    for (const auto& table : summary["tables"]) {
      const std::string page = root + "/" + required(table, "page", summary_path).as<std::string>();
      pages.push_back({page, required(table, "name", summary_path).as<std::string>(),
                       render_rows_table(results_folder + "/" + required(table, "file", summary_path).as<std::string>(),
                                         required(table, "rows", summary_path).as<std::vector<std::string>>(),
                                         fs::path(page).parent_path().string())});
    }
  }

  pages.push_back({root + "/docs/guide/configuration.md", "", render_config_reference()});
  return pages;
}

std::string apply_generated_page(const GeneratedPage& page, const std::string& current) {
  if (page.block.empty()) return page.content;
  const std::string begin = marker("begin", page.block), end = marker("end", page.block);
  const size_t begin_at = current.find(begin);
  const size_t end_at = current.find(end);
  if (begin_at == std::string::npos || end_at == std::string::npos || end_at < begin_at) {
    throw InputError(fmt::format("{}: the lines '{}' and '{}' must both be there, in that order", page.path, begin, end));
  }
  return current.substr(0, begin_at + begin.size()) + "\n" + page.content + current.substr(end_at);
}

std::vector<std::string> write_generated_pages(const std::string& root) { return update_pages(root, true); }

std::vector<std::string> stale_generated_pages(const std::string& root) { return update_pages(root, false); }

}  // namespace distillery::report
