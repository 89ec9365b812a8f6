// Routing by agreement as one fused CPU kernel with a hand-written backward pass.
//
// Written op by op (dynamic_routing_reference), autograd keeps every iteration's coupling,
// products and squash intermediates as full [B, N_out, N_in, D] tensors and streams them through
// memory a few dozen times per step. Here each image is routed on its own: its predictions (about
// 0.4 MB in the quick CapsNet) stay in cache, each iteration reads them twice forward and twice
// backward, and only the couplings and the pre-squash totals of each iteration are kept.
#include <ATen/Parallel.h>

#include <cmath>
#include <vector>

#include "distillery/nn/capsules.h"

namespace distillery::nn {
namespace {

constexpr double kSquashEps = 1e-8;  // the eps of squash()'s default

// The squash factor f(q) = q / ((1 + q) sqrt(q + eps)), with q = |s|^2, so that v = f(q) s.
template <typename T>
T squash_factor(T q) {
  return q / ((1 + q) * std::sqrt(q + static_cast<T>(kSquashEps)));
}

// f'(q) = (2 (q + eps) - q (1 + q)) / (2 (q + eps)^(3/2) (1 + q)^2): finite at q = 0.
template <typename T>
T squash_factor_derivative(T q) {
  const T e = q + static_cast<T>(kSquashEps);
  return (2 * e - q * (1 + q)) / (2 * e * std::sqrt(e) * (1 + q) * (1 + q));
}

template <typename T>
T squared_norm(const T* x, int64_t n) {
  T sum = 0;
  for (int64_t k = 0; k < n; ++k) sum += x[k] * x[k];
  return sum;
}

// The sizes of one routing problem and the per-image views into the saved tensors.
struct Shape {
  int64_t outputs, inputs, dim, iterations;
  int64_t pairs() const { return outputs * inputs; }
};

// c = softmax over the outputs j of logits [J, I], for every input i.
template <typename T>
void softmax_over_outputs(const T* logits, T* coupling, T* column_max, T* column_sum, const Shape& s) {
  const int64_t I = s.inputs;
  for (int64_t i = 0; i < I; ++i) column_max[i] = logits[i];
  for (int64_t j = 1; j < s.outputs; ++j)
    for (int64_t i = 0; i < I; ++i) column_max[i] = std::max(column_max[i], logits[j * I + i]);
  for (int64_t i = 0; i < I; ++i) column_sum[i] = 0;
  for (int64_t j = 0; j < s.outputs; ++j)
    for (int64_t i = 0; i < I; ++i) {
      coupling[j * I + i] = std::exp(logits[j * I + i] - column_max[i]);
      column_sum[i] += coupling[j * I + i];
    }
  for (int64_t j = 0; j < s.outputs; ++j)
    for (int64_t i = 0; i < I; ++i) coupling[j * I + i] /= column_sum[i];
}

// One image forward. u: [J, I, D]. Writes couplings [R, J, I], totals [R, J, D], poses [J, D].
template <typename T>
void route_image(const T* u, T* couplings, T* totals, T* poses, std::vector<T>& scratch, const Shape& s) {
  const int64_t J = s.outputs, I = s.inputs, D = s.dim;
  scratch.assign(s.pairs() + 2 * I, T(0));
  T* logits = scratch.data();
  T* column_max = logits + s.pairs();
  T* column_sum = column_max + I;
  for (int64_t r = 0; r < s.iterations; ++r) {
    T* c = couplings + r * s.pairs();
    T* total = totals + r * J * D;
    softmax_over_outputs(logits, c, column_max, column_sum, s);
    for (int64_t j = 0; j < J; ++j) {  // s_j = sum_i c_ij u_j|i
      T* sj = total + j * D;
      for (int64_t d = 0; d < D; ++d) sj[d] = 0;
      for (int64_t i = 0; i < I; ++i) {
        const T cji = c[j * I + i];
        const T* uji = u + (j * I + i) * D;
        for (int64_t d = 0; d < D; ++d) sj[d] += cji * uji[d];
      }
      const T f = squash_factor(squared_norm(sj, D));
      for (int64_t d = 0; d < D; ++d) poses[j * D + d] = f * sj[d];
    }
    if (r + 1 == s.iterations) break;
    for (int64_t j = 0; j < J; ++j)  // b_ij += u_j|i . v_j
      for (int64_t i = 0; i < I; ++i) {
        const T* uji = u + (j * I + i) * D;
        const T* vj = poses + j * D;
        T agreement = 0;
        for (int64_t d = 0; d < D; ++d) agreement += uji[d] * vj[d];
        logits[j * I + i] += agreement;
      }
  }
}

// One image backward, iterations in reverse. grad_poses [J, D] and grad_coupling [J, I] may be
// null (no gradient reached them). Writes grad_u [J, I, D].
//
// With G = dL/d(logits after iteration r): the agreement update gives v_r the gradient
// sum_i G_ij u_j|i and u the gradient G_ij v_j; the squash and the weighted sum give the gradient of
// c_r; the softmax turns that into logit gradients, which add to G (the logits are a running sum).
template <typename T>
void unroute_image(const T* u, const T* couplings, const T* totals, const T* grad_poses, const T* grad_coupling, T* grad_u,
                   std::vector<T>& scratch, const Shape& s) {
  const int64_t J = s.outputs, I = s.inputs, D = s.dim;
  scratch.assign(2 * s.pairs() + 3 * J * D, T(0));
  T* G = scratch.data();
  T* grad_c = G + s.pairs();
  T* v = grad_c + s.pairs();
  T* grad_v = v + J * D;
  T* grad_s = grad_v + J * D;
  for (int64_t k = 0; k < s.pairs() * D; ++k) grad_u[k] = 0;
  for (int64_t r = s.iterations - 1; r >= 0; --r) {
    const bool last = r + 1 == s.iterations;
    const T* c = couplings + r * s.pairs();
    const T* total = totals + r * J * D;
    for (int64_t j = 0; j < J; ++j) {
      const T* sj = total + j * D;
      const T q = squared_norm(sj, D);
      const T f = squash_factor(q);
      T* gvj = grad_v + j * D;
      for (int64_t d = 0; d < D; ++d) {
        v[j * D + d] = f * sj[d];
        gvj[d] = last && grad_poses != nullptr ? grad_poses[j * D + d] : T(0);
      }
      if (!last) {
        for (int64_t i = 0; i < I; ++i) {
          const T g = G[j * I + i];
          const T* uji = u + (j * I + i) * D;
          for (int64_t d = 0; d < D; ++d) gvj[d] += g * uji[d];
        }
      }
      // dv/ds: v = f(q) s, so grad_s = f grad_v + 2 f'(q) (s . grad_v) s.
      T s_dot_gv = 0;
      for (int64_t d = 0; d < D; ++d) s_dot_gv += sj[d] * gvj[d];
      const T scale = 2 * squash_factor_derivative(q) * s_dot_gv;
      for (int64_t d = 0; d < D; ++d) grad_s[j * D + d] = f * gvj[d] + scale * sj[d];
    }
    for (int64_t j = 0; j < J; ++j) {
      const T* gsj = grad_s + j * D;
      const T* vj = v + j * D;
      for (int64_t i = 0; i < I; ++i) {
        const int64_t ji = j * I + i;
        const T* uji = u + ji * D;
        T* guji = grad_u + ji * D;
        T gc = last && grad_coupling != nullptr ? grad_coupling[ji] : T(0);
        const T cji = c[ji], g = last ? T(0) : G[ji];
        for (int64_t d = 0; d < D; ++d) {
          gc += uji[d] * gsj[d];
          guji[d] += cji * gsj[d] + g * vj[d];
        }
        grad_c[ji] = gc;
      }
    }
    if (r == 0) break;  // the first logits are the constant 0
    for (int64_t i = 0; i < I; ++i) {  // softmax backward over j: c (grad_c - sum_j c grad_c)
      T weighted = 0;
      for (int64_t j = 0; j < J; ++j) weighted += c[j * I + i] * grad_c[j * I + i];
      for (int64_t j = 0; j < J; ++j) G[j * I + i] += c[j * I + i] * (grad_c[j * I + i] - weighted);
    }
  }
}

class DynamicRoutingFunction : public torch::autograd::Function<DynamicRoutingFunction> {
 public:
  // u_hat: [B, J, I, D] contiguous. Returns poses [B, J, D] and the last coupling [B, J, I].
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& u_hat,
                                                int64_t iterations) {
    const Shape s{u_hat.size(1), u_hat.size(2), u_hat.size(3), iterations};
    const int64_t batch = u_hat.size(0);
    auto couplings = torch::empty({batch, iterations, s.outputs, s.inputs}, u_hat.options());
    auto totals = torch::empty({batch, iterations, s.outputs, s.dim}, u_hat.options());
    auto poses = torch::empty({batch, s.outputs, s.dim}, u_hat.options());
    AT_DISPATCH_FLOATING_TYPES(u_hat.scalar_type(), "dynamic_routing", [&] {
      const scalar_t* u = u_hat.data_ptr<scalar_t>();
      scalar_t *c = couplings.data_ptr<scalar_t>(), *t = totals.data_ptr<scalar_t>(), *v = poses.data_ptr<scalar_t>();
      at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
        std::vector<scalar_t> scratch;
        for (int64_t b = begin; b < end; ++b)
          route_image(u + b * s.pairs() * s.dim, c + b * iterations * s.pairs(), t + b * iterations * s.outputs * s.dim,
                      v + b * s.outputs * s.dim, scratch, s);
      });
    });
    ctx->save_for_backward({u_hat, couplings, totals});
    ctx->saved_data["iterations"] = iterations;
    return {poses, couplings.select(1, iterations - 1).clone()};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& u_hat = saved[0];
    const auto& couplings = saved[1];
    const auto& totals = saved[2];
    const int64_t iterations = ctx->saved_data["iterations"].toInt();
    const Shape s{u_hat.size(1), u_hat.size(2), u_hat.size(3), iterations};
    const int64_t batch = u_hat.size(0);
    const auto grad_poses = grads[0].defined() ? grads[0].contiguous() : torch::Tensor();
    const auto grad_coupling = grads[1].defined() ? grads[1].contiguous() : torch::Tensor();
    auto grad_u = torch::empty_like(u_hat);
    AT_DISPATCH_FLOATING_TYPES(u_hat.scalar_type(), "dynamic_routing_backward", [&] {
      const scalar_t *u = u_hat.data_ptr<scalar_t>(), *c = couplings.data_ptr<scalar_t>(), *t = totals.data_ptr<scalar_t>();
      const scalar_t* gv = grad_poses.defined() ? grad_poses.data_ptr<scalar_t>() : nullptr;
      const scalar_t* gc = grad_coupling.defined() ? grad_coupling.data_ptr<scalar_t>() : nullptr;
      scalar_t* gu = grad_u.data_ptr<scalar_t>();
      at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
        std::vector<scalar_t> scratch;
        for (int64_t b = begin; b < end; ++b)
          unroute_image(u + b * s.pairs() * s.dim, c + b * iterations * s.pairs(), t + b * iterations * s.outputs * s.dim,
                        gv == nullptr ? nullptr : gv + b * s.outputs * s.dim, gc == nullptr ? nullptr : gc + b * s.pairs(),
                        gu + b * s.pairs() * s.dim, scratch, s);
      });
    });
    return {grad_u, torch::Tensor()};
  }
};

}  // namespace

