#include "distillery/train/run.h"

#include <spdlog/spdlog.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>

#include <unistd.h>

#include "distillery/data/image_folder.h"
#include "distillery/data/tensor_file.h"
#include "distillery/error.h"
#include "distillery/nn/capsules.h"
#include "distillery/nn/input_normalization.h"
#include "distillery/nn/torchscript_export.h"
#include "distillery/report/metrics.h"
#include "distillery/report/run_report.h"
#include "distillery/system.h"
#include "distillery/train/misclassified.h"
#include "distillery/train/model_cost.h"

namespace distillery::train {

namespace {

data::Dataset as_dataset(data::ImageFolder folder, std::vector<std::string>& skipped) {
  skipped.insert(skipped.end(), folder.skipped.begin(), folder.skipped.end());
  if (!folder.labels.defined()) folder.labels = torch::full({folder.images.size(0)}, -1, torch::kInt64);
  return {folder.images, folder.labels, folder.classes};
}

// data.dataset: folder. Splits from train/ val/ test/ when data.path has them; the test images
// from data.test_path when given. An unlabeled training folder takes its classes from the test folder.
void load_image_folders(const Config& config, RunData& run_data, data::Dataset& full_train) {
  namespace fs = std::filesystem;
  const std::string root = config.get_string("data.path");
  if (root.empty()) throw InputError("data.dataset is folder but data.path is empty: set it to the folder of images");
  if (!fs::is_directory(root)) throw InputError("data.path: " + root + ": no such folder");
  const int64_t channels = config.get_int("data.channels");
  if (channels == 2) throw InputError("data.channels: 2 is not a choice (0: as the files are, 1: gray, 3: RGB)");
  const data::ImagePreprocessing preprocessing{channels, config.get_int("data.resize"), config.get_int("data.crop")};
  const auto on_bad = config.get_string("data.on_bad_image") == "error" ? data::OnBadImage::Error : data::OnBadImage::Skip;
  const std::string cache = config.get_bool("data.cache") ? data::resolve_data_dir(config.get_string("data.dir")) + "/image-cache" : "";
  const int64_t max_memory = config.get_int("data.max_memory") > 0
                                 ? config.get_int("data.max_memory") << 20
                                 : static_cast<int64_t>(sysconf(_SC_PHYS_PAGES)) * static_cast<int64_t>(sysconf(_SC_PAGE_SIZE)) / 2;
  const bool split_layout = fs::is_directory(fs::path(root) / "train");
  const std::string train_root = split_layout ? (fs::path(root) / "train").string() : root;
  std::string test_root = config.get_string("data.test_path");
  if (test_root.empty()) {
    test_root = (fs::path(root) / "test").string();
    if (!split_layout || !fs::is_directory(test_root)) {
      throw InputError(fmt::format("data.path: {} has no train/ and test/ folders: set data.test_path to a labeled folder of test images", root));
    }
  }
  const bool labeled = config.get_string("data.labels") != "none";
  if (labeled) {
    full_train = as_dataset(data::load_image_folder(train_root, preprocessing, true, on_bad, {}, cache, max_memory), run_data.skipped_images);
    if (full_train.classes.empty()) {
      throw InputError(fmt::format("{}: holds images but no class folders; for an unlabeled transfer set set data.labels: none", train_root));
    }
    run_data.test = as_dataset(data::load_image_folder(test_root, preprocessing, true, on_bad, full_train.classes, cache, max_memory), run_data.skipped_images);
  } else {
    run_data.test = as_dataset(data::load_image_folder(test_root, preprocessing, true, on_bad, {}, cache, max_memory), run_data.skipped_images);
    full_train = as_dataset(data::load_image_folder(train_root, preprocessing, false, on_bad, {}, cache, max_memory), run_data.skipped_images);
    full_train.classes = run_data.test.classes;
  }
  if (run_data.test.classes.empty()) throw InputError(test_root + ": the test folder needs class folders (ROOT/<class>/<image>)");
  if (full_train.images.sizes().slice(1) != run_data.test.images.sizes().slice(1)) {
    throw InputError(fmt::format("{}: test images are [{}] but training images are [{}]: set data.resize / data.crop / data.channels",
                                 test_root, fmt::join(run_data.test.images.sizes().slice(1), ", "),
                                 fmt::join(full_train.images.sizes().slice(1), ", ")));
  }
  const std::string validation_root = (fs::path(root) / "val").string();
  if (split_layout && fs::is_directory(validation_root)) {
    run_data.validation = as_dataset(data::load_image_folder(validation_root, preprocessing, true, on_bad, full_train.classes, cache, max_memory),
                                     run_data.skipped_images);
  }
}

// data.dataset: tensors. The training images from data.path, the labeled test images from
// data.test_path. Without class names, the classes are 0..K-1, K one more than the largest label.
void load_tensor_files(const Config& config, RunData& run_data, data::Dataset& full_train) {
  const std::string train_path = config.get_string("data.path"), test_path = config.get_string("data.test_path");
  if (train_path.empty()) throw InputError("data.dataset is tensors but data.path is empty: set it to a file written by torch.save");
  if (test_path.empty()) throw InputError("data.dataset is tensors but data.test_path is empty: set it to a tensor file of labeled test images");
  auto train = data::read_tensor_file(train_path);
  auto test = data::read_tensor_file(test_path);
  if (!test.labels.defined()) throw InputError(test_path + ": the test images need labels");
  if (config.get_string("data.labels") == "none") {
    train.labels = torch::Tensor();  // never read
  } else if (!train.labels.defined()) {
    throw InputError(train_path + ": holds no labels; for an unlabeled transfer set set data.labels: none");
  }
  if (!train.classes.empty() && !test.classes.empty() && train.classes != test.classes) {
    throw InputError(fmt::format("{}: classes [{}] differ from {}'s [{}]", test_path, fmt::join(test.classes, ", "), train_path,
                                 fmt::join(train.classes, ", ")));
  }
  auto classes = !train.classes.empty() ? train.classes : test.classes;
  if (classes.empty()) {
    int64_t largest = test.labels.max().item<int64_t>();
    if (train.labels.defined()) largest = std::max(largest, train.labels.max().item<int64_t>());
    for (int64_t c = 0; c <= largest; ++c) classes.push_back(std::to_string(c));
  }
  for (const auto* part : {&train, &test}) {
    if (!part->labels.defined()) continue;
    const int64_t largest = part->labels.max().item<int64_t>();
    if (largest >= static_cast<int64_t>(classes.size())) {
      throw InputError(fmt::format("{}: label {} is outside the {} classes", part == &train ? train_path : test_path, largest, classes.size()));
    }
  }
  if (train.images.sizes().slice(1) != test.images.sizes().slice(1)) {
    throw InputError(fmt::format("{}: test images are [{}] but training images are [{}]", test_path, fmt::join(test.images.sizes().slice(1), ", "),
                                 fmt::join(train.images.sizes().slice(1), ", ")));
  }
  auto labels_or_none = [](const data::TensorFile& part) {
    return part.labels.defined() ? part.labels : torch::full({part.images.size(0)}, -1, torch::kInt64);
  };
  full_train = {train.images, labels_or_none(train), classes};
  run_data.test = {test.images, test.labels, classes};
}

}  // namespace

RunData load_run_data(const Config& config) {
  const std::string dataset = config.get_string("data.dataset");
  RunData run_data;
  data::Dataset full_train;
  if (dataset == "folder") {
    load_image_folders(config, run_data, full_train);  // a val/ folder fills run_data.validation
  } else if (dataset == "tensors") {
    load_tensor_files(config, run_data, full_train);
  } else {
    const std::string data_dir = data::resolve_data_dir(config.get_string("data.dir"));
    full_train = data::load_dataset(dataset, "train", data_dir);
    run_data.test = data::load_dataset(dataset, "test", data_dir);
  }
  full_train = full_train.head(config.get_int("data.train_limit"));
  run_data.test = run_data.test.head(config.get_int("data.test_limit"));
  if (run_data.validation.size() > 0) {
    run_data.train = full_train;
  } else {
    std::tie(run_data.train, run_data.validation) =
        data::split_validation(full_train, config.get_int("data.validation"), mix_seed(config.get_int("train.seed"), 7));
  }
  const auto keep = config.get_int_list("data.keep_classes");
  const auto omit = config.get_int_list("data.omit_classes");
  if (!keep.empty()) run_data.train = data::keep_classes(run_data.train, keep);
  if (!omit.empty()) run_data.train = data::omit_classes(run_data.train, omit);
  if (run_data.train.size() == 0) {
    throw InputError("data.keep_classes / data.omit_classes leave no training images");
  }
  return run_data;
}

void require_labels(const Config& config, const std::string& command) {
  if (config.get_string("data.labels") == "none") {
    throw InputError(fmt::format("data.labels is none, but {} needs the labels of its training images "
                                 "(an unlabeled transfer set is for distillery distill with distill.hard_weight 0)",
                                 command));
  }
}

void add_data_summary(nlohmann::json& result, const RunData& run_data) {
  if (!run_data.test.classes.empty()) result["classes"] = run_data.test.classes;
  if (run_data.skipped_images.empty()) return;
  const size_t shown = std::min<size_t>(run_data.skipped_images.size(), 100);
  result["skipped_images"] = {{"count", run_data.skipped_images.size()},
                              {"files", std::vector<std::string>(run_data.skipped_images.begin(), run_data.skipped_images.begin() + shown)}};
}

nlohmann::json describe_run_data(const RunData& run_data) {
  nlohmann::json splits = nlohmann::json::object();
  for (const auto& [name, part] : {std::pair<const char*, const data::Dataset*>{"train", &run_data.train},
                                   {"validation", &run_data.validation}, {"test", &run_data.test}}) {
    if (part->size() == 0) continue;
    const auto labeled = part->labels.ge(0);
    const auto classes = part->classes.empty() ? int64_t{10} : static_cast<int64_t>(part->classes.size());
    const auto counts = torch::bincount(part->labels.masked_select(labeled), /*weights=*/{}, classes);
    nlohmann::json per_class = nlohmann::json::object();
    for (int64_t c = 0; c < counts.size(0); ++c) {
      per_class[c < static_cast<int64_t>(part->classes.size()) ? part->classes[c] : std::to_string(c)] = counts[c].item<int64_t>();
    }
    splits[name] = {{"images", part->size()},
                    {"shape", std::vector<int64_t>(part->images.sizes().begin() + 1, part->images.sizes().end())},
                    {"dtype", part->images.scalar_type() == torch::kUInt8 ? "uint8" : "float32"},
                    {"mib", static_cast<double>(part->images.nbytes()) / (1 << 20)},
                    {"unlabeled", part->size() - labeled.sum().item<int64_t>()},
                    {"per_class", per_class}};
  }
  nlohmann::json summary = {{"splits", splits}};
  add_data_summary(summary, run_data);
  return summary;
}

std::vector<std::string> write_run_data(const RunData& run_data, const std::string& dir) {
  std::vector<std::string> written;
  for (const auto& [name, part] : {std::pair<const char*, const data::Dataset*>{"train", &run_data.train},
                                   {"validation", &run_data.validation}, {"test", &run_data.test}}) {
    if (part->size() == 0) continue;
    const auto labels = part->labels.ge(0).all().item<bool>() ? part->labels : torch::Tensor();
    const std::string path = (std::filesystem::path(dir) / (std::string(name) + ".pt")).string();
    data::write_tensor_file(path, {part->images, labels, part->classes, {}, {}});
    written.push_back(path);
  }
  return written;
}

namespace {

// data.normalize: the statistics measured on `like` (the training split) or given in the config.
void set_input_normalization(const Config& config, const data::Dataset& like, nn::ModelSpec& spec) {
  const std::string mode = config.get_string("data.normalize");
  const bool keys_given = !config.get_double_list("data.mean").empty() || !config.get_double_list("data.std").empty();
  if (mode != "given" && keys_given) {
    throw InputError(fmt::format("data.mean / data.std are set but data.normalize is {}: set data.normalize: given to use them", mode));
  }
  if (mode == "none") return;
  if (spec.kind == "capsnet") {
    throw InputError("data.normalize: a capsnet reconstructs its input images, so it takes them unnormalised: set data.normalize: none");
  }
  const int64_t channels = like.images.size(1);
  if (mode == "train") {
    std::tie(spec.input_mean, spec.input_std) = nn::channel_statistics(like.images);
    for (auto& deviation : spec.input_std) deviation = std::max(deviation, 1e-6);  // a constant channel
    spdlog::info("data.normalize: training split mean [{:.4f}], std [{:.4f}]", fmt::join(spec.input_mean, ", "),
                 fmt::join(spec.input_std, ", "));
    return;
  }
  auto per_channel = [&](const char* key) {
    auto values = config.get_double_list(key);
    if (values.size() == 1) values.assign(channels, values.front());
    if (static_cast<int64_t>(values.size()) != channels) {
      throw InputError(fmt::format("{}: {} values for images of {} channels (give one, or one per channel)", key, values.size(), channels));
    }
    return values;
  };
  spec.input_mean = per_channel("data.mean");
  spec.input_std = per_channel("data.std");
}

}  // namespace

nn::ModelSpec model_spec_from_config(const Config& config, const data::Dataset& like) {
  nn::ModelSpec spec;
  spec.kind = config.get_string("model.kind");
  if (spec.kind == "torchscript") {
    spec.script_path = config.get_string("model.path");
    if (spec.script_path.empty()) throw InputError("model.kind is torchscript but model.path is empty: set it to the model's TorchScript file");
    if (!std::filesystem::is_regular_file(spec.script_path)) throw InputError("model.path: " + spec.script_path + ": no such file");
    spec.script = report::read_file_text(spec.script_path);
  }
  spec.in_channels = like.images.size(1);
  spec.image_size = like.images.size(2);
  spec.num_classes = like.classes.empty() ? 10 : static_cast<int64_t>(like.classes.size());
  spec.classes = like.classes;
  const std::string dataset = config.get_string("data.dataset");
  if (dataset == "folder" || dataset == "tensors") {
    if (like.images.size(2) != like.images.size(3)) {
      throw InputError(fmt::format("data.path: the images are {}x{} (height x width) but models take square images{}",
                                   like.images.size(2), like.images.size(3), dataset == "folder" ? ": set data.crop" : ""));
    }
    spec.folder_input = true;  // predict decodes a file as it is, converted to in_channels
    if (dataset == "folder") {
      spec.input_resize = config.get_int("data.resize");
      spec.input_crop = config.get_int("data.crop");
    }
  }
  set_input_normalization(config, like, spec);
  spec.hidden = config.get_int_list("model.hidden");
  spec.channels = config.get_int_list("model.channels");
  spec.dropout_input = config.get_double("model.dropout_input");
  spec.dropout_hidden = config.get_double("model.dropout_hidden");
  spec.max_norm = config.get_double("model.max_norm");
  spec.routing_iterations = config.get_int("model.routing_iterations");
  spec.capsule_dims = config.get_int_list("model.capsule_dims");
  return spec;
}

namespace {

// Keys that do not change what a run computes.
bool affects_results(const std::string& key) {
  return key.rfind("run.", 0) != 0 && key != "train.threads" && key != "data.dir" && key != "data.cache" &&
         key != "data.max_memory";
}

// Empty when the run folder's config.yaml matches `config` on every compared key; otherwise what
// differs, for the error message.
std::string config_difference(const std::string& dir, const Config& config, bool allow_more_epochs) {
  const std::string path = dir + "/config.yaml";
  if (!std::filesystem::exists(path)) return "";
  Config stored;
  try {
    stored = Config::load(path);
  } catch (const std::exception& e) {
    return fmt::format("its config.yaml cannot be read ({})", e.what());
  }
  for (const auto& d : stored.differences(config)) {
    if (!affects_results(d.key)) continue;
    // More epochs extend a run; fewer would end it before the checkpoint's step.
    if (allow_more_epochs && d.key == "train.epochs" && config.get_int(d.key) >= stored.get_int(d.key)) continue;
    return fmt::format("it was made with {} = {}, this run asks for {}", d.key, d.ours, d.theirs);
  }
  return "";
}

}  // namespace

std::optional<nlohmann::json> finished_run(const Config& config) {
  const std::string dir = config.get_string("run.dir") + "/" + config.get_string("name");
  const std::string result_path = dir + "/result.json";
  if (!std::filesystem::exists(result_path)) return std::nullopt;
  if (const auto difference = config_difference(dir, config, false); !difference.empty()) {
    throw InputError(fmt::format("{} holds a finished run, but {}; rerun with --fresh to retrain it, or move the folder away",
                                 dir, difference));
  }
  std::ifstream in(result_path);
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw InputError(fmt::format("{}: not valid JSON ({}); remove it to retrain the run", result_path, e.what()));
  }
}

