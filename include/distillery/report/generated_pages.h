#pragma once
// The pages of the documentation that are generated, never typed: docs/RESULTS.md, the headline
// block of README.md, each experiment's index of explorations, and the configuration reference.
// `distillery results` rewrites them; `distillery results --check` only says which are stale.
#include <string>
#include <vector>

namespace distillery::report {

/// A page as it should read. `block` names the part of `path` between the lines
/// "<!-- begin generated NAME -->" and "<!-- end generated NAME -->"; empty means the whole file.
struct GeneratedPage {
  std::string path;
  std::string block;
  std::string content;
};

/// Every generated page under the repository root `root`, as docs/results/summary.yaml asks.
std::vector<GeneratedPage> generated_pages(const std::string& root);

/// The text `page` would give its file, whose current text is `current` (the markers of a block
/// must be there: an InputError names the file and the marker otherwise).
std::string apply_generated_page(const GeneratedPage& page, const std::string& current);

/// Rewrites the pages that differ from what they should read; returns their "path" or "path (block)".
std::vector<std::string> write_generated_pages(const std::string& root);

/// The pages that differ, as "path" or "path (block NAME)", without writing anything.
std::vector<std::string> stale_generated_pages(const std::string& root);

}  // namespace distillery::report
