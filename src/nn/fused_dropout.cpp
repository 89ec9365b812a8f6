#include "distillery/nn/fused_dropout.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <mutex>

namespace distillery::nn {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// splitmix64's output function: a bijective 64-bit mix whose outputs for consecutive counters pass
// BigCrush; each call gives the 32-bit uniforms of two elements.
inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

uint64_t draw_seed() {
  auto generator = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(generator.mutex());
  return generator.get<at::CPUGeneratorImpl>()->random64();
}

// Elements per parallel chunk (each element's hash depends on its index only, so chunks may split a pair).
constexpr int64_t kGrain = 1 << 15;

// Elements [begin, end): branch-free (a random keep decision would be mispredicted half the time)
// and on restrict pointers (the byte mask would otherwise alias every other pointer).
template <typename scalar_t, bool kRelu>
void dropout_forward(const scalar_t* __restrict in, scalar_t* __restrict out, uint8_t* __restrict mask, int64_t begin,
                     int64_t end, uint64_t seed, uint64_t threshold, at::opmath_type<scalar_t> scale) {
  using acc_t = at::opmath_type<scalar_t>;  // float for bf16, else scalar_t
  for (int64_t i = begin; i < end; ++i) {
    // Two elements share a hash: the low half decides element 2k, the high half 2k + 1.
    const uint64_t bits = mix64(seed + static_cast<uint64_t>(i >> 1) * 0x9E3779B97F4A7C15ULL);
    const uint64_t u = (bits >> ((i & 1) * 32)) & 0xFFFFFFFFULL;
    const bool keep = u >= threshold;
    const acc_t v = static_cast<acc_t>(in[i]);
    // v < 0 ? 0 : v keeps a NaN, and multiplying (by 0 when dropped) propagates it, as
    // torch::dropout(torch::relu(x)) does, so a diverging run is still caught.
    const acc_t activated = kRelu ? (v < acc_t(0) ? acc_t(0) : v) : v;
    out[i] = static_cast<scalar_t>(activated * (scale * static_cast<acc_t>(keep)));
    mask[i] = static_cast<uint8_t>(keep & (!kRelu | !(v <= acc_t(0))));
  }
}

template <typename scalar_t>
void dropout_backward(const scalar_t* __restrict grad, const uint8_t* __restrict mask, scalar_t* __restrict grad_input,
                      int64_t begin, int64_t end, at::opmath_type<scalar_t> scale) {
  using acc_t = at::opmath_type<scalar_t>;
  for (int64_t i = begin; i < end; ++i) {
    grad_input[i] = static_cast<scalar_t>(static_cast<acc_t>(grad[i]) * (scale * static_cast<acc_t>(mask[i])));
  }
}

struct DropoutFunction : public torch::autograd::Function<DropoutFunction> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& input, double p, bool relu) {
    const auto x = input.contiguous();
    auto out = torch::empty_like(x);
    auto mask = torch::empty(x.sizes(), x.options().dtype(torch::kUInt8));
    const uint64_t seed = draw_seed();
    // An element is dropped when its 32-bit uniform is below p * 2^32.
    const auto threshold = static_cast<uint64_t>(p * 4294967296.0);
    const double scale = 1.0 / (1.0 - p);
    const int64_t n = x.numel();
    AT_DISPATCH_FLOATING_TYPES_AND(torch::kBFloat16, x.scalar_type(), "fused_dropout", [&] {
      const scalar_t* in = x.data_ptr<scalar_t>();
      scalar_t* o = out.data_ptr<scalar_t>();
      uint8_t* m = mask.data_ptr<uint8_t>();
      const auto kept_scale = static_cast<at::opmath_type<scalar_t>>(scale);
      at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) {
        if (relu) dropout_forward<scalar_t, true>(in, o, m, begin, end, seed, threshold, kept_scale);
        else dropout_forward<scalar_t, false>(in, o, m, begin, end, seed, threshold, kept_scale);
      });
    });
    ctx->saved_data["mask"] = mask;
    ctx->saved_data["scale"] = scale;
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto mask = ctx->saved_data["mask"].toTensor();
    const double scale = ctx->saved_data["scale"].toDouble();
    const auto grad = grads[0].contiguous();
    auto grad_input = torch::empty_like(grad);
    const int64_t n = grad.numel();
    AT_DISPATCH_FLOATING_TYPES_AND(torch::kBFloat16, grad.scalar_type(), "fused_dropout_backward", [&] {
      const scalar_t* g = grad.data_ptr<scalar_t>();
      const uint8_t* m = mask.data_ptr<uint8_t>();
      scalar_t* gi = grad_input.data_ptr<scalar_t>();
      const auto kept_scale = static_cast<at::opmath_type<scalar_t>>(scale);
      at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) { dropout_backward<scalar_t>(g, m, gi, begin, end, kept_scale); });
    });
    return {grad_input, torch::Tensor(), torch::Tensor()};
  }
};

torch::Tensor dropout_impl(const torch::Tensor& x, double p, bool training, bool relu) {
  TORCH_CHECK(p >= 0.0 && p < 1.0, "dropout: p must be in [0, 1), got ", p);
  if (!training || p == 0.0) return relu ? torch::relu(x) : x;
  const bool fast = x.is_cpu() && (x.scalar_type() == torch::kFloat || x.scalar_type() == torch::kDouble ||
                                   x.scalar_type() == torch::kBFloat16);
  if (!fast) return torch::dropout(relu ? torch::relu(x) : x, p, /*train=*/true);
  return DropoutFunction::apply(x, p, relu);
}

}  // namespace

torch::Tensor fused_dropout(const torch::Tensor& x, double p, bool training) {
  return dropout_impl(x, p, training, /*relu=*/false);
}

torch::Tensor fused_relu_dropout(const torch::Tensor& x, double p, bool training) {
  return dropout_impl(x, p, training, /*relu=*/true);
}

}  // namespace distillery::nn
