#pragma once
// docs/guide/configuration.md, generated from the config schema so that it cannot drift from it.
#include <string>

namespace distillery::report {

/// Every config key, grouped by section, with its type, default, range and meaning.
std::string render_config_reference();

}  // namespace distillery::report
