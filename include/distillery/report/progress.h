#pragma once
// Progress of long work: a live line with samples/s and ETA on a terminal, plain log lines
// (at most one every few seconds) when the output is not a terminal.
#include <chrono>
#include <cstdint>
#include <string>

namespace distillery::report {

class Progress {
 public:
  Progress(std::string label, int64_t total_samples, double log_every_seconds = 10.0);
  /// Records that `samples` more samples are done; `status` is appended to the line.
  void advance(int64_t samples, const std::string& status = "");
  /// Ends the live line.
  void finish();
  double samples_per_second() const;

 private:
  using Clock = std::chrono::steady_clock;
  std::string label_;
  int64_t total_, done_ = 0;
  double log_every_seconds_;
  bool terminal_;
  Clock::time_point start_, last_print_;
};

}  // namespace distillery::report