std::string prepare_run_dir(const Config& config) {
  const std::string dir = config.get_string("run.dir") + "/" + config.get_string("name");
  if (config.get_bool("run.resume") && std::filesystem::exists(dir + "/checkpoint.pt")) {
    if (const auto difference = config_difference(dir, config, true); !difference.empty()) {
      throw InputError(fmt::format("{} holds a checkpoint to resume, but {}; set run.resume=false to start over there, "
                                   "or choose another name", dir, difference));
    }
  }
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  if (error) throw InputError(dir + ": cannot create run folder: " + error.message());
  report::write_file_atomic(dir + "/config.yaml", config.to_yaml());
  return dir;
}

void apply_thread_config(const Config& config) {
  int64_t threads = config.get_int("train.threads");
  // Automatic: in fp32 the matrix products run on OpenBLAS's own threads, and a second pool of
  // spinning OpenMP threads beside them slows a step down (3x on the 2-core machine); in bf16 they
  // run in oneDNN on LibTorch's pool, which then should have every core.
  if (config.get_string("train.precision") == "bf16") {
    if (threads == 0) threads = std::max<int64_t>(1, std::thread::hardware_concurrency());
#if defined(__x86_64__)
    // Without AVX512-BF16 (or AMX, which comes with it) LibTorch 1.13 emulates bf16 products: 4
    // GFLOP/s against OpenBLAS's 115 in fp32 on a 2-core AVX2 EPYC, so bf16 would be far slower.
    if (!__builtin_cpu_supports("avx512bf16")) {
      spdlog::warn("train.precision=bf16: this CPU has no AVX512-BF16, so bf16 matrix products are emulated and much "
                   "slower than fp32; use train.precision=fp32 here");
    }
#endif
  }
  if (threads > 0) set_compute_threads(static_cast<int>(threads));
}

