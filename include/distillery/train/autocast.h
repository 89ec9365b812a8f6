#pragma once
// Mixed precision on the CPU: LibTorch's autocast runs matrix products (linear, matmul, bmm,
// convolutions) in bfloat16 inside a scope, while weights, optimizer state and everything else
// stay fp32. On CPUs with AVX512-BF16 or AMX the products run about twice as fast.
#include <ATen/autocast_mode.h>

#include <string>

#include "distillery/error.h"

namespace distillery::train {

/// Autocast to bfloat16 for one training step when precision is "bf16" (no-op for "fp32");
/// restores the previous autocast state on exit.
class CpuAutocast {
 public:
  explicit CpuAutocast(const std::string& precision) : enabled_(precision == "bf16") {
    if (precision != "bf16" && precision != "fp32") throw InputError("train.precision: unknown precision '" + precision + "' (known: fp32, bf16)");
    if (!enabled_) return;
    previous_enabled_ = at::autocast::is_cpu_enabled();
    previous_dtype_ = at::autocast::get_autocast_cpu_dtype();
    at::autocast::set_cpu_enabled(true);
    at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
    at::autocast::increment_nesting();
  }
  ~CpuAutocast() {
    if (!enabled_) return;
    // The cached bf16 copies of the weights must not outlive the step: the optimizer changes them.
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    at::autocast::set_cpu_enabled(previous_enabled_);
    at::autocast::set_autocast_cpu_dtype(previous_dtype_);
  }
  CpuAutocast(const CpuAutocast&) = delete;
  CpuAutocast& operator=(const CpuAutocast&) = delete;

 private:
  bool enabled_;
  bool previous_enabled_ = false;
  at::ScalarType previous_dtype_ = at::kBFloat16;
};

}  // namespace distillery::train
