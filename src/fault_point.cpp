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
  const auto malformed = [&] { return InputError(fmt::format("DISTILLERY_STOP_AT='{}' is not POINT:STEP or POINT:STEP:RANK", text)); };
  const auto first = text.find(':');
  if (first == std::string::npos || first == 0) throw malformed();
  const auto second = text.find(':', first + 1);
  StopRequest request;
  request.point = text.substr(0, first);
  const std::string step = text.substr(first + 1, second == std::string::npos ? std::string::npos : second - first - 1);
  try {
    size_t used = 0;
    request.step = std::stoll(step, &used);
    if (used != step.size() || request.step < 0) throw malformed();
  } catch (const std::logic_error&) {  // std::stoll's invalid_argument and out_of_range
    throw malformed();
  }
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
