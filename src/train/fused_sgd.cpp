#include "distillery/train/fused_sgd.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

namespace distillery::train {

namespace {

// One parameter's update; `buf` is null on the first step with momentum (it becomes d_p, as
// torch::optim::SGD's clone of d_p). Same operations, in the same order, as torch's update.
template <typename scalar_t>
void update(scalar_t* p, const scalar_t* g, scalar_t* buf, bool first, int64_t n, scalar_t lr, scalar_t momentum,
            scalar_t dampening, scalar_t weight_decay, bool nesterov) {
  at::parallel_for(0, n, 1 << 16, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      scalar_t d = g[i];
      if (weight_decay != 0) d = d + p[i] * weight_decay;
      if (buf) {
        const scalar_t b = first ? d : buf[i] * momentum + d * (1 - dampening);
        buf[i] = b;
        d = nesterov ? d + b * momentum : b;
      }
      p[i] = p[i] + d * -lr;
    }
  });
}

}  // namespace

torch::Tensor FusedSGD::step(LossClosure closure) {
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
      const auto& grad = p.grad();
      const bool fast = p.is_cpu() && p.is_contiguous() && grad.is_contiguous() && !grad.is_sparse() &&
                        p.scalar_type() == grad.scalar_type() &&
                        (p.scalar_type() == torch::kFloat || p.scalar_type() == torch::kDouble);
      const std::string key = c10::guts::to_string(p.unsafeGetTensorImpl());
      torch::Tensor buf;
      bool first = false;
      if (options.momentum() != 0) {
        auto found = state_.find(key);
        if (found == state_.end()) {
          auto state = std::make_unique<torch::optim::SGDParamState>();
          state->momentum_buffer(torch::zeros_like(p));
          buf = state->momentum_buffer();
          state_[key] = std::move(state);
          first = true;
        } else {
          buf = static_cast<torch::optim::SGDParamState&>(*found->second).momentum_buffer();
        }
      }
      if (!fast) {  // other devices and layouts: the same rule with tensor operations
        auto d = options.weight_decay() != 0 ? grad.add(p, options.weight_decay()) : grad;
        if (buf.defined()) {
          if (first) buf.copy_(d);
          else buf.mul_(options.momentum()).add_(d, 1 - options.dampening());
          d = options.nesterov() ? d.add(buf, options.momentum()) : buf;
        }
        p.add_(d, -options.lr());
        continue;
      }
      AT_DISPATCH_FLOATING_TYPES(p.scalar_type(), "fused_sgd", [&] {
        update<scalar_t>(p.data_ptr<scalar_t>(), grad.data_ptr<scalar_t>(), buf.defined() ? buf.data_ptr<scalar_t>() : nullptr,
                         first, p.numel(), static_cast<scalar_t>(options.lr()), static_cast<scalar_t>(options.momentum()),
                         static_cast<scalar_t>(options.dampening()), static_cast<scalar_t>(options.weight_decay()),
                         options.nesterov());
      });
    }
  }
  return loss;
}

void clear_gradients(torch::optim::Optimizer& optimizer) {
  for (auto& group : optimizer.param_groups()) {
    for (auto& p : group.params()) p.mutable_grad() = torch::Tensor();
  }
}

}  // namespace distillery::train
