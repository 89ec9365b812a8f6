#include "distillery/distill/loss.h"

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

}  // namespace distillery::distill
