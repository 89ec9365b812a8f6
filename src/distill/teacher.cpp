#include "distillery/distill/teacher.h"

#include <ATen/autocast_mode.h>

#include <filesystem>
#include <sstream>

#include "distillery/error.h"
#include "distillery/nn/torchscript_classifier.h"
#include "distillery/train/checkpoint.h"
#include "distillery/train/zip_checksums.h"

namespace distillery::distill {

torch::Tensor Teacher::soft_targets(const torch::Tensor& images, double temperature) {
  TORCH_CHECK(temperature > 0, "teacher: temperature must be > 0, got ", temperature);
  return torch::softmax(logits(images).to(torch::kFloat32) / temperature, /*dim=*/1);  // fp32 even under bf16 autocast
}

ModelTeacher::ModelTeacher(std::shared_ptr<nn::ClassifierImpl> model, std::string name)
    : model_(std::move(model)), name_(std::move(name)) {
  model_->eval();
  for (auto& p : model_->parameters()) p.set_requires_grad(false);
}

namespace {

bool autocast_to_bf16() {
  return at::autocast::is_cpu_enabled() && at::autocast::get_autocast_cpu_dtype() == at::kBFloat16;
}

// Swaps the bf16 copies into their parameters for one forward pass and the fp32 values back
// afterwards, also when the forward pass throws.
class SwappedWeights {
 public:
  template <typename Copies>
  explicit SwappedWeights(const Copies& copies) {
    for (const auto& copy : copies) {
      saved_.push_back({copy.parameter, copy.parameter.data()});
      saved_.back().first.set_data(copy.bf16);
    }
  }
  ~SwappedWeights() {
    for (auto& [parameter, fp32] : saved_) parameter.set_data(fp32);
  }
  SwappedWeights(const SwappedWeights&) = delete;
  SwappedWeights& operator=(const SwappedWeights&) = delete;

