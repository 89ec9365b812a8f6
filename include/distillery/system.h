#pragma once
// Facts about the machine a run happens on, and a check that LibTorch has a fast BLAS.
#include <nlohmann/json.hpp>

#include <functional>
#include <string>
#include <vector>

namespace distillery {

/// Measured single-precision GEMM speed (GFLOP/s) on 512x512 products.
double measure_gemm_gflops();

/// Warns loudly (stderr) when matrix products run at reference-BLAS speed; returns the GFLOP/s.
double check_blas_speed();

/// Keeps freed memory in the process for the next allocation. By default glibc hands blocks
/// above 128 KiB straight back to the kernel (mmap) and trims the heap's top, so a training step
/// that frees and reallocates tens of MiB can page-fault it back in, zeroed, every step: a GLOM
/// run on 60,000 scenes had slowed to 1.0 steps/s by step 650 with 10% of its perf samples in page
/// faults, while the same run with these settings (as environment variables) ran 2.75 steps/s
/// beside it and showed none. Leaves glibc alone where MALLOC_MMAP_THRESHOLD_ or
/// MALLOC_TRIM_THRESHOLD_ is set. Call once, early.
void keep_freed_memory_for_reuse();

/// Runs LibTorch's intra-op pool and OpenBLAS's own pool on `threads` threads.
/// torch::set_num_threads alone leaves OpenBLAS with a worker per core, and those workers spin
/// (sched_yield) between products: two single-thread runs on 2 cores then fight over them.
void set_compute_threads(int threads);

/// Runs the tasks at once on `workers` threads (task i on thread i % workers, in order), with the
/// LibTorch and OpenBLAS work inside a task on that thread alone; OpenBLAS's count is restored
/// after. For independent models too small to gain from sharing a pool. Rethrows a task's
/// exception after every thread has finished.
void run_side_by_side(const std::vector<std::function<void()>>& tasks, int workers);

/// CPU model, core count, LibTorch version and threads: recorded with every result.
nlohmann::json machine_description();

/// The git revision the library was built from (with "+uncommitted" when its code differed from
/// it at build time), or "unknown" outside a git checkout. Fixed at build time, not read from the
/// working tree at run time: a long run's binary may be older than the tree when it finishes.
std::string git_revision();

/// UTC time now, ISO 8601.
std::string utc_now();

}  // namespace distillery
