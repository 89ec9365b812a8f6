#include "distillery/system.h"

#include <dlfcn.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <thread>

namespace distillery {

double measure_gemm_gflops() {
  torch::NoGradGuard no_grad;
  auto a = torch::randn({512, 512}), b = torch::randn({512, 512});
  torch::mm(a, b);  // warm-up
  const int repeats = 8;
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < repeats; ++i) torch::mm(a, b);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return repeats * 2.0 * 512 * 512 * 512 / seconds / 1e9;
}

void set_compute_threads(int threads) {
  torch::set_num_threads(threads);
  // Looked up at run time: LibTorch links OpenBLAS, which is not a build dependency of ours, and
  // another BLAS simply lacks the symbol.
  using SetThreads = void (*)(int);
  if (auto set_blas_threads = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) {
    set_blas_threads(threads);
  }
}

double check_blas_speed() {
  const double gflops = measure_gemm_gflops();
  // OpenBLAS reaches well over 50 GFLOP/s on one modern core; the reference BLAS about 2-4.
  if (gflops < 5.0) {
    spdlog::warn("matrix products run at {:.1f} GFLOP/s: LibTorch is using a slow reference BLAS. "
                 "Install libopenblas0-pthread (make setup does) or training will be ~20x slower.", gflops);
  }
  return gflops;
}

nlohmann::json machine_description() {
  std::string cpu = "unknown";
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);) {
    if (line.rfind("model name", 0) == 0) {
      cpu = line.substr(line.find(':') + 2);
      break;
    }
  }
  return {{"cpu", cpu},
          {"cores", std::thread::hardware_concurrency()},
          {"torch_threads", torch::get_num_threads()},
          {"libtorch", TORCH_VERSION}};
}

std::string git_revision() {
  std::array<char, 128> buffer{};
  std::string out;
  if (FILE* pipe = popen("git rev-parse --short HEAD 2>/dev/null", "r")) {
    while (fgets(buffer.data(), buffer.size(), pipe)) out += buffer.data();
    pclose(pipe);
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out.empty() ? "unknown" : out;
}

std::string utc_now() {
  std::time_t now = std::time(nullptr);
  char text[32];
  std::strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  return text;
}

}  // namespace distillery
