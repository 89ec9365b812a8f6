#pragma once
// IDX files (the MNIST format), plain or gzip-compressed.
#include <torch/torch.h>

#include <string>

namespace distillery::data {

/// Reads an IDX file (plain or .gz, detected from its first bytes) into a tensor with the file's
/// dimensions and element type (uint8, int8, int16, int32, float32 or float64).
/// Throws InputError naming the file when the magic number, element type, dimensions or length
/// are wrong, or when the gzip stream is corrupt.
torch::Tensor read_idx(const std::string& path);

/// Parses the bytes of an IDX file (plain or gzip) already in memory; `source` names them in
/// error messages.
torch::Tensor parse_idx(const std::string& bytes, const std::string& source);

/// Writes a uint8 tensor as a plain IDX file (used by tests and data generators).
void write_idx(const std::string& path, const torch::Tensor& values);

}  // namespace distillery::data
