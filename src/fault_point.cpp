#include "distillery/fault_point.h"

#include "distillery/error.h"

#include <fmt/format.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace distillery {
namespace {

struct StopRequest {
  std::string point;
  int64_t step = -1;
  std::string rank;  // empty: any process
};

StopRequest parse_stop_request(const std::string& text) {
  StopRequest request;
  const auto first = text.find(':');
  const auto second = first == std::string::npos ? std::string::npos : text.find(':', first + 1);
  request.point = text.substr(0, first);
  try {
    size_t used = 0;
    const std::string step = text.substr(first + 1, second == std::string::npos ? std::string::npos : second - first - 1);
    request.step = std::stoll(step, &used);
    if (used != step.size() || request.step < 0) throw std::invalid_argument(step);
  } catch (const std::exception&) {
    throw InputError(fmt::format("DISTILLERY_STOP_AT='{}' is not POINT:STEP or POINT:STEP:RANK", text));
  }
  if (first == std::string::npos) throw InputError(fmt::format("DISTILLERY_STOP_AT='{}' is not POINT:STEP or POINT:STEP:RANK", text));
  if (second != std::string::npos) request.rank = text.substr(second + 1);
  return request;
}

}  // namespace

void fault_point(std::string_view point, int64_t step) {
  const char* text = std::getenv("DISTILLERY_STOP_AT");
  if (!text || !*text) return;
  const StopRequest request = parse_stop_request(text);
  if (request.point != point || request.step != step) return;
  const char* rank = std::getenv("RANK");
  if (!request.rank.empty() && request.rank != (rank ? rank : "")) return;
  std::fprintf(stderr, "DISTILLERY_STOP_AT: stopping at %s %lld (a fault-injection test)\n", request.point.c_str(),
               static_cast<long long>(step));
  std::fflush(stderr);
  std::raise(SIGSTOP);
}

}  // namespace distillery