void export_and_measure_model(nlohmann::json& result, nn::ClassifierImpl& model, const nn::ModelSpec& spec, const std::string& run_dir,
                              const std::string& torchscript_name, torch::IntArrayRef image_shape) {
  std::string model_file = run_dir + "/checkpoint.pt";
  if (nn::has_torchscript_export(spec)) {
    model_file = run_dir + "/" + torchscript_name;
    nn::export_torchscript(model, spec, model_file);
    result["torchscript"] = torchscript_name;
  } else {
    spdlog::info("no TorchScript export for a {} model; checkpoint.pt holds it", spec.kind);
    result["torchscript"] = "";
  }
  result["cost"] = measure_classifier_cost(model, image_shape, model_file).to_json();
}

RunOutcome run_training(const Config& config, const std::atomic<bool>* stop_requested) {
  apply_thread_config(config);
  require_labels(config, "distillery train");
  const auto run_data = load_run_data(config);
  RunOutcome outcome;
  outcome.run_dir = prepare_run_dir(config);
  const auto spec = model_spec_from_config(config, run_data.train);
  torch::manual_seed(config.get_int("train.seed"));
  outcome.model = nn::make_model(spec);
  outcome.num_parameters = nn::count_parameters(*outcome.model);
  auto options = train_options_from_config(config);
  options.run_dir = outcome.run_dir;
  options.label = config.get_string("name");
  options.stop_requested = stop_requested;
  spdlog::info("{}: {} ({} parameters) on {} training images, {} epochs", options.label, spec.kind,
               outcome.num_parameters, run_data.train.size(), options.epochs);
  if (auto* capsnet = dynamic_cast<nn::CapsNetImpl*>(outcome.model.get())) {
    // Margin loss on the capsule lengths plus the masked reconstruction (Sabour et al. 2017).
    nn::CapsNetLossOptions loss_options;
    loss_options.reconstruction_weight(config.get_double("capsnet.reconstruction_weight"));
    const StepLoss step_loss = [capsnet, loss_options](nn::ClassifierImpl&, const Batch& batch) {
      return nn::capsnet_loss(*capsnet, batch.images, batch.labels, loss_options);
    };
    outcome.train = fit_with_step_loss(*outcome.model, spec, run_data.train, &run_data.test, step_loss, options);
  } else {
    outcome.train = fit(*outcome.model, spec, run_data.train, &run_data.test, cross_entropy_objective, options);
  }
  if (!outcome.train.completed) {
    throw std::runtime_error(fmt::format("{}: interrupted at step {}; the same command resumes from {}/checkpoint.pt",
                                         options.label, outcome.train.steps, outcome.run_dir));
  }
  outcome.test = outcome.train.final_eval ? *outcome.train.final_eval : evaluate(*outcome.model, run_data.test);
  nlohmann::json result = {{"name", options.label},
                           {"test", outcome.test.to_json()},
                           {"steps", outcome.train.steps},
                           {"seconds", outcome.train.seconds},
                           {"samples_per_second", outcome.train.samples_per_second},
                           {"parameters", outcome.num_parameters}};
  add_data_summary(result, run_data);
  result["misclassified"] = save_misclassified(*outcome.model, run_data.test, outcome.run_dir + "/misclassified.png");
  export_and_measure_model(result, *outcome.model, spec, outcome.run_dir, "model.ts.pt", run_data.test.images.sizes().slice(1));
  report::write_file_atomic(outcome.run_dir + "/result.json", result.dump(2));
  report::write_run_report(outcome.run_dir);
  return outcome;
}

}  // namespace distillery::train
