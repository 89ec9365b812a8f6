#include "distillery/train/model_cost.h"

#include <torch/csrc/autograd/profiler_legacy.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <set>
#include <vector>

#include "distillery/nn/model_spec.h"

namespace distillery::train {

namespace {

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

// Seconds per call of `run`, median of `repeats` after two warm-up calls.
double seconds_per_call(const std::function<void()>& run, int repeats) {
  run();
  run();
  std::vector<double> seconds;
  for (int i = 0; i < repeats; ++i) {
    const auto start = std::chrono::steady_clock::now();
    run();
    seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  return median(seconds);
}

}  // namespace

double multiply_adds_per_image(const Forward& forward, torch::IntArrayRef image_shape) {
  torch::NoGradGuard no_grad;
  std::vector<int64_t> shape(image_shape.begin(), image_shape.end());
  shape.insert(shape.begin(), 1);
  const auto one_image = torch::rand(shape);
  namespace profiler = torch::autograd::profiler;
  profiler::enableProfilerLegacy(profiler::ProfilerConfig(profiler::ProfilerState::CPU, /*report_input_shapes=*/true,
                                                          /*profile_memory=*/false, /*with_stack=*/false, /*with_flops=*/true));
  try {
    forward(one_image);
  } catch (...) {
    profiler::disableProfilerLegacy();
    throw;
  }
  const auto events = profiler::disableProfilerLegacy();
  static const std::set<std::string> products = {"aten::conv2d", "aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm"};
  double flops = 0;
  for (const auto& thread : events) {
    for (auto event : thread) {
      if (products.count(event.name())) flops += static_cast<double>(event.flops());
    }
  }
  return flops / 2;  // the profiler counts a multiply-add as two operations
}

nlohmann::json ModelCost::to_json() const {
  return {{"parameters", parameters},  {"multiply_adds", multiply_adds},         {"file_bytes", file_bytes},
          {"latency_ms", latency_ms}, {"images_per_second", images_per_second}};
}

ModelCost measure_model_cost(const Forward& forward, torch::IntArrayRef image_shape,
                             int64_t parameters, int64_t file_bytes, int repeats) {
  torch::NoGradGuard no_grad;
  std::vector<int64_t> one(image_shape.begin(), image_shape.end()), batch = one;
  one.insert(one.begin(), 1);
  batch.insert(batch.begin(), 64);
  const auto single = torch::rand(one), many = torch::rand(batch);
  ModelCost cost;
  cost.parameters = parameters;
  cost.file_bytes = file_bytes;
  cost.multiply_adds = multiply_adds_per_image(forward, image_shape);
  cost.latency_ms = 1000 * seconds_per_call([&] { forward(single); }, repeats);
  cost.images_per_second = 64 / seconds_per_call([&] { forward(many); }, std::max(3, repeats / 4));
  return cost;
}

ModelCost measure_classifier_cost(nn::ClassifierImpl& model, torch::IntArrayRef image_shape, const std::string& file) {
  const bool was_training = model.is_training();
  model.eval();
  auto cost = measure_model_cost([&](const torch::Tensor& images) { return model.forward(images); }, image_shape,
                                 nn::count_parameters(model), file_size_or_zero(file));
  model.train(was_training);
  return cost;
}

int64_t file_size_or_zero(const std::string& path) {
  std::error_code error;
  const auto size = std::filesystem::file_size(path, error);
  return error ? 0 : static_cast<int64_t>(size);
}

}  // namespace distillery::train
