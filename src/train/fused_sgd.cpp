#include "distillery/train/fused_sgd.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

namespace distillery::train {

namespace {

// Elements [begin, end) of one parameter: torch's update (the first step clones d into the buffer;
// later buf.mul_(momentum).add_(d, 1 - dampening); p.add_(d, -lr)). The modes are template
// arguments and the pointers restrict: with run-time modes GCC does not vectorise the loop.
template <typename scalar_t, bool kMomentum, bool kFirst, bool kNesterov, bool kDecay>
void update(scalar_t* __restrict p, const scalar_t* __restrict g, scalar_t* __restrict buf, int64_t begin, int64_t end,
            scalar_t lr, scalar_t momentum, scalar_t dampening, scalar_t weight_decay) {
  for (int64_t i = begin; i < end; ++i) {
    scalar_t d = kDecay ? g[i] + p[i] * weight_decay : g[i];
    if (kMomentum) {
      const scalar_t b = kFirst ? d : buf[i] * momentum + d * (1 - dampening);
      buf[i] = b;
      d = kNesterov ? d + b * momentum : b;
    }
    p[i] = p[i] + d * -lr;
  }
}

// Calls f with std::true_type or std::false_type: a run-time flag as a template argument.
template <typename F>
void with_flag(bool flag, F&& f) {
  if (flag) f(std::true_type{});
  else f(std::false_type{});
}

bool fusable(const torch::Tensor& p) {
  const auto& grad = p.grad();
  return p.is_cpu() && p.is_contiguous() && grad.is_contiguous() && !grad.is_sparse() &&
         p.scalar_type() == grad.scalar_type() && (p.scalar_type() == torch::kFloat || p.scalar_type() == torch::kDouble);
}

}  // namespace

torch::Tensor FusedSGD::step(LossClosure closure) {
  for (auto& group : param_groups_) {
    for (auto& p : group.params()) {
      if (p.grad().defined() && !fusable(p)) return torch::optim::SGD::step(closure);  // other devices and layouts
    }
  }
  torch::NoGradGuard no_grad;
  torch::Tensor loss;
  if (closure) {
    at::AutoGradMode enable_grad(true);
    loss = closure();
  }
  for (auto& group : param_groups_) {
    auto& options = static_cast<torch::optim::SGDOptions&>(group.options());
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      torch::Tensor buf;
      bool first = false;
      if (options.momentum() != 0) {
        auto& state = state_[c10::guts::to_string(p.unsafeGetTensorImpl())];  // torch::optim::SGD's key
        first = !state;
        if (first) {
          auto fresh = std::make_unique<torch::optim::SGDParamState>();
          fresh->momentum_buffer(torch::empty_like(p));
          state = std::move(fresh);
        }
        buf = static_cast<torch::optim::SGDParamState&>(*state).momentum_buffer();
      }
      AT_DISPATCH_FLOATING_TYPES(p.scalar_type(), "fused_sgd", [&] {
        scalar_t* data = p.data_ptr<scalar_t>();
        const scalar_t* grad = p.grad().data_ptr<scalar_t>();
        scalar_t* momentum_buffer = buf.defined() ? buf.data_ptr<scalar_t>() : nullptr;
        const auto lr = static_cast<scalar_t>(options.lr()), momentum = static_cast<scalar_t>(options.momentum()),
                   dampening = static_cast<scalar_t>(options.dampening()),
                   weight_decay = static_cast<scalar_t>(options.weight_decay());
        at::parallel_for(0, p.numel(), 1 << 16, [&](int64_t begin, int64_t end) {
          with_flag(momentum_buffer != nullptr, [&](auto with_momentum) {
            with_flag(first, [&](auto first_step) {
              with_flag(options.nesterov(), [&](auto nesterov) {
                with_flag(weight_decay != 0, [&](auto decay) {
                  update<scalar_t, decltype(with_momentum)::value, decltype(first_step)::value, decltype(nesterov)::value,
                         decltype(decay)::value>(data, grad, momentum_buffer, begin, end, lr, momentum, dampening,
                                                 weight_decay);
                });
              });
            });
          });
        });
      });
    }
  }
  return loss;
}

}  // namespace distillery::train
