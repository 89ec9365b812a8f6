// libFuzzer target: any bytes given to the IDX reader (plain or gzip) either parse into a tensor
// whose size matches the header or raise InputError; nothing else may escape or crash.
#include <cstddef>
#include <cstdint>
#include <string>

#include "distillery/data/idx.h"
#include "distillery/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto values = distillery::data::parse_idx(std::string(reinterpret_cast<const char*>(data), size), "<fuzz>");
    if (values.numel() > 0) (void)values.flatten()[0];
  } catch (const distillery::InputError&) {
  }
  return 0;
}
