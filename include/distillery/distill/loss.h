#pragma once
// Soft-target distillation loss (Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a
// Neural Network").
#include <torch/torch.h>

namespace distillery::distill {

struct SoftTargetLossOptions {
  /// Softmax temperature T of both teacher and student in the soft term.
  TORCH_ARG(double, temperature) = 1.0;
  /// Weight of the soft term, which is also multiplied by T^2 so that its gradient scale does not
  /// depend on T.
  TORCH_ARG(double, soft_weight) = 1.0;
  /// Weight of the hard-label cross-entropy at T = 1 (0: no labels needed).
  TORCH_ARG(double, hard_weight) = 0.0;
};

/// soft_weight * T^2 * mean_b KL(q_b || p_b) + hard_weight * mean_b CE(z_b, y_b), where
/// q = softmax(teacher / T) and p = softmax(student / T).
/// student_logits [B, K], teacher_logits [B, K], labels [B] int64 (may be undefined when
/// hard_weight is 0) -> scalar. The soft term's gradient with respect to the student logit z_i is
/// soft_weight * T * (p_i - q_i) / B.
torch::Tensor soft_target_loss(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits,
                               const torch::Tensor& labels, const SoftTargetLossOptions& options);

/// The same with the teacher's soft targets q [B, K] already computed at the options' temperature
/// (ensembles average probabilities; the teacher cache stores them).
torch::Tensor soft_target_loss_from_probs(const torch::Tensor& student_logits, const torch::Tensor& teacher_probs,
                                          const torch::Tensor& labels, const SoftTargetLossOptions& options);

/// Decoupled knowledge distillation (Zhao et al. 2022), from the teacher's probabilities q at
/// temperature T and each example's target class t [B] int64:
///   T^2 * mean_b (alpha * KL(b(q) || b(p)) + beta * KL(q~ || p~)),   p = softmax(student / T),
/// b(.) = (the probability of t, 1 - it): the target-class term (TCKD); ~ = the distribution over
/// the other classes, renormalised: the non-target term (NCKD). Hinton's KL(q || p) is
/// KL(b(q) || b(p)) + (1 - q_t) KL(q~ || p~): DKD frees NCKD from the weight 1 - q_t.
torch::Tensor decoupled_kd_loss(const torch::Tensor& student_logits, const torch::Tensor& teacher_probs, const torch::Tensor& target,
                                double temperature, double alpha, double beta);

}  // namespace distillery::distill