 private:
  std::vector<std::pair<torch::Tensor, torch::Tensor>> saved_;
};

}  // namespace

torch::Tensor ModelTeacher::logits(const torch::Tensor& images) {
  torch::NoGradGuard no_grad;
  model_->eval();
  if (!autocast_to_bf16()) return model_->forward(images);
  if (bf16_weights_.empty()) {
    // Exactly the layers autocast runs in bf16; others (normalisation) keep fp32 parameters.
    for (const auto& module : model_->modules(/*include_self=*/false)) {
      if (!module->as<torch::nn::Linear>() && !module->as<torch::nn::Conv2d>()) continue;
      for (auto& parameter : module->parameters(/*recurse=*/false)) {
        if (parameter.scalar_type() == at::kFloat) bf16_weights_.push_back({parameter, parameter.to(at::kBFloat16)});
      }
    }
  }
  SwappedWeights swapped(bf16_weights_);
  return model_->forward(images);
}

int64_t ModelTeacher::num_parameters() const { return nn::count_parameters(*model_); }

ScriptTeacher::ScriptTeacher(const std::string& path, const torch::Tensor& example_input) : path_(path) {
  std::istringstream bytes(train::read_verified_archive(path));
  try {
    module_ = torch::jit::load(bytes);
  } catch (const std::exception& e) {
    throw InputError(path + ": neither a distillery checkpoint nor a loadable TorchScript module");
  }
  module_.eval();
  torch::Tensor out;
  try {
    out = logits(example_input);
  } catch (const InputError&) {
    throw;
  } catch (const std::exception& e) {
    throw InputError(fmt::format("{}: TorchScript teacher fails on input of shape [{}]: {}", path,
                                 fmt::join(example_input.sizes(), ", "), std::string(e.what()).substr(0, 300)));
  }
  if (out.dim() != 2 || out.size(0) != example_input.size(0)) {
    throw InputError(fmt::format("{}: TorchScript teacher must return logits [B, K], got [{}]", path,
                                 fmt::join(out.sizes(), ", ")));
  }
  num_classes_ = out.size(1);
}

int64_t ScriptTeacher::num_parameters() const {
  int64_t total = 0;
  for (const auto& p : module_.parameters()) total += p.numel();
  return total;
}

torch::Tensor ScriptTeacher::logits(const torch::Tensor& images) {
  torch::NoGradGuard no_grad;
  return nn::torchscript_logits(module_.forward({images}), path_).to(torch::kFloat32);
}

EnsembleTeacher::EnsembleTeacher(std::vector<std::unique_ptr<Teacher>> members, std::string mode)
    : members_(std::move(members)), mode_(std::move(mode)) {
  if (members_.empty()) throw InputError("distill.teachers: an ensemble needs at least one teacher");
  if (mode_ != "probs" && mode_ != "logits") {
    throw InputError("distill.ensemble: must be probs or logits, got '" + mode_ + "'");
  }
  for (const auto& member : members_) {
    if (member->num_classes() != members_.front()->num_classes()) {
      throw InputError(fmt::format("distill.teachers: {} has {} classes but {} has {}", member->describe(),
                                   member->num_classes(), members_.front()->describe(), members_.front()->num_classes()));
    }
  }
}

torch::Tensor EnsembleTeacher::logits(const torch::Tensor& images) {
  auto sum = members_.front()->logits(images);
  for (size_t i = 1; i < members_.size(); ++i) sum = sum + members_[i]->logits(images);
  return sum / double(members_.size());
}

torch::Tensor EnsembleTeacher::soft_targets(const torch::Tensor& images, double temperature) {
  if (mode_ == "logits") return Teacher::soft_targets(images, temperature);
  auto sum = members_.front()->soft_targets(images, temperature);
  for (size_t i = 1; i < members_.size(); ++i) sum = sum + members_[i]->soft_targets(images, temperature);
  return sum / double(members_.size());
}

int64_t EnsembleTeacher::num_parameters() const {
  int64_t total = 0;
  for (const auto& member : members_) total += member->num_parameters();
  return total;
}

std::string EnsembleTeacher::describe() const {
  std::string text = "ensemble(" + mode_ + ":";
  for (const auto& member : members_) text += " " + member->describe();
  return text + ")";
}

std::unique_ptr<Teacher> load_teacher(const std::string& path, const torch::Tensor& example_input) {
  if (!std::filesystem::exists(path)) throw InputError(path + ": teacher file does not exist");
  bool is_checkpoint = true;
  try {
    train::read_checkpoint_meta(path);
  } catch (const InputError& e) {
    // Only a file that is not a distillery checkpoint at all may be TorchScript; a damaged
    // checkpoint is reported as such.
    const std::string message = e.what();
    if (message.find("not a distillery checkpoint") == std::string::npos &&
        message.find("not a readable checkpoint") == std::string::npos) {
      throw;
    }
    is_checkpoint = false;
  }
  if (!is_checkpoint) return std::make_unique<ScriptTeacher>(path, example_input);
  auto loaded = train::load_model(path);
  auto teacher = std::make_unique<ModelTeacher>(loaded.model, path);
  try {
    teacher->logits(example_input);
  } catch (const c10::Error& e) {
    throw InputError(fmt::format("{}: teacher does not accept the student's input shape [{}]", path,
                                 fmt::join(example_input.sizes(), ", ")));
  }
  return teacher;
}

std::unique_ptr<Teacher> load_teachers(const std::vector<std::string>& paths, const std::string& mode,
                                       const torch::Tensor& example_input) {
  if (paths.empty()) throw InputError("distill.teachers: no teacher given (use --teacher PATH[,PATH...])");
  if (paths.size() == 1) return load_teacher(paths.front(), example_input);
  std::vector<std::unique_ptr<Teacher>> members;
  for (const auto& path : paths) members.push_back(load_teacher(path, example_input));
  return std::make_unique<EnsembleTeacher>(std::move(members), mode);
}

}  // namespace distillery::distill
