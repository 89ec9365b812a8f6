#pragma once
// In-memory image classification datasets: loading, class filtering, validation splits.
#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace distillery::data {

/// Images [N, C, H, W] and labels [N] int64, all in memory. Images are float32 in [0, 1], or uint8
/// (0-255) for image folders, a quarter of the memory: `model_input` makes a batch of them float.
/// Unlabeled images (a transfer set) carry the label -1, which no loss accepts.
struct Dataset {
  torch::Tensor images;
  torch::Tensor labels;
  std::vector<std::string> classes = {};  ///< class names, index = label; empty: the digits 0-9

  int64_t size() const { return labels.defined() ? labels.size(0) : 0; }
  /// The examples at `indices` (int64 [K]), in that order.
  Dataset subset(const torch::Tensor& indices) const;
  /// The first n examples (all if n <= 0 or n >= size()).
  Dataset head(int64_t n) const;
};

/// A batch as a model takes it: uint8 images become float32 in [0, 1]; float images pass unchanged.
torch::Tensor model_input(const torch::Tensor& images);

/// Loads an image IDX file and a label IDX file and checks that their counts match.
Dataset load_idx_dataset(const std::string& images_path, const std::string& labels_path);

/// Loads a named dataset split ("train" or "test"). `name` is "mnist" (files under
/// data_dir/mnist, plain or .gz) or "fashion-mnist" (data_dir/fashion-mnist, else
/// /usr/share/datasets/fashion-mnist from Debian's dataset-fashion-mnist).
Dataset load_dataset(const std::string& name, const std::string& split, const std::string& data_dir);

/// The data cache folder: `flag` if given, else $DISTILLERY_DATA, else "data".
std::string resolve_data_dir(const std::string& flag = "");

/// Examples whose label is in `classes`.
Dataset keep_classes(const Dataset& dataset, const std::vector<int64_t>& classes);
/// Examples whose label is not in `classes`.
Dataset omit_classes(const Dataset& dataset, const std::vector<int64_t>& classes);

/// A seeded random split: {train, validation} with `validation_size` examples in the second.
std::pair<Dataset, Dataset> split_validation(const Dataset& dataset, int64_t validation_size,
                                             uint64_t seed);

}  // namespace distillery::data
