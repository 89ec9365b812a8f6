#pragma once
// Shared helpers of the test suite: a seeding fixture, temporary folders, file bytes, MNIST lookup.
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "distillery/data/dataset.h"
#include "distillery/error.h"
#ifdef DISTILLERY_SOURCE_DIR
#include "distillery/experiments/hinton2015.h"  // ExperimentOptions
#endif

namespace distillery::testing {

/// Every test starts from the same global RNG state.
class SeededTest : public ::testing::Test {
 protected:
  void SetUp() override { torch::manual_seed(0); }
};

/// A fresh folder under the system's temporary folder, removed with everything in it at scope exit.
class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = "distillery-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
    if (info) name += std::string("-") + info->name();
    path_ = std::filesystem::temp_directory_path() / name;
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  /// The path of `name` inside the folder.
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << "cannot write " << path;
}

inline std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

/// The data folder the library would use (DISTILLERY_DATA, set by CTest), if it holds MNIST.
inline bool mnist_available() {
  const std::filesystem::path dir = std::filesystem::path(data::resolve_data_dir()) / "mnist";
  for (const char* stem : {"train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                           "t10k-labels-idx1-ubyte"}) {
    if (!std::filesystem::exists(dir / stem) && !std::filesystem::exists(dir / (std::string(stem) + ".gz"))) {
      return false;
    }
  }
  return true;
}

#define DISTILLERY_REQUIRE_MNIST()                                                                   \
  do {                                                                                               \
    if (!::distillery::testing::mnist_available()) {                                                 \
      GTEST_SKIP() << "MNIST not found under " << ::distillery::data::resolve_data_dir()            \
                   << "/mnist (run `make setup`)";                                                   \
    }                                                                                                \
  } while (0)

#ifdef DISTILLERY_SOURCE_DIR
/// How a test runs a whole experiment: the repository's configs, run folders under dir/runs, the
/// results file at dir/results/<experiment>.json (a folder the experiment must create).
inline experiments::ExperimentOptions experiment_options(const TempDir& dir, const std::string& experiment,
                                                         const std::string& profile) {
  experiments::ExperimentOptions options;
  options.profile = profile;
  options.configs_dir = std::string(DISTILLERY_SOURCE_DIR) + "/configs";
  options.runs_dir = dir.file("runs");
  options.results_path = dir.file("results/" + experiment + ".json");
  options.command = "distillery experiment " + experiment + " --profile " + profile + " (from a test)";
  return options;
}
#endif

}  // namespace distillery::testing

namespace distillery::testing {

/// Runs `action`, which must throw distillery::InputError; returns its message ("" and a test
/// failure otherwise).
template <typename Action>
std::string input_error_message(Action&& action) {
  try {
    action();
  } catch (const InputError& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected distillery::InputError, got another exception: " << e.what();
    return "";
  }
  ADD_FAILURE() << "expected distillery::InputError, nothing was thrown";
  return "";
}

}  // namespace distillery::testing
