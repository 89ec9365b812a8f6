#include "distillery/train/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>
#include <sstream>

#include "distillery/error.h"
#include "distillery/fault_point.h"
#include "distillery/train/zip_checksums.h"

namespace distillery::train {
namespace {

constexpr const char* kFormat = "distillery-checkpoint-1";

// Archive keys cannot hold '.', which separates submodule names in parameter names.
std::string archive_key(const std::string& name) {
  std::string key = name;
  std::replace(key.begin(), key.end(), '.', '/');
  return key;
}

// Writes `bytes` to `path` and flushes them to the disk; on any failure removes the partial file and
// throws naming the path and the system's reason (ENOSPC: disk full).
void write_durably(const std::string& path, const std::string& bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) throw std::runtime_error(path + ": cannot create: " + std::strerror(errno));
  size_t written = 0;
  int error = 0;
  while (written < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + written, bytes.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) { error = n < 0 ? errno : ENOSPC; break; }
    written += static_cast<size_t>(n);
  }
  if (error == 0 && ::fsync(fd) != 0) error = errno;
  if (::close(fd) != 0 && error == 0) error = errno;
  if (error != 0) {
    ::unlink(path.c_str());
    throw std::runtime_error(path + ": " + std::strerror(error));
  }
}

torch::serialize::InputArchive open_archive(const std::string& path) {
  if (!std::filesystem::exists(path)) throw InputError(path + ": checkpoint file does not exist");
  torch::serialize::InputArchive archive;
  const std::string bytes = read_verified_archive(path);
  c10::IValue format;
  try {
    archive.load_from(bytes.data(), bytes.size());
    archive.try_read("format", format);
  } catch (const std::exception& e) {
    // LibTorch's reader throws c10::Error for a damaged zip but std::runtime_error for damaged
    // TorchScript inside it (found by fuzz/fuzz_checkpoint): both are a bad file.
    throw InputError(path + ": not a readable checkpoint (corrupt or truncated file?)");
  }
  if (!format.isString() || format.toStringRef() != kFormat) {
    throw InputError(path + ": not a distillery checkpoint (missing or unknown 'format' entry)");
  }
  return archive;
}

CheckpointMeta read_meta(torch::serialize::InputArchive& archive, const std::string& path) {
  c10::IValue text;
  if (!archive.try_read("meta", text) || !text.isString()) throw InputError(path + ": checkpoint has no 'meta' entry");
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(text.toStringRef());
  } catch (const nlohmann::json::exception& e) {
    throw InputError(path + ": checkpoint metadata is not valid JSON: " + e.what());
  }
  CheckpointMeta meta;
  meta.spec = nn::ModelSpec::from_json(json.value("spec", nlohmann::json::object()), path);
  meta.step = json.value("step", int64_t{0});
  meta.extra = json.value("extra", nlohmann::json::object());
  torch::Tensor script;
  if (archive.try_read("script", script, /*is_buffer=*/true)) {
    if (script.scalar_type() != torch::kUInt8 || script.dim() != 1) throw InputError(path + ": checkpoint's 'script' entry is not bytes");
    script = script.contiguous();
    meta.spec.script.assign(static_cast<const char*>(script.data_ptr()), static_cast<size_t>(script.numel()));
  }
  return meta;
}

}  // namespace

void save_checkpoint(const std::string& path, nn::ClassifierImpl& model, const CheckpointMeta& meta,
                     torch::optim::Optimizer* optimizer) {
  torch::serialize::OutputArchive archive;
  archive.write("format", c10::IValue(std::string(kFormat)));
  nlohmann::json json = {{"spec", meta.spec.to_json()}, {"step", meta.step}, {"extra", meta.extra}};
  archive.write("meta", c10::IValue(json.dump()));
  if (!meta.spec.script.empty()) {
    archive.write("script", torch::from_blob(const_cast<char*>(meta.spec.script.data()), {static_cast<int64_t>(meta.spec.script.size())},
                                             torch::kUInt8), /*is_buffer=*/true);
  }
  torch::serialize::OutputArchive weights;
  for (const auto& p : model.named_parameters()) weights.write(archive_key(p.key()), p.value());
  for (const auto& b : model.named_buffers()) weights.write(archive_key(b.key()), b.value(), /*is_buffer=*/true);
  archive.write("model", weights);
  if (optimizer) {
    torch::serialize::OutputArchive optimizer_archive;
    optimizer->save(optimizer_archive);
    archive.write("optimizer", optimizer_archive);
    archive.write("rng", at::detail::getDefaultCPUGenerator().get_state(), /*is_buffer=*/true);
  }
  const auto parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent);
  // Serialised in memory first: LibTorch's file writer aborts the process when the disk fills up
  // (its destructor throws), so the bytes go to the disk through a write we can check.
  std::ostringstream buffer;
  archive.save_to(buffer);
  const std::string tmp = path + ".tmp";
  try {
    write_durably(tmp, buffer.str());
  } catch (const std::exception& e) {
    throw std::runtime_error(fmt::format("cannot write checkpoint {} ({}); the previous checkpoint is kept", path, e.what()));
  }
  fault_point("checkpoint_renaming", meta.step);
  std::error_code error;
  std::filesystem::rename(tmp, path, error);
  if (error) {
    std::filesystem::remove(tmp);
    throw std::runtime_error(path + ": cannot move the new checkpoint into place: " + error.message());
  }
}