RoutingOutput dynamic_routing(const torch::Tensor& predictions, int64_t iterations) {
  TORCH_CHECK(predictions.dim() == 4, "dynamic_routing: expected predictions [B, N_in, N_out, D_out], got ",
              predictions.sizes());
  TORCH_CHECK(iterations >= 1, "dynamic_routing: iterations must be >= 1, got ", iterations);
  if (!predictions.device().is_cpu()) return dynamic_routing_reference(predictions, iterations);
  // The kernel works in float or double; under bf16 autocast the predictions arrive in bf16 and
  // are routed in float.
  auto u_hat = predictions.permute({0, 2, 1, 3});
  if (u_hat.scalar_type() != torch::kFloat && u_hat.scalar_type() != torch::kDouble) u_hat = u_hat.to(torch::kFloat);
  const auto outputs = DynamicRoutingFunction::apply(u_hat.contiguous(), iterations);
  return {outputs[0], outputs[1].transpose(1, 2)};
}

RoutingOutput dynamic_routing_reference(const torch::Tensor& predictions, int64_t iterations) {
  TORCH_CHECK(predictions.dim() == 4, "dynamic_routing: expected predictions [B, N_in, N_out, D_out], got ",
              predictions.sizes());
  TORCH_CHECK(iterations >= 1, "dynamic_routing: iterations must be >= 1, got ", iterations);
  const auto batch = predictions.size(0), num_in = predictions.size(1), num_out = predictions.size(2);
  // Work in [B, N_out, N_in, D] so that both sums over i and over d are batched matrix products
  // (about twice as fast on CPU as einsum on [B, N_in, N_out, D], forward and backward).
  auto u_hat = predictions.permute({0, 2, 1, 3}).contiguous();
  // Routing logits b_ij, stored [B, N_out, N_in]: local state of this call, starting at 0.
  auto logits = torch::zeros({batch, num_out, num_in}, predictions.options());
  RoutingOutput out;
  torch::Tensor coupling;
  for (int64_t r = 0; r < iterations; ++r) {
    coupling = torch::softmax(logits, /*dim=*/1);  // c_ij: softmax over the output capsules j
    // s_j = sum_i c_ij u_hat_j|i: [B, N_out, 1, N_in] x [B, N_out, N_in, D] -> [B, N_out, D].
    auto total = torch::matmul(coupling.unsqueeze(2), u_hat).squeeze(2);
    out.poses = squash(total, /*dim=*/-1);
    if (r + 1 < iterations) {
      // Agreement a_ij = u_hat_j|i . v_j: [B, N_out, N_in, D] x [B, N_out, D, 1] -> [B, N_out, N_in].
      logits = logits + torch::matmul(u_hat, out.poses.unsqueeze(-1)).squeeze(-1);
    }
  }
  out.coupling = coupling.transpose(1, 2);  // [B, N_in, N_out]
  return out;
}

}  // namespace distillery::nn
