#include "distillery/error.h"

#include <fmt/format.h>

#include <regex>

namespace distillery {

LibraryErrorMessage explain_library_error(const std::string& message) {
  static const std::regex allocation("can't allocate memory: you tried to allocate ([0-9]+) bytes");
  std::smatch match;
  if (std::regex_search(message, match, allocation)) {
    const double gib = std::stod(match[1].str()) / double(1ull << 30);
    return {fmt::format("out of memory: one tensor of {:.1f} GiB was asked for; the model's size (model.hidden, model.channels, "
                        "the image size) and the batch (train.batch_size, distill.teacher_batches) set it: make them smaller",
                        gib),
            true};
  }
  return {message.substr(0, message.find('\n')), false};
}

}  // namespace distillery
