#pragma once
// metrics.jsonl: one JSON object per line, appended and flushed as the run goes.
#include <nlohmann/json.hpp>

#include <fstream>
#include <functional>
#include <ostream>
#include <string>
#include <vector>

namespace distillery::report {

class MetricsWriter {
 public:
  explicit MetricsWriter(const std::string& path);
  void write(const nlohmann::json& record);

 private:
  std::string path_;
  std::ofstream out_;
};

/// Reads every record of a metrics.jsonl file (skipping a torn last line).
std::vector<nlohmann::json> read_metrics(const std::string& path);

/// Writes text to a file atomically (temporary file, then rename).
void write_file_atomic(const std::string& path, const std::string& text);
/// The same, for contents written piece by piece (large files, without a copy in memory).
void write_file_atomic(const std::string& path, const std::function<void(std::ostream&)>& write);

/// A whole file as text ("" if it cannot be read).
std::string read_file_text(const std::string& path);

/// A JSON file; InputError naming it when it is missing or not valid JSON.
nlohmann::json read_json_file(const std::string& path);

}  // namespace distillery::report