CheckpointMeta read_checkpoint_meta(const std::string& path) {
  auto archive = open_archive(path);
  return read_meta(archive, path);
}

CheckpointMeta load_checkpoint_into(const std::string& path, nn::ClassifierImpl& model,
                                    torch::optim::Optimizer* optimizer) {
  auto archive = open_archive(path);
  CheckpointMeta meta = read_meta(archive, path);
  torch::serialize::InputArchive weights;
  if (!archive.try_read("model", weights)) throw InputError(path + ": checkpoint has no 'model' entry");
  torch::NoGradGuard no_grad;
  auto load_tensor = [&](const std::string& name, torch::Tensor& target, bool is_buffer) {
    torch::Tensor stored;
    if (!weights.try_read(archive_key(name), stored, is_buffer)) {
      throw InputError(fmt::format("{}: checkpoint has no tensor '{}': its architecture ({}) differs from the model's",
                                   path, name, meta.spec.to_json().dump()));
    }
    if (stored.sizes() != target.sizes()) {
      throw InputError(fmt::format("{}: tensor '{}' has shape [{}] in the checkpoint but [{}] in the model", path, name,
                                   fmt::join(stored.sizes(), ", "), fmt::join(target.sizes(), ", ")));
    }
    target.copy_(stored);
  };
  // A tensor of the checkpoint that the model lacks (a deeper checkpoint) is an architecture mismatch too.
  std::set<std::string> model_keys;
  for (const auto& p : model.named_parameters()) model_keys.insert(archive_key(p.key()));
  for (const auto& b : model.named_buffers()) model_keys.insert(archive_key(b.key()));
  for (auto key : weights.keys()) {
    if (key == "training" || model_keys.count(key)) continue;
    std::replace(key.begin(), key.end(), '/', '.');
    throw InputError(fmt::format("{}: checkpoint tensor '{}' has no counterpart in the model: its architecture ({}) differs from the model's",
                                 path, key, meta.spec.to_json().dump()));
  }
  for (auto& p : model.named_parameters()) load_tensor(p.key(), p.value(), false);
  for (auto& b : model.named_buffers()) load_tensor(b.key(), b.value(), true);
  if (optimizer) {
    torch::serialize::InputArchive optimizer_archive;
    if (!archive.try_read("optimizer", optimizer_archive)) throw InputError(path + ": checkpoint has no optimizer state to resume from");
    optimizer->load(optimizer_archive);
    torch::Tensor rng;
    if (archive.try_read("rng", rng, /*is_buffer=*/true)) {
      at::Generator generator = at::detail::getDefaultCPUGenerator();  // shares the global state
      generator.set_state(rng);
    }
  }
  return meta;
}

LoadedModel load_model(const std::string& path) {
  CheckpointMeta meta = read_checkpoint_meta(path);
  auto model = nn::make_model(meta.spec);
  load_checkpoint_into(path, *model, nullptr);
  model->eval();
  return {model, meta};
}

std::string weights_digest(const torch::nn::Module& module) {
  uint64_t hash = 1469598103934665603ULL;
  auto mix = [&](const void* data, size_t size) {
    const auto* bytes = static_cast<const unsigned char*>(data);
    for (size_t i = 0; i < size; ++i) hash = (hash ^ bytes[i]) * 1099511628211ULL;
  };
  auto add = [&](const std::string& name, const torch::Tensor& tensor) {
    mix(name.data(), name.size());
    const auto sizes = tensor.sizes();
    mix(sizes.data(), sizes.size() * sizeof(int64_t));
    const auto dense = tensor.detach().contiguous().cpu();
    mix(dense.data_ptr(), dense.numel() * dense.element_size());
  };
  for (const auto& p : module.named_parameters()) add(p.key(), p.value());
  for (const auto& b : module.named_buffers()) add(b.key(), b.value());
  return fmt::format("{:016x}", hash);
}

int64_t count_nonfinite(const torch::nn::Module& module) {
  int64_t count = 0;
  for (const auto& p : module.named_parameters()) count += (~torch::isfinite(p.value().detach())).sum().item<int64_t>();
  for (const auto& b : module.named_buffers()) {
    if (b.value().is_floating_point()) count += (~torch::isfinite(b.value())).sum().item<int64_t>();
  }
  return count;
}

}  // namespace distillery::train
