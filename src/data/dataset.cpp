#include "distillery/data/dataset.h"

#include <cstdlib>
#include <filesystem>

#include <ATen/CPUGeneratorImpl.h>

#include "distillery/data/idx.h"
#include "distillery/error.h"

namespace distillery::data {
namespace fs = std::filesystem;

Dataset Dataset::subset(const torch::Tensor& indices) const {
  return {images.index_select(0, indices), labels.index_select(0, indices), classes};
}

Dataset Dataset::head(int64_t n) const {
  if (n <= 0 || n >= size()) return *this;
  return {images.slice(0, 0, n), labels.slice(0, 0, n), classes};
}

torch::Tensor model_input(const torch::Tensor& images) {
  if (images.scalar_type() != torch::kUInt8) return images;
  return images.to(torch::kFloat32).div_(255.0);
}

Dataset load_idx_dataset(const std::string& images_path, const std::string& labels_path) {
  auto raw_images = read_idx(images_path);
  auto raw_labels = read_idx(labels_path);
  if (raw_images.dim() != 3 && raw_images.dim() != 4) {
    throw InputError(fmt::format("{}: expected images with 3 dimensions [N, H, W] (or 4 with channels), got {}",
                                 images_path, raw_images.dim()));
  }
  if (raw_labels.dim() != 1) {
    throw InputError(fmt::format("{}: expected labels with 1 dimension [N], got {}", labels_path, raw_labels.dim()));
  }
  if (raw_images.size(0) != raw_labels.size(0)) {
    throw InputError(fmt::format("{} has {} images but {} has {} labels", images_path, raw_images.size(0),
                                 labels_path, raw_labels.size(0)));
  }
  if (raw_images.size(0) == 0) throw InputError(images_path + ": contains no images");
  auto images = raw_images.to(torch::kFloat32);
  if (raw_images.scalar_type() == torch::kUInt8) images.div_(255.0);
  if (images.dim() == 3) images = images.unsqueeze(1);
  return {images.contiguous(), raw_labels.to(torch::kInt64), {}};
}

namespace {

std::string find_file(const std::vector<fs::path>& folders, const std::string& stem, const std::string& what) {
  for (const auto& folder : folders) {
    for (const char* suffix : {"", ".gz"}) {
      auto candidate = folder / (stem + suffix);
      if (fs::exists(candidate)) return candidate.string();
    }
  }
  std::string looked;
  for (const auto& folder : folders) looked += " " + folder.string();
  throw InputError(fmt::format("{}: cannot find {} (or .gz) in{}; run `make setup` to fetch the data",
                               what, stem, looked));
}

}  // namespace

Dataset load_dataset(const std::string& name, const std::string& split, const std::string& data_dir) {
  if (split != "train" && split != "test") throw InputError("dataset split must be train or test, got '" + split + "'");
  const std::string prefix = split == "train" ? "train" : "t10k";
  std::vector<fs::path> folders;
  if (name == "mnist") {
    folders = {fs::path(data_dir) / "mnist"};
  } else if (name == "fashion-mnist") {
    folders = {fs::path(data_dir) / "fashion-mnist", "/usr/share/datasets/fashion-mnist"};
  } else {
    throw InputError("data.dataset: unknown dataset '" + name + "' (known: mnist, fashion-mnist)");
  }
  const auto labels_path = find_file(folders, prefix + "-labels-idx1-ubyte", name);
  auto dataset = load_idx_dataset(find_file(folders, prefix + "-images-idx3-ubyte", name), labels_path);
  // Both datasets have 10 classes; a label outside them would stop training at the first batch
  // that holds it, deep inside the loss.
  const auto outside = ((dataset.labels < 0) | (dataset.labels > 9)).nonzero();
  if (outside.size(0) > 0) {
    const int64_t index = outside[0][0].item<int64_t>();
    throw InputError(fmt::format("{}: label {} at index {} is outside the classes 0-9 ({} such labels)", labels_path,
                                 dataset.labels[index].item<int64_t>(), index, outside.size(0)));
  }
  return dataset;
}

std::string resolve_data_dir(const std::string& flag) {
  if (!flag.empty()) return flag;
  if (const char* env = std::getenv("DISTILLERY_DATA"); env && *env) return env;
  return "data";
}

namespace {
torch::Tensor label_mask(const Dataset& dataset, const std::vector<int64_t>& classes) {
  auto mask = torch::zeros_like(dataset.labels, torch::kBool);
  for (auto c : classes) mask.logical_or_(dataset.labels == c);
  return mask;
}
}  // namespace

Dataset keep_classes(const Dataset& dataset, const std::vector<int64_t>& classes) {
  return dataset.subset(label_mask(dataset, classes).nonzero().flatten());
}

Dataset omit_classes(const Dataset& dataset, const std::vector<int64_t>& classes) {
  return dataset.subset(label_mask(dataset, classes).logical_not().nonzero().flatten());
}

std::pair<Dataset, Dataset> split_validation(const Dataset& dataset, int64_t validation_size, uint64_t seed) {
  if (validation_size <= 0) return {dataset, Dataset{}};
  if (validation_size >= dataset.size()) {
    throw InputError(fmt::format("data.validation: {} validation examples requested but the dataset has {}",
                                 validation_size, dataset.size()));
  }
  auto generator = at::make_generator<at::CPUGeneratorImpl>(seed);
  auto order = torch::randperm(dataset.size(), generator, torch::kInt64);
  auto train_part = std::get<0>(order.slice(0, validation_size).sort());
  auto validation_part = std::get<0>(order.slice(0, 0, validation_size).sort());
  return {dataset.subset(train_part), dataset.subset(validation_part)};
}

}  // namespace distillery::data
