// The fused CPU kernel of GLOM's local-window consensus attention. Written op by op, a window of K
// neighbours costs K elementwise passes over [B, D, H, W] plus as many autograd nodes, forward and
// backward; here each location visits its neighbours once, the attention weights are the only
// thing kept for the backward pass, and the backward pass is written by hand.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <cmath>
#include <limits>

#include "distillery/nn/glom.h"

namespace distillery::nn {
namespace {

constexpr double kNormEps = 1e-8;  // as F::normalize in the op-by-op version

// Eight partial sums: a dot product the compiler can vectorise without reassociating one sum.
template <typename T>
inline T dot(const T* a, const T* b, int64_t n) {
  T partial[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t d = 0;
  for (; d + 8 <= n; d += 8) {
    for (int k = 0; k < 8; ++k) partial[k] += a[d + k] * b[d + k];
  }
  T sum = 0;
  for (; d < n; ++d) sum += a[d] * b[d];
  for (int k = 0; k < 8; ++k) sum += partial[k];
  return sum;
}

template <typename T>
inline void axpy(T alpha, const T* x, T* y, int64_t n) {
  for (int64_t d = 0; d < n; ++d) y[d] += alpha * x[d];
}

// The window of location i = (row, col): neighbour j for each offset k (row offset outer, column
// offset inner, as window_neighbours), or -1 outside the grid and at k = K / 2 (the column itself).
struct Window {
  int64_t height, width, radius;
  int64_t size() const { return (2 * radius + 1) * (2 * radius + 1); }
  template <typename Visit>
  void for_each(int64_t i, Visit&& visit) const {
    const int64_t row = i / width, col = i % width, side = 2 * radius + 1;
    for (int64_t dr = -radius; dr <= radius; ++dr) {
      const int64_t r = row + dr;
      if (r < 0 || r >= height) continue;
      for (int64_t dc = -radius; dc <= radius; ++dc) {
        const int64_t c = col + dc;
        if (c < 0 || c >= width || (dr == 0 && dc == 0)) continue;
        visit((dr + radius) * side + (dc + radius), r * width + c);
      }
    }
  }
};

template <typename T>
void forward_image(const T* x, const T* xn, T* consensus, T* weights, int64_t n, int64_t dim, const Window& window,
                   T beta) {
  const int64_t k_size = window.size();
  for (int64_t i = 0; i < n; ++i) {
    T* w = weights + i * k_size;
    T largest = -std::numeric_limits<T>::infinity();
    window.for_each(i, [&](int64_t k, int64_t j) {
      w[k] = beta * dot(xn + i * dim, xn + j * dim, dim);
      largest = std::max(largest, w[k]);
    });
    if (largest == -std::numeric_limits<T>::infinity()) continue;  // no neighbour: consensus 0
    T total = 0;
    window.for_each(i, [&](int64_t k, int64_t) { total += (w[k] = std::exp(w[k] - largest)); });
    window.for_each(i, [&](int64_t k, int64_t j) {
      w[k] /= total;
      axpy(w[k], x + j * dim, consensus + i * dim, dim);
    });
  }
}

// Gradients of the consensus c_i = sum_j w_ij x_j, w_i = softmax_j(beta <xn_i, xn_j>): to x through
// the values, and to the unit vectors xn through the weights (chained to x afterwards).
template <typename T>
void backward_image(const T* grad, const T* x, const T* xn, const T* weights, T* grad_x, T* grad_xn, int64_t n,
                    int64_t dim, const Window& window, T beta) {
  const int64_t k_size = window.size();
  std::vector<T> grad_w(k_size);
  for (int64_t i = 0; i < n; ++i) {
    const T* g = grad + i * dim;
    const T* w = weights + i * k_size;
    T mean = 0;
    window.for_each(i, [&](int64_t k, int64_t j) {
      grad_w[k] = dot(g, x + j * dim, dim);
      mean += w[k] * grad_w[k];
    });
    window.for_each(i, [&](int64_t k, int64_t j) {
      axpy(w[k], g, grad_x + j * dim, dim);
      const T grad_logit = beta * w[k] * (grad_w[k] - mean);
      axpy(grad_logit, xn + j * dim, grad_xn + i * dim, dim);
      axpy(grad_logit, xn + i * dim, grad_xn + j * dim, dim);
    });
  }
}

class WindowedConsensus : public torch::autograd::Function<WindowedConsensus> {
 public:
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& input,
                                                int64_t height, int64_t width, int64_t radius, double beta) {
    const auto x = input.contiguous();
    const int64_t batch = x.size(0), n = x.size(1), dim = x.size(2);
    const Window window{height, width, radius};
    const auto norms = x.norm(2, {2}, /*keepdim=*/true).clamp_min(kNormEps);  // [B, N, 1]
    const auto xn = (x / norms).contiguous();
    auto consensus = torch::zeros_like(x);
    auto weights = torch::zeros({batch, n, window.size()}, x.options());
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "windowed_consensus", [&] {
      at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
        for (int64_t b = begin; b < end; ++b) {
          forward_image<scalar_t>(x.data_ptr<scalar_t>() + b * n * dim, xn.data_ptr<scalar_t>() + b * n * dim,
                                  consensus.data_ptr<scalar_t>() + b * n * dim,
                                  weights.data_ptr<scalar_t>() + b * n * window.size(), n, dim, window,
                                  static_cast<scalar_t>(beta));
        }
      });
    });
    ctx->save_for_backward({x, xn, norms, weights});
    ctx->saved_data["height"] = height;
    ctx->saved_data["width"] = width;
    ctx->saved_data["radius"] = radius;
    ctx->saved_data["beta"] = beta;
    ctx->mark_non_differentiable({weights});
    return {consensus, weights};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto &x = saved[0], &xn = saved[1], &norms = saved[2], &weights = saved[3];
    const Window window{ctx->saved_data["height"].toInt(), ctx->saved_data["width"].toInt(),
                        ctx->saved_data["radius"].toInt()};
    const double beta = ctx->saved_data["beta"].toDouble();
    const int64_t batch = x.size(0), n = x.size(1), dim = x.size(2);
    auto grad_x = torch::zeros_like(x);
    if (!grads[0].defined()) return {grad_x, {}, {}, {}, {}};
    const auto grad = grads[0].contiguous();
    auto grad_xn = torch::zeros_like(x);
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "windowed_consensus_backward", [&] {
      at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
        for (int64_t b = begin; b < end; ++b) {
          const int64_t offset = b * n * dim;
          backward_image<scalar_t>(grad.data_ptr<scalar_t>() + offset, x.data_ptr<scalar_t>() + offset,
                                   xn.data_ptr<scalar_t>() + offset,
                                   weights.data_ptr<scalar_t>() + b * n * window.size(),
                                   grad_x.data_ptr<scalar_t>() + offset, grad_xn.data_ptr<scalar_t>() + offset, n, dim,
                                   window, static_cast<scalar_t>(beta));
        }
      });
    });
    // xn = x / max(|x|, eps): project out the radial part, unless the norm was clamped.
    const auto clamped = norms.le(kNormEps);
    const auto radial = (xn * grad_xn).sum(-1, /*keepdim=*/true);
    grad_x += torch::where(clamped, grad_xn / kNormEps, (grad_xn - xn * radial) / norms);
    return {grad_x, {}, {}, {}, {}};
  }
};

}  // namespace

ConsensusOutput windowed_consensus_fused(const torch::Tensor& x, int64_t height, int64_t width, int64_t radius,
                                         double beta, bool return_weights) {
  TORCH_CHECK(x.dim() == 3 && x.size(1) == height * width, "windowed_consensus_fused: x must be [B, ", height * width,
              ", D], got ", x.sizes());
  TORCH_CHECK(x.is_cpu() && (x.scalar_type() == torch::kFloat || x.scalar_type() == torch::kDouble),
              "windowed_consensus_fused: float or double CPU tensors only, got ", x.scalar_type(), " on ", x.device());
  TORCH_CHECK(radius >= 1, "windowed_consensus_fused: radius must be >= 1, got ", radius);
  auto outputs = WindowedConsensus::apply(x, height, width, radius, beta);
  ConsensusOutput out;
  out.consensus = outputs[0];
  if (return_weights) out.weights = outputs[1];
  return out;
}

}  // namespace distillery::nn
