#pragma once
// Teachers: a distillery checkpoint, a TorchScript module (for example trained in Python), or an
// ensemble of either. A teacher always runs in eval mode without autograd, and its parameters are
// never given to an optimizer.
#include <torch/script.h>
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "distillery/nn/classifier.h"

namespace distillery::distill {

class Teacher {
 public:
  virtual ~Teacher() = default;
  /// Images [B, C, H, W] -> logits [B, K].
  virtual torch::Tensor logits(const torch::Tensor& images) = 0;
  /// Soft targets at temperature T: [B, C, H, W] -> probabilities [B, K].
  virtual torch::Tensor soft_targets(const torch::Tensor& images, double temperature);
  virtual int64_t num_classes() const = 0;
  virtual std::string describe() const = 0;
  /// Trainable scalars of the network(s) behind the logits.
  virtual int64_t num_parameters() const = 0;
};

/// A distillery model (for example loaded from a checkpoint).
class ModelTeacher : public Teacher {
 public:
  ModelTeacher(std::shared_ptr<nn::ClassifierImpl> model, std::string name);
  /// Under bf16 autocast the forward pass runs on bf16 copies of the linear and convolution
  /// weights, made once: autocast would otherwise cast the teacher's fp32 weights on every batch
  /// (it caches casts only of weights that require gradients). The values are the same.
  torch::Tensor logits(const torch::Tensor& images) override;
  int64_t num_classes() const override { return model_->num_classes(); }
  std::string describe() const override { return name_; }
  int64_t num_parameters() const override;

 private:
  struct WeightCopy {
    torch::Tensor parameter, bf16;
  };
  std::shared_ptr<nn::ClassifierImpl> model_;
  std::string name_;
  std::vector<WeightCopy> bf16_weights_;  // made on the first forward pass under bf16 autocast
};

/// A TorchScript module whose forward maps images [B, C, H, W] to logits [B, K].
class ScriptTeacher : public Teacher {
 public:
  /// `example_input` [1, C, H, W] is run once to learn K and check that the module accepts it.
  ScriptTeacher(const std::string& path, const torch::Tensor& example_input);
  torch::Tensor logits(const torch::Tensor& images) override;
  int64_t num_classes() const override { return num_classes_; }
  std::string describe() const override { return "torchscript:" + path_; }
  int64_t num_parameters() const override;

 private:
  torch::jit::Module module_;
  std::string path_;
  int64_t num_classes_ = 0;
};

/// Averages its members: their probabilities at T ("probs") or their logits ("logits").
class EnsembleTeacher : public Teacher {
 public:
  EnsembleTeacher(std::vector<std::unique_ptr<Teacher>> members, std::string mode);
  torch::Tensor logits(const torch::Tensor& images) override;
  torch::Tensor soft_targets(const torch::Tensor& images, double temperature) override;
  int64_t num_classes() const override { return members_.front()->num_classes(); }
  std::string describe() const override;
  int64_t num_parameters() const override;

 private:
  std::vector<std::unique_ptr<Teacher>> members_;
  std::string mode_;
};

/// Loads one teacher file: a distillery checkpoint, else a TorchScript module.
/// `example_input` [1, C, H, W] is what the student will see.
std::unique_ptr<Teacher> load_teacher(const std::string& path, const torch::Tensor& example_input);

/// One path: that teacher; several: an ensemble combined by `mode` (probs | logits).
std::unique_ptr<Teacher> load_teachers(const std::vector<std::string>& paths, const std::string& mode,
                                       const torch::Tensor& example_input);

}  // namespace distillery::distill
