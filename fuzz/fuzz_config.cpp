// libFuzzer target: any text given to the YAML config loader either parses into a Config whose
// every key can be read back, or raises InputError naming the problem.
#include <cstddef>
#include <cstdint>
#include <string>

#include "distillery/config.h"
#include "distillery/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto config = distillery::Config::parse(std::string(reinterpret_cast<const char*>(data), size), "<fuzz>");
    (void)config.to_yaml();
  } catch (const distillery::InputError&) {
  }
  return 0;
}
