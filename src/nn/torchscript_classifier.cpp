#include "distillery/nn/torchscript_classifier.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <sstream>

#include "distillery/error.h"

namespace distillery::nn {

std::string torchscript_parameter_name(const std::string& name) {
  std::string out;
  for (const char c : name) out += c == '.' ? std::string("__") : std::string(1, c);
  return out;
}

TorchScriptClassifierImpl::TorchScriptClassifierImpl(const std::string& bytes, const std::string& source, int64_t in_channels,
                                                     int64_t image_size, int64_t num_classes)
    : source_(source), num_classes_(num_classes) {
  std::istringstream stream(bytes);
  try {
    module_ = torch::jit::load(stream);
  } catch (const std::exception& e) {
    throw InputError(source + ": not a loadable TorchScript module (save one with torch.jit.script(model).save(path))");
  }
  int64_t trainable = 0;
  for (const auto& p : module_.named_parameters(/*recurse=*/true)) {
    register_parameter(torchscript_parameter_name(p.name), p.value, p.value.requires_grad());
    trainable += p.value.requires_grad() ? p.value.numel() : 0;
  }
  for (const auto& b : module_.named_buffers(/*recurse=*/true)) register_buffer(torchscript_parameter_name(b.name), b.value);
  if (trainable == 0) throw InputError(source + ": the TorchScript student has no trainable parameters");

  // One forward pass on the data's shape, in eval mode, to check what comes out.
  const auto example = torch::zeros({2, in_channels, image_size, image_size});
  module_.eval();
  torch::Tensor logits;
  try {
    torch::NoGradGuard no_grad;
    logits = forward(example);
  } catch (const InputError&) {
    throw;
  } catch (const std::exception& e) {
    const std::string what = e.what();
    throw InputError(fmt::format("{}: the TorchScript student fails on the data's input shape [2, {}, {}, {}]: {}", source, in_channels,
                                 image_size, image_size, what.substr(0, what.find('\n'))));
  }
  if (logits.dim() != 2 || logits.size(0) != 2) {
    throw InputError(fmt::format("{}: the TorchScript student must return logits [B, K], got [{}] for a batch of 2", source,
                                 fmt::join(logits.sizes(), ", ")));
  }
  if (logits.size(1) != num_classes) {
    throw InputError(fmt::format("{}: the TorchScript student returns {} logits per image but the data has {} classes", source,
                                 logits.size(1), num_classes));
  }
  train(true);
}

c10::IValue TorchScriptClassifierImpl::run(const torch::Tensor& images) { return module_.forward({images}); }

torch::Tensor torchscript_logits(const c10::IValue& output, const std::string& source) {
  if (output.isTensor()) return output.toTensor();
  if (output.isGenericDict()) {
    const auto dict = output.toGenericDict();
    if (dict.contains("logits") && dict.at("logits").isTensor()) return dict.at("logits").toTensor();
  }
  throw InputError(fmt::format("{}: a TorchScript model must return logits [B, K] or a dict with \"logits\", got a {}", source,
                               output.tagKind()));
}

torch::Tensor TorchScriptClassifierImpl::forward(const torch::Tensor& images) { return torchscript_logits(run(images), source_); }

std::map<std::string, torch::Tensor> TorchScriptClassifierImpl::features(const torch::Tensor& images) {
  std::map<std::string, torch::Tensor> out;
  const auto result = run(images);
  if (!result.isGenericDict()) return out;
  for (const auto& entry : result.toGenericDict()) {
    if (entry.key().isString() && entry.value().isTensor()) out[entry.key().toStringRef()] = entry.value().toTensor();
  }
  return out;
}

void TorchScriptClassifierImpl::train(bool on) {
  ClassifierImpl::train(on);
  module_.train(on);
}

torch::Tensor TorchScriptClassifierImpl::output_bias() {
  torch::Tensor bias;
  for (const auto& p : module_.named_parameters(/*recurse=*/true)) {
    if (p.value.dim() == 1 && p.value.size(0) == num_classes_) bias = p.value;
  }
  if (!bias.defined()) {
    throw InputError(fmt::format("{}: the TorchScript student has no output bias of {} values to adjust: set distill.adjust_bias: false",
                                 source_, num_classes_));
  }
  return bias;
}

}  // namespace distillery::nn
