#pragma once
// Datasets as tensor files: what `torch.save` writes in Python, read without Python.
//
//   torch.save({"images": images, "labels": labels, "classes": names}, "train.pt")
//
// images: [N, C, H, W] or [N, H, W], uint8 (0-255) or float; labels: [N] integers, or None for an
// unlabeled transfer set; classes: optional list of names, index = label. distillery writes the
// same format (its image cache), so `torch.load` reads what it writes.
#include <torch/torch.h>

#include <string>
#include <vector>

namespace distillery::data {

struct TensorFile {
  torch::Tensor images;              ///< [N, C, H, W], uint8 or float32
  torch::Tensor labels;              ///< int64 [N]; undefined when the file has none
  std::vector<std::string> classes;  ///< empty when the file names none
  std::vector<std::string> files;    ///< optional: the image file of each row (the image cache)
  std::vector<std::string> skipped;  ///< optional: files left out, "path: why" (the image cache)
};

/// Reads a file written by torch.save (or write_tensor_file). InputError naming the file and the
/// entry for anything else: not such a file, not a dict, a missing or unknown entry, a wrong shape
/// or dtype, non-finite pixels, labels outside the class list.
TensorFile read_tensor_file(const std::string& path);

/// Writes `data` atomically in torch.save's format (a dict of the entries that are set).
void write_tensor_file(const std::string& path, const TensorFile& data);

}  // namespace distillery::data
