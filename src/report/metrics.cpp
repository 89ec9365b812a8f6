#include "distillery/report/metrics.h"

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "distillery/error.h"

namespace distillery::report {

MetricsWriter::MetricsWriter(const std::string& path) : path_(path) {
  const auto parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent);
  out_.open(path, std::ios::app);
  if (!out_) throw std::runtime_error(path + ": cannot open metrics file for writing");
}

void MetricsWriter::write(const nlohmann::json& record) {
  out_ << record.dump() << '\n';
  out_.flush();
  if (!out_) throw std::runtime_error(path_ + ": cannot write metrics (disk full?)");
}

std::vector<nlohmann::json> read_metrics(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw InputError(path + ": cannot open metrics file");
  std::vector<nlohmann::json> records;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    try {
      records.push_back(nlohmann::json::parse(line));
    } catch (const nlohmann::json::exception&) {
      // A run killed mid-write leaves at most a torn last line.
    }
  }
  return records;
}

void write_file_atomic(const std::string& path, const std::function<void(std::ostream&)>& write) {
  const auto parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent);
  // A temporary name of this process and call: co-distillation workers write the same run files,
  // and with one shared name one worker's rename took the file from under another's.
  static std::atomic<uint64_t> calls{0};
  const std::string tmp = fmt::format("{}.tmp.{}.{}", path, ::getpid(), calls++);
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    write(out);
    out.flush();
    if (!out) {
      std::filesystem::remove(tmp);
      throw std::runtime_error(path + ": cannot write file (disk full or folder not writable?)");
    }
  }
  std::filesystem::rename(tmp, path);
}

void write_file_atomic(const std::string& path, const std::string& text) {
  write_file_atomic(path, [&](std::ostream& out) { out << text; });
}

std::string read_file_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

nlohmann::json read_json_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw InputError(path + ": file not found");
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw InputError(path + ": not valid JSON: " + e.what());
  }
}

}  // namespace distillery::report
