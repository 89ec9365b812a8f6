#include "distillery/train/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>

#include "distillery/error.h"

namespace distillery::train {
namespace {

constexpr const char* kFormat = "distillery-checkpoint-1";

// Archive keys cannot hold '.', which separates submodule names in parameter names.
std::string archive_key(const std::string& name) {
  std::string key = name;
  std::replace(key.begin(), key.end(), '.', '/');
  return key;
}

void fsync_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

torch::serialize::InputArchive open_archive(const std::string& path) {
  if (!std::filesystem::exists(path)) throw InputError(path + ": checkpoint file does not exist");
  torch::serialize::InputArchive archive;
  try {
    archive.load_from(path);
  } catch (const c10::Error& e) {
    throw InputError(path + ": not a readable checkpoint (corrupt or truncated file?)");
  }
  c10::IValue format;
  if (!archive.try_read("format", format) || !format.isString() || format.toStringRef() != kFormat) {
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
  return meta;
}

}  // namespace

void save_checkpoint(const std::string& path, nn::ClassifierImpl& model, const CheckpointMeta& meta,
                     torch::optim::Optimizer* optimizer) {
  torch::serialize::OutputArchive archive;
  archive.write("format", c10::IValue(std::string(kFormat)));
  nlohmann::json json = {{"spec", meta.spec.to_json()}, {"step", meta.step}, {"extra", meta.extra}};
  archive.write("meta", c10::IValue(json.dump()));
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
  const std::string tmp = path + ".tmp";
  try {
    archive.save_to(tmp);
  } catch (const c10::Error& e) {
    std::filesystem::remove(tmp);
    throw std::runtime_error(path + ": cannot write checkpoint (disk full or folder not writable?); the previous checkpoint is kept");
  }
  fsync_file(tmp);
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

}  // namespace distillery::train
