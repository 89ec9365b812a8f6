#include "distillery/train/evaluate.h"

namespace distillery::train {

int64_t EvalResult::class_errors(int64_t c) const {
  return class_count(c) - confusion[c][c].item<int64_t>();
}

int64_t EvalResult::class_count(int64_t c) const { return confusion[c].sum().item<int64_t>(); }

nlohmann::json EvalResult::to_json() const {
  nlohmann::json per_class = nlohmann::json::array();
  for (int64_t c = 0; c < confusion.size(0); ++c) {
    per_class.push_back({{"class", c}, {"count", class_count(c)}, {"errors", class_errors(c)}});
  }
  auto flat = confusion.contiguous();
  std::vector<int64_t> cells(flat.data_ptr<int64_t>(), flat.data_ptr<int64_t>() + flat.numel());
  return {{"count", count}, {"errors", errors}, {"accuracy", accuracy}, {"per_class", per_class},
          {"confusion", cells}};
}

torch::Tensor predict_logits(const Forward& forward, const torch::Tensor& images, int64_t batch_size) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> parts;
  for (int64_t start = 0; start < images.size(0); start += batch_size) {
    parts.push_back(forward(data::model_input(images.slice(0, start, std::min(start + batch_size, images.size(0))))));
  }
  return torch::cat(parts);
}

torch::Tensor predict_logits(nn::ClassifierImpl& model, const torch::Tensor& images, int64_t batch_size) {
  const bool was_training = model.is_training();
  model.eval();
  auto logits = predict_logits([&](const torch::Tensor& batch) { return model.forward(batch); }, images, batch_size);
  model.train(was_training);
  return logits;
}

EvalResult score_logits(const torch::Tensor& logits, const torch::Tensor& labels, int64_t num_classes) {
  EvalResult result;
  auto predicted = logits.argmax(/*dim=*/1);
  result.count = labels.size(0);
  result.errors = (predicted != labels).sum().item<int64_t>();
  result.accuracy = result.count ? 1.0 - double(result.errors) / double(result.count) : 0.0;
  result.confusion = torch::bincount(labels * num_classes + predicted, /*weights=*/{}, num_classes * num_classes)
                         .view({num_classes, num_classes})
                         .to(torch::kInt64);
  return result;
}

EvalResult evaluate(nn::ClassifierImpl& model, const data::Dataset& dataset, int64_t batch_size) {
  auto result = score_logits(predict_logits(model, dataset.images, batch_size), dataset.labels, model.num_classes());
  result.classes = dataset.classes;
  return result;
}

}  // namespace distillery::train
