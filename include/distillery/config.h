#pragma once
// Experiment configuration: YAML files with a fixed schema of dotted keys ("train.lr"), overridable
// from the command line with key=value. Unknown keys, wrong types and out-of-range values are
// rejected with the key's name (and the nearest valid key for a misspelling).
#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace distillery {

class Config {
 public:
  /// Every key at its default.
  Config() = default;
  /// Reads a YAML file; keys not in it keep their defaults.
  static Config load(const std::string& path);
  /// Parses YAML text (`source` names it in errors).
  static Config parse(const std::string& text, const std::string& source);

  /// Applies "key=value" (value in YAML syntax: 3, 0.1, true, [1200, 1200], text).
  void set(const std::string& assignment);
  void set(const std::string& key, const std::string& value);

  int64_t get_int(const std::string& key) const;
  double get_double(const std::string& key) const;
  bool get_bool(const std::string& key) const;
  std::string get_string(const std::string& key) const;
  std::vector<int64_t> get_int_list(const std::string& key) const;
  std::vector<double> get_double_list(const std::string& key) const;
  std::vector<std::string> get_string_list(const std::string& key) const;

  /// Whether the key was given (in the file or with set) rather than left at its default.
  bool is_set(const std::string& key) const { return values_.count(key) > 0; }

  /// A key whose value (default included) differs between two configs, values shown as YAML.
  struct Difference {
    std::string key, ours, theirs;
  };
  /// Every schema key whose value here differs from `other`'s, in schema order. Numbers compare as
  /// numbers: 0.003 and 3e-3 are the same value.
  std::vector<Difference> differences(const Config& other) const;

  /// The full resolved config (defaults included) as nested YAML.
  std::string to_yaml() const;
  /// Every key in the schema with its type, default and meaning, for --help.
  static std::string describe_keys();

  /// One schema key as the configuration reference shows it.
  struct KeyInfo {
    std::string key, type, default_value, range, meaning;
  };
  /// Every key in the schema, in schema order (the generated docs/guide/configuration.md).
  static std::vector<KeyInfo> keys();

 private:
  void assign(const std::string& key, const YAML::Node& value, const std::string& source);
  YAML::Node value(const std::string& key) const;

  std::map<std::string, YAML::Node> values_;
};

/// The key in the schema nearest to `key` by edit distance.
std::string nearest_config_key(const std::string& key);

}  // namespace distillery
