#include "distillery/nn/torchscript_export.h"

#include <fmt/format.h>

#include "distillery/error.h"
#include "distillery/nn/torchscript_classifier.h"
#include "distillery/report/metrics.h"

namespace distillery::nn {

namespace {

// The exported forward's statements for the architecture, on `x` (already normalised); weights
// are attributes named by torchscript_parameter_name ("fc1.weight" -> "fc1__weight").
std::string architecture_source(const ModelSpec& spec) {
  const auto linear = [](const std::string& layer, const std::string& input) {
    return fmt::format("torch.addmm(self.{0}__bias, {1}, self.{0}__weight.t())", layer, input);
  };
  std::string body;
  if (spec.kind == "mlp") {
    body += "    x = x.reshape(x.size(0), -1)\n";
    const auto layers = spec.hidden.size() + 1;
    for (size_t i = 1; i < layers; ++i) body += "    x = torch.relu(" + linear(fmt::format("fc{}", i), "x") + ")\n";
    body += "    return " + linear(fmt::format("fc{}", layers), "x") + "\n";
  } else if (spec.kind == "convnet") {
    for (const char* conv : {"conv1", "conv2"}) {
      body += fmt::format("    x = torch.max_pool2d(torch.relu(torch.conv2d(x, self.{0}__weight, self.{0}__bias, [1, 1], [2, 2])), [2, 2])\n", conv);
    }
    body += "    x = torch.relu(" + linear("fc1", "x.flatten(1)") + ")\n";
    body += "    return " + linear("fc2", "x") + "\n";
  } else {
    throw InputError(fmt::format("a {} model has no TorchScript export yet (mlp, convnet and TorchScript students have)", spec.kind));
  }
  return body;
}

}  // namespace

bool has_torchscript_export(const ModelSpec& spec) {
  return spec.kind == "mlp" || spec.kind == "convnet" || spec.kind == "torchscript";
}

torch::jit::Module to_torchscript(ClassifierImpl& model, const ModelSpec& spec) {
  torch::NoGradGuard no_grad;
  const bool normalized = !spec.input_mean.empty();
  const auto channels = static_cast<int64_t>(spec.input_mean.size());
  auto add_normalization = [&](torch::jit::Module& module) {
    module.register_buffer("input_mean", torch::tensor(spec.input_mean, torch::kFloat32).view({1, channels, 1, 1}));
    module.register_buffer("input_std", torch::tensor(spec.input_std, torch::kFloat32).view({1, channels, 1, 1}));
  };
  const std::string normalize = normalized ? "    x = (x - self.input_mean) / self.input_std\n" : "";
  torch::jit::Module exported;
  if (auto* script = dynamic_cast<TorchScriptClassifierImpl*>(&model.core())) {
    if (!normalized) {
      exported = script->script().clone();
    } else {
      exported = torch::jit::Module("DistilleryNormalizedInput");
      exported.register_module("model", script->script().clone());
      add_normalization(exported);
      exported.define("def forward(self, x):\n" + normalize + "    return self.model.forward(x)\n");
    }
  } else {
    exported = torch::jit::Module(fmt::format("Distillery{}", spec.kind == "mlp" ? "MLP" : "ConvNet"));
    const std::string body = architecture_source(spec);
    for (const auto& p : model.core().named_parameters()) exported.register_parameter(torchscript_parameter_name(p.key()), p.value().detach().clone(), false);
    if (normalized) add_normalization(exported);
    exported.define("def forward(self, x):\n" + normalize + body);
  }
  exported.eval();
  return exported;
}

void export_torchscript(ClassifierImpl& model, const ModelSpec& spec, const std::string& path) {
  const auto exported = to_torchscript(model, spec);
  report::write_file_atomic(path, [&](std::ostream& out) { exported.save(out); });
}

}  // namespace distillery::nn
