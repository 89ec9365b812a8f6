#include "distillery/train/fused_sgd.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

namespace distillery::train {

namespace {

// Elements [begin, end) of one parameter. The modes are template arguments and the pointers
// restrict, so that the loop vectorises: the same operations, in the same order, as torch's
// update (buf.mul_(momentum).add_(d, 1 - dampening); p.add_(d, -lr)).
enum class Momentum { kNone, kFirst, kHeavyBall, kNesterov };

template <typename scalar_t, Momentum kMomentum, bool kDecay>
void update(scalar_t* __restrict p, const scalar_t* __restrict g, scalar_t* __restrict buf, int64_t begin, int64_t end,
            scalar_t lr, scalar_t momentum, scalar_t dampening, scalar_t weight_decay) {
  for (int64_t i = begin; i < end; ++i) {
    scalar_t d = kDecay ? g[i] + p[i] * weight_decay : g[i];
    if (kMomentum == Momentum::kFirst) {
      buf[i] = d;  // torch clones d on the first step
    } else if (kMomentum != Momentum::kNone) {
      const scalar_t b = buf[i] * momentum + d * (1 - dampening);
      buf[i] = b;
      d = kMomentum == Momentum::kNesterov ? d + b * momentum : b;
    }
    p[i] = p[i] + d * -lr;
  }
}

template <typename scalar_t, Momentum kMomentum>
void update_range(bool decay, scalar_t* p, const scalar_t* g, scalar_t* buf, int64_t begin, int64_t end, scalar_t lr,
                  scalar_t momentum, scalar_t dampening, scalar_t weight_decay) {
  if (decay) update<scalar_t, kMomentum, true>(p, g, buf, begin, end, lr, momentum, dampening, weight_decay);
  else update<scalar_t, kMomentum, false>(p, g, buf, begin, end, lr, momentum, dampening, weight_decay);
}

template <typename scalar_t>
void update_parameter(scalar_t* p, const scalar_t* g, scalar_t* buf, bool first, bool nesterov, int64_t n, scalar_t lr,
                      scalar_t momentum, scalar_t dampening, scalar_t weight_decay) {
  const bool decay = weight_decay != 0;
  at::parallel_for(0, n, 1 << 16, [&](int64_t begin, int64_t end) {
    if (!buf) {
      update_range<scalar_t, Momentum::kNone>(decay, p, g, buf, begin, end, lr, momentum, dampening, weight_decay);
    } else if (first && nesterov) {  // buf = d, then p -= lr * (d + momentum * d)
      for (int64_t i = begin; i < end; ++i) {
        const scalar_t d = decay ? g[i] + p[i] * weight_decay : g[i];
        buf[i] = d;
        p[i] = p[i] + (d + d * momentum) * -lr;
      }
    } else if (first) {
      update_range<scalar_t, Momentum::kFirst>(decay, p, g, buf, begin, end, lr, momentum, dampening, weight_decay);
    } else if (nesterov) {
      update_range<scalar_t, Momentum::kNesterov>(decay, p, g, buf, begin, end, lr, momentum, dampening, weight_decay);
    } else {
      update_range<scalar_t, Momentum::kHeavyBall>(decay, p, g, buf, begin, end, lr, momentum, dampening, weight_decay);
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
        update_parameter<scalar_t>(p.data_ptr<scalar_t>(), grad.data_ptr<scalar_t>(),
                                   buf.defined() ? buf.data_ptr<scalar_t>() : nullptr, first, options.nesterov(), p.numel(),
                                   static_cast<scalar_t>(options.lr()), static_cast<scalar_t>(options.momentum()),
                                   static_cast<scalar_t>(options.dampening()), static_cast<scalar_t>(options.weight_decay()));
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
