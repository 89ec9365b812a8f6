#include "distillery/report/progress.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstdio>

namespace distillery::report {

Progress::Progress(std::string label, int64_t total_samples, double log_every_seconds)
    : label_(std::move(label)),
      total_(total_samples),
      log_every_seconds_(log_every_seconds),
      terminal_(::isatty(STDERR_FILENO) == 1),
      start_(Clock::now()),
      last_print_(start_) {}

double Progress::samples_per_second() const {
  const double seconds = std::chrono::duration<double>(Clock::now() - start_).count();
  return seconds > 0 ? done_ / seconds : 0.0;
}

void Progress::advance(int64_t samples, const std::string& status) {
  done_ += samples;
  const auto now = Clock::now();
  const double since_print = std::chrono::duration<double>(now - last_print_).count();
  if (since_print < (terminal_ ? 0.25 : log_every_seconds_) && done_ < total_) return;
  last_print_ = now;
  const double rate = samples_per_second();
  const double eta = rate > 0 ? (total_ - done_) / rate : 0.0;
  const std::string line = fmt::format("{} {:5.1f}% {:>8.0f} samples/s  ETA {:02d}:{:02d}  {}", label_,
                                       100.0 * done_ / std::max<int64_t>(total_, 1), rate, int(eta) / 60,
                                       int(eta) % 60, status);
  if (terminal_) {
    std::fprintf(stderr, "\r\033[K%s", line.c_str());
    std::fflush(stderr);
  } else {
    spdlog::info("{}", line);
  }
}

void Progress::finish() {
  if (terminal_) std::fprintf(stderr, "\n");
}

}  // namespace distillery::report
