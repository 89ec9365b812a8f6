#include "distillery/nn/model_spec.h"

#include <fmt/format.h>

#include "distillery/error.h"
#include "distillery/nn/capsules.h"
#include "distillery/nn/convnet.h"
#include "distillery/nn/input_normalization.h"
#include "distillery/nn/mlp.h"
#include "distillery/nn/torchscript_classifier.h"

namespace distillery::nn {

nlohmann::json ModelSpec::to_json() const {
  nlohmann::json json = {{"kind", kind},         {"in_channels", in_channels},     {"image_size", image_size},
                         {"num_classes", num_classes}, {"hidden", hidden},         {"channels", channels},
                         {"dropout_input", dropout_input}, {"dropout_hidden", dropout_hidden}, {"max_norm", max_norm},
                         {"routing_iterations", routing_iterations}, {"capsule_dims", capsule_dims}};
  if (!classes.empty()) json["classes"] = classes;
  if (folder_input) json["input"] = {{"kind", "folder"}, {"resize", input_resize}, {"crop", input_crop}};
  if (!input_mean.empty()) json["normalize"] = {{"mean", input_mean}, {"std", input_std}};
  if (!script_path.empty()) json["path"] = script_path;
  return json;
}

ModelSpec ModelSpec::from_json(const nlohmann::json& json, const std::string& source) {
  ModelSpec spec;
  try {
    spec.kind = json.at("kind").get<std::string>();
    spec.in_channels = json.at("in_channels").get<int64_t>();
    spec.image_size = json.at("image_size").get<int64_t>();
    spec.num_classes = json.at("num_classes").get<int64_t>();
    spec.hidden = json.at("hidden").get<std::vector<int64_t>>();
    spec.channels = json.at("channels").get<std::vector<int64_t>>();
    spec.dropout_input = json.at("dropout_input").get<double>();
    spec.dropout_hidden = json.at("dropout_hidden").get<double>();
    spec.max_norm = json.at("max_norm").get<double>();
    // Added with capsules: checkpoints written before them lack these keys.
    spec.routing_iterations = json.value("routing_iterations", spec.routing_iterations);
    spec.capsule_dims = json.value("capsule_dims", spec.capsule_dims);
    // Added with image folders.
    spec.classes = json.value("classes", spec.classes);
    if (json.contains("input")) {
      spec.folder_input = json.at("input").at("kind").get<std::string>() == "folder";
      spec.input_resize = json.at("input").value("resize", int64_t{0});
      spec.input_crop = json.at("input").value("crop", int64_t{0});
    }
    spec.script_path = json.value("path", std::string());
    if (json.contains("normalize")) {
      spec.input_mean = json.at("normalize").at("mean").get<std::vector<double>>();
      spec.input_std = json.at("normalize").at("std").get<std::vector<double>>();
    }
  } catch (const nlohmann::json::exception& e) {
    throw InputError(source + ": bad model description: " + e.what());
  }
  // A damaged checkpoint can hold any numbers here (fuzz/fuzz_checkpoint found sizes that made a
  // layer's initialisation bounds infinite); sizes must be positive and plausible before building.
  auto check = [&](const char* field, double value, double low, double high) {
    if (!(value >= low && value <= high)) {
      throw InputError(fmt::format("{}: bad model description: {} = {} is outside [{}, {}]", source, field, value, low, high));
    }
  };
  constexpr double kMaxSize = 1 << 20;
  check("in_channels", double(spec.in_channels), 1, 4096);
  check("image_size", double(spec.image_size), 1, 4096);
  check("in_channels * image_size^2", double(spec.in_channels) * double(spec.image_size * spec.image_size), 1, 1 << 24);
  check("num_classes", double(spec.num_classes), 1, kMaxSize);
  for (const auto size : spec.hidden) check("hidden", double(size), 1, kMaxSize);
  for (const auto size : spec.channels) check("channels", double(size), 1, kMaxSize);
  for (const auto size : spec.capsule_dims) check("capsule_dims", double(size), 1, 4096);
  check("dropout_input", spec.dropout_input, 0, 0.99);
  check("dropout_hidden", spec.dropout_hidden, 0, 0.99);
  check("max_norm", spec.max_norm, 0, 1e9);
  check("routing_iterations", double(spec.routing_iterations), 1, 100);
  check("input resize", double(spec.input_resize), 0, 65536);
  check("input crop", double(spec.input_crop), 0, 65536);
  if (!spec.input_mean.empty() || !spec.input_std.empty()) {
    if (static_cast<int64_t>(spec.input_mean.size()) != spec.in_channels || spec.input_std.size() != spec.input_mean.size()) {
      throw InputError(fmt::format("{}: bad model description: normalisation of {} means and {} deviations for {} channels", source,
                                   spec.input_mean.size(), spec.input_std.size(), spec.in_channels));
    }
    for (const auto v : spec.input_mean) check("normalize mean", v, -1e6, 1e6);
    for (const auto v : spec.input_std) check("normalize std", v, 1e-6, 1e6);
  }
  if (!spec.classes.empty() && static_cast<int64_t>(spec.classes.size()) != spec.num_classes) {
    throw InputError(fmt::format("{}: bad model description: {} class names for {} classes", source, spec.classes.size(), spec.num_classes));
  }
  return spec;
}

namespace {

std::shared_ptr<ClassifierImpl> make_architecture(const ModelSpec& spec) {
  if (spec.kind == "mlp") {
    return std::make_shared<MLPImpl>(MLPOptions()
                                         .in_features(spec.in_channels * spec.image_size * spec.image_size)
                                         .hidden(spec.hidden)
                                         .num_classes(spec.num_classes)
                                         .dropout_input(spec.dropout_input)
                                         .dropout_hidden(spec.dropout_hidden)
                                         .max_norm(spec.max_norm));
  }
  if (spec.kind == "convnet") {
    if (spec.channels.size() != 2) throw InputError("model.channels: a convnet needs exactly 2 values");
    if (spec.hidden.size() != 1) throw InputError("model.hidden: a convnet needs exactly 1 value");
    return std::make_shared<ConvNetImpl>(ConvNetOptions()
                                             .in_channels(spec.in_channels)
                                             .image_size(spec.image_size)
                                             .channels1(spec.channels[0])
                                             .channels2(spec.channels[1])
                                             .hidden(spec.hidden[0])
                                             .num_classes(spec.num_classes)
                                             .dropout(spec.dropout_hidden));
  }
  if (spec.kind == "capsnet") {
    if (spec.channels.size() != 2) throw InputError("model.channels: a capsnet needs exactly 2 values [conv channels, primary capsule types]");
    if (spec.capsule_dims.size() != 2) throw InputError("model.capsule_dims: a capsnet needs exactly 2 values [primary dim, class dim]");
    if (spec.image_size < 17) throw InputError(fmt::format("model: a capsnet needs images of at least 17x17, got {}", spec.image_size));
    return std::make_shared<CapsNetImpl>(CapsNetOptions()
                                             .in_channels(spec.in_channels)
                                             .image_size(spec.image_size)
                                             .conv_channels(spec.channels[0])
                                             .primary_types(spec.channels[1])
                                             .primary_dim(spec.capsule_dims[0])
                                             .class_dim(spec.capsule_dims[1])
                                             .num_classes(spec.num_classes)
                                             .iterations(spec.routing_iterations)
                                             .decoder_hidden(spec.hidden));
  }
  if (spec.kind == "capsnet-cnn") {
    return std::make_shared<CapsCnnBaselineImpl>(CapsCnnBaselineOptions()
                                                     .in_channels(spec.in_channels)
                                                     .image_size(spec.image_size)
                                                     .channels(spec.channels)
                                                     .hidden(spec.hidden)
                                                     .num_classes(spec.num_classes)
                                                     .dropout(spec.dropout_hidden));
  }
  if (spec.kind == "torchscript") {
    if (spec.script.empty()) throw InputError("model.path: a torchscript model needs its TorchScript file");
    return std::make_shared<TorchScriptClassifierImpl>(spec.script, spec.script_path.empty() ? "model.path" : spec.script_path,
                                                       spec.in_channels, spec.image_size, spec.num_classes);
  }
  throw InputError("model.kind: unknown model '" + spec.kind + "' (known: mlp, convnet, capsnet, capsnet-cnn, torchscript)");
}

}  // namespace

std::shared_ptr<ClassifierImpl> make_model(const ModelSpec& spec) {
  auto model = make_architecture(spec);
  if (spec.input_mean.empty()) return model;
  return std::make_shared<InputNormalizationImpl>(std::move(model), spec.input_mean, spec.input_std);
}

int64_t count_parameters(const torch::nn::Module& module) {
  int64_t total = 0;
  for (const auto& p : module.parameters()) total += p.numel();
  return total;
}

}  // namespace distillery::nn
