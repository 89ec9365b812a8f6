#include "distillery/train/misclassified.h"

#include "distillery/report/image.h"
#include "distillery/train/evaluate.h"

namespace distillery::train {

nlohmann::json save_misclassified(nn::ClassifierImpl& model, const data::Dataset& test, const std::string& path,
                                  int64_t limit) {
  const auto predicted = predict_logits(model, test.images).argmax(/*dim=*/1);
  const auto wrong = predicted.ne(test.labels).nonzero().flatten().slice(/*dim=*/0, 0, limit);
  nlohmann::json examples = nlohmann::json::array();
  if (wrong.numel() == 0) return examples;
  for (int64_t i = 0; i < wrong.numel(); ++i) {
    const int64_t index = wrong[i].item<int64_t>();
    examples.push_back({{"index", index}, {"label", test.labels[index].item<int64_t>()},
                        {"predicted", predicted[index].item<int64_t>()}});
  }
  const auto images = data::model_input(test.images.index_select(/*dim=*/0, wrong)).clamp(0, 1);
  const auto grid = report::image_grid(images, /*columns=*/10);
  report::write_png(path, grid.size(0) == 1 ? grid[0] : grid);
  return examples;
}

}  // namespace distillery::train
