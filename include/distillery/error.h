#pragma once
// Errors that reach the user. InputError: bad data, config, checkpoint or arguments (exit code 2).
// Everything else that escapes a run is a run failure (exit code 1).
#include <stdexcept>
#include <string>

namespace distillery {

class InputError : public std::runtime_error {
 public:
  explicit InputError(const std::string& message) : std::runtime_error(message) {}
};

}  // namespace distillery

namespace distillery {

/// What the user is told about an error LibTorch raised, from its message without the backtrace.
struct LibraryErrorMessage {
  std::string text;  ///< one line
  bool input_error;  ///< the config asked for too much (exit 2), rather than a failure of the run
};

/// A failed allocation becomes one line saying how much was asked for and which config keys set
/// it; anything else, the message's first line.
LibraryErrorMessage explain_library_error(const std::string& message);

}  // namespace distillery
