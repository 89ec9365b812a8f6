#include "distillery/data/tensor_file.h"

#include <caffe2/serialize/inline_container.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <torch/csrc/jit/serialization/export.h>
#include <torch/csrc/jit/serialization/import_read.h>
#include <torch/csrc/jit/serialization/pickler.h>

#include <filesystem>
#include <set>

#include "distillery/error.h"
#include "distillery/report/metrics.h"

namespace distillery::data {

namespace {

c10::impl::GenericDict read_dict(const std::string& path) {
  if (!std::filesystem::is_regular_file(path)) throw InputError(path + ": no such file");
  c10::IValue value;
  try {
    caffe2::serialize::PyTorchStreamReader reader(path);
    value = torch::jit::readArchiveAndTensors("data", "", "data/", c10::nullopt, c10::nullopt, at::kCPU, reader);
  } catch (const c10::Error& e) {
    const std::string what = e.what_without_backtrace();
    // LibTorch 1.13's unpickler lacks SETITEM and APPEND, the opcodes Python uses for a dict or a
    // list of one entry, and every opcode of arbitrary Python objects.
    if (what.find("Unknown opcode for unpickling") != std::string::npos) {
      throw InputError(path + ": LibTorch 1.13 cannot read this pickle (a dict of one entry is the usual cause): save a dict "
                              "of two or more, e.g. torch.save({\"images\": images, \"labels\": None}, path)");
    }
    throw InputError(fmt::format("{}: not a file written by torch.save ({})", path, what.substr(0, what.find('\n'))));
  }
  if (!value.isGenericDict()) {
    throw InputError(fmt::format("{}: holds a {}, expected a dict {{\"images\": ..., \"labels\": ..., \"classes\": ...}}", path,
                                 value.tagKind()));
  }
  return value.toGenericDict();
}

std::vector<std::string> string_list(const c10::IValue& value, const std::string& path, const std::string& key) {
  if (!value.isList()) throw InputError(fmt::format("{}: '{}' must be a list of strings, got a {}", path, key, value.tagKind()));
  std::vector<std::string> out;
  for (const auto& item : value.toListRef()) {
    if (!item.isString()) throw InputError(fmt::format("{}: '{}' must be a list of strings, holds a {}", path, key, item.tagKind()));
    out.push_back(item.toStringRef());
  }
  return out;
}

torch::Tensor images_entry(const c10::IValue& value, const std::string& path) {
  if (!value.isTensor()) throw InputError(fmt::format("{}: 'images' must be a tensor, got a {}", path, value.tagKind()));
  auto images = value.toTensor();
  if (images.dim() == 3) images = images.unsqueeze(1);
  if (images.dim() != 4) {
    throw InputError(fmt::format("{}: 'images' must be [N, C, H, W] or [N, H, W], got [{}]", path, fmt::join(images.sizes(), ", ")));
  }
  if (images.size(0) == 0 || images.numel() == 0) throw InputError(path + ": 'images' holds no images");
  if (images.scalar_type() == torch::kUInt8) return images.contiguous();
  if (!images.is_floating_point()) {
    throw InputError(fmt::format("{}: 'images' must be uint8 (0-255) or float, got {}", path, c10::toString(images.scalar_type())));
  }
  images = images.to(torch::kFloat32).contiguous();
  if (!torch::isfinite(images).all().item<bool>()) throw InputError(path + ": 'images' holds NaN or infinite values");
  return images;
}

}  // namespace

TensorFile read_tensor_file(const std::string& path) {
  const auto dict = read_dict(path);
  TensorFile data;
  static const std::set<std::string> known = {"images", "labels", "classes", "files", "skipped"};
  for (const auto& entry : dict) {
    if (!entry.key().isString() || !known.count(entry.key().toStringRef())) {
      throw InputError(fmt::format("{}: unknown entry {} (known: images, labels, classes)", path,
                                   entry.key().isString() ? "'" + entry.key().toStringRef() + "'" : entry.key().tagKind()));
    }
  }
  if (!dict.contains("images")) throw InputError(path + ": no 'images' entry (a tensor [N, C, H, W])");
  data.images = images_entry(dict.at("images"), path);
  const int64_t count = data.images.size(0);
  if (dict.contains("classes") && !dict.at("classes").isNone()) data.classes = string_list(dict.at("classes"), path, "classes");
  if (dict.contains("files")) data.files = string_list(dict.at("files"), path, "files");
  if (dict.contains("skipped")) data.skipped = string_list(dict.at("skipped"), path, "skipped");
  if (dict.contains("labels") && !dict.at("labels").isNone()) {
    const auto& value = dict.at("labels");
    if (!value.isTensor()) throw InputError(fmt::format("{}: 'labels' must be a tensor or None, got a {}", path, value.tagKind()));
    const auto& labels = value.toTensor();
    if (labels.is_floating_point() || labels.is_complex() || labels.scalar_type() == torch::kBool) {
      throw InputError(fmt::format("{}: 'labels' must hold integers, got {}", path, c10::toString(labels.scalar_type())));
    }
    if (labels.dim() != 1 || labels.size(0) != count) {
      throw InputError(fmt::format("{}: 'labels' must be [{}] (one per image), got [{}]", path, count, fmt::join(labels.sizes(), ", ")));
    }
    data.labels = labels.to(torch::kInt64).contiguous();
    const int64_t limit = data.classes.empty() ? std::numeric_limits<int64_t>::max() : static_cast<int64_t>(data.classes.size());
    const auto outside = ((data.labels < 0) | (data.labels >= limit)).nonzero();
    if (outside.size(0) > 0) {
      const int64_t index = outside[0][0].item<int64_t>();
      throw InputError(fmt::format("{}: label {} at index {} is outside the classes 0-{}", path, data.labels[index].item<int64_t>(), index,
                                   data.classes.empty() ? std::string("...") : std::to_string(limit - 1)));
    }
  }
  if (!data.files.empty() && static_cast<int64_t>(data.files.size()) != count) {
    throw InputError(fmt::format("{}: 'files' names {} files for {} images", path, data.files.size(), count));
  }
  return data;
}

void write_tensor_file(const std::string& path, const TensorFile& data) {
  c10::impl::GenericDict dict(c10::StringType::get(), c10::AnyType::get());
  dict.insert("images", data.images);
  dict.insert("labels", data.labels.defined() ? c10::IValue(data.labels) : c10::IValue());
  if (!data.classes.empty()) dict.insert("classes", c10::List<std::string>(data.classes));
  if (!data.files.empty()) dict.insert("files", c10::List<std::string>(data.files));
  if (!data.skipped.empty()) dict.insert("skipped", c10::List<std::string>(data.skipped));
  // torch::pickle_save's steps, streamed to the file: the tensors' bytes are never copied in memory.
  report::write_file_atomic(path, [&](std::ostream& out) {
    std::vector<char> pickle;
    torch::jit::Pickler pickler([&](const char* bytes, size_t size) { pickle.insert(pickle.end(), bytes, bytes + size); });
    pickler.protocol();
    pickler.pushIValue(c10::IValue(dict));
    pickler.stop();
    caffe2::serialize::PyTorchStreamWriter writer([&](const void* bytes, size_t size) {
      out.write(static_cast<const char*>(bytes), static_cast<std::streamsize>(size));
      return out ? size : size_t{0};
    });
    torch::jit::writeArchiveAndTensors("data", pickle.data(), pickle.size(), pickler.tensorData(), writer);
    writer.writeEndOfFile();
  });
}

}  // namespace distillery::data
