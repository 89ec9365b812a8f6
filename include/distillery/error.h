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
