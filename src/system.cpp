#include "distillery/system.h"
#include "distillery/build_revision.h"

#include <dlfcn.h>
#include <malloc.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <algorithm>
#include <exception>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <thread>

namespace distillery {

void keep_freed_memory_for_reuse() {
#ifdef __GLIBC__
  if (std::getenv("MALLOC_MMAP_THRESHOLD_") || std::getenv("MALLOC_TRIM_THRESHOLD_")) return;
  mallopt(M_MMAP_THRESHOLD, 32 << 20);  // glibc's largest: blocks up to 32 MiB come from the heap
  mallopt(M_TRIM_THRESHOLD, 1 << 30);   // give the heap's top back only beyond 1 GiB free
#endif
}

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

namespace {

// Looked up at run time: LibTorch links OpenBLAS and libgomp, which are not build dependencies of
// ours, and another BLAS or thread pool simply lacks the symbols.
void set_blas_threads(int threads) {
  using SetThreads = void (*)(int);
  if (auto set = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) set(threads);
}

int blas_threads() {
  using GetThreads = int (*)();
  auto get = reinterpret_cast<GetThreads>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
  return get ? get() : 0;
}

// This thread's OpenMP team size (OpenMP keeps the count per thread), leaving LibTorch's global
// count and its other pools alone, which torch::set_num_threads would change.
void set_this_threads_openmp_threads(int threads) {
  at::get_num_threads();  // LibTorch sets a new thread's count on its first use: let that happen first
  using SetThreads = void (*)(int);
  if (auto set = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "omp_set_num_threads"))) set(threads);
}

}  // namespace

void set_compute_threads(int threads) {
  torch::set_num_threads(threads);
  set_blas_threads(threads);
}

void run_side_by_side(const std::vector<std::function<void()>>& tasks, int workers) {
  workers = std::max(1, std::min<int>(workers, static_cast<int>(tasks.size())));
  const int blas = blas_threads();
  set_blas_threads(1);  // a global count: at 1, each product runs on the thread that calls it
  std::vector<std::exception_ptr> errors(workers);
  std::vector<std::thread> threads;
  for (int w = 0; w < workers; ++w) {
    threads.emplace_back([&, w] {
      try {
        set_this_threads_openmp_threads(1);
        for (size_t i = w; i < tasks.size(); i += workers) tasks[i]();
      } catch (...) {
        errors[w] = std::current_exception();
      }
    });
  }
  for (auto& thread : threads) thread.join();
  if (blas > 0) set_blas_threads(blas);
  for (const auto& error : errors) {
    if (error) std::rethrow_exception(error);
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

std::string git_revision() { return DISTILLERY_BUILD_REVISION; }

std::string utc_now() {
  std::time_t now = std::time(nullptr);
  char text[32];
  std::strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  return text;
}

}  // namespace distillery
