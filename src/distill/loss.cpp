#include "distillery/distill/loss.h"

#include <limits>

namespace distillery::distill {

torch::Tensor soft_target_loss_from_probs(const torch::Tensor& student_logits, const torch::Tensor& teacher_probs,
                                          const torch::Tensor& labels, const SoftTargetLossOptions& options) {
  TORCH_CHECK(student_logits.dim() == 2, "soft_target_loss: student logits must be [B, K], got ", student_logits.sizes());
  TORCH_CHECK(teacher_probs.sizes() == student_logits.sizes(), "soft_target_loss: teacher ", teacher_probs.sizes(),
              " and student ", student_logits.sizes(), " differ in shape");
  TORCH_CHECK(options.temperature() > 0, "soft_target_loss: temperature must be > 0, got ", options.temperature());
  const double t = options.temperature();
  const auto batch = student_logits.size(0);
  auto log_p = torch::log_softmax(student_logits / t, /*dim=*/1);
  // KL(q || p) = sum q log q - sum q log p; xlogy keeps q = 0 entries at 0.
  auto kl = (torch::xlogy(teacher_probs, teacher_probs) - teacher_probs * log_p).sum() / batch;
  auto loss = options.soft_weight() * t * t * kl;
  if (options.hard_weight() > 0) {
    TORCH_CHECK(labels.defined() && labels.size(0) == batch, "soft_target_loss: hard_weight > 0 needs labels [", batch, "]");
    loss = loss + options.hard_weight() * torch::nn::functional::cross_entropy(student_logits, labels);
  }
  return loss;
}

torch::Tensor soft_target_loss(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits,
                               const torch::Tensor& labels, const SoftTargetLossOptions& options) {
  TORCH_CHECK(options.temperature() > 0, "soft_target_loss: temperature must be > 0, got ", options.temperature());
  auto q = torch::softmax(teacher_logits.detach() / options.temperature(), /*dim=*/1);
  return soft_target_loss_from_probs(student_logits, q, labels, options);
}

torch::Tensor decoupled_kd_loss(const torch::Tensor& student_logits, const torch::Tensor& teacher_probs, const torch::Tensor& target,
                                double temperature, double alpha, double beta) {
  TORCH_CHECK(student_logits.dim() == 2 && teacher_probs.sizes() == student_logits.sizes(), "decoupled_kd_loss: student ",
              student_logits.sizes(), " and teacher ", teacher_probs.sizes(), " must both be [B, K]");
  TORCH_CHECK(target.dim() == 1 && target.size(0) == student_logits.size(0), "decoupled_kd_loss: target must be [B]");
  TORCH_CHECK(temperature > 0, "decoupled_kd_loss: temperature must be > 0, got ", temperature);
  const auto scaled = student_logits / temperature;
  const auto is_target = torch::one_hot(target, student_logits.size(1)).to(torch::kBool);
  const auto column = target.unsqueeze(1);
  // log p_t and log (1 - p_t), from log-sum-exps: stable where p_t is close to 0 or 1.
  const auto log_all = torch::logsumexp(scaled, 1);
  const auto others = scaled.masked_fill(is_target, -std::numeric_limits<double>::infinity());
  const auto log_p_target = scaled.gather(1, column).squeeze(1) - log_all;
  const auto log_p_rest = torch::logsumexp(others, 1) - log_all;
  const auto q_target = teacher_probs.gather(1, column).squeeze(1);
  const auto q_rest = (1 - q_target).clamp_min(0);
  const auto tckd = torch::xlogy(q_target, q_target) - q_target * log_p_target + torch::xlogy(q_rest, q_rest) - q_rest * log_p_rest;
  const auto q_tilde = teacher_probs.masked_fill(is_target, 0) / q_rest.clamp_min(1e-12).unsqueeze(1);
  const auto log_p_tilde = torch::log_softmax(others, 1).masked_fill(is_target, 0);
  const auto nckd = (torch::xlogy(q_tilde, q_tilde) - q_tilde * log_p_tilde).sum(1);
  return temperature * temperature * (alpha * tckd + beta * nckd).mean();
}

}  // namespace distillery::distill
