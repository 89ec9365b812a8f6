#include "distillery/config.h"

#include <fmt/format.h>

#include <algorithm>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>

#include "distillery/error.h"

namespace distillery {
namespace {

enum class Kind { Int, Double, Bool, String, IntList, DoubleList, StringList };

struct KeySpec {
  const char* key;
  Kind kind;
  const char* default_value;  // YAML text
  double min;
  double max;
  const char* choices;  // for String: "a|b|c" or "" for free text
  const char* help;
};

constexpr double kInf = std::numeric_limits<double>::infinity();

// The single schema of every config key.
const std::vector<KeySpec>& schema() {
  static const std::vector<KeySpec> keys = {
      {"name", Kind::String, "run", 0, 0, "", "run name: the run folder is run.dir/name"},
      {"run.dir", Kind::String, "runs", 0, 0, "", "folder that holds run folders"},
      {"run.resume", Kind::Bool, "true", 0, 0, "", "resume from the run folder's checkpoint if there is one"},
      {"run.log_every_seconds", Kind::Double, "10", 0, kInf, "", "interval of plain progress lines when not on a terminal"},
      {"data.dataset", Kind::String, "mnist", 0, 0, "mnist|fashion-mnist|folder|tensors",
       "dataset (folder: your images under data.path; tensors: a file of tensors at data.path)"},
      {"data.path", Kind::String, "\"\"", 0, 0, "",
       "folder of images: ROOT/<class>/<image>, or ROOT/train/<class>/... with val/ and test/ beside it; "
       "or (tensors) a torch.save'd dict {images: [N, C, H, W] uint8 or float, labels: [N] or None, classes: names}"},
      {"data.test_path", Kind::String, "\"\"", 0, 0, "", "labeled test images: a folder (default: data.path/test), or a tensor file"},
      {"data.labels", Kind::String, "auto", 0, 0, "auto|none",
       "none: the training images are an unlabeled transfer set (their labels are never read)"},
      {"data.channels", Kind::Int, "0", 0, 3, "", "1 or 3: convert every image to gray or RGB (0: as the files are)"},
      {"data.resize", Kind::Int, "0", 0, 65536, "", "resize the shorter side to N pixels, bilinear (0: keep)"},
      {"data.crop", Kind::Int, "0", 0, 65536, "", "then crop an N x N square from the centre (0: no crop)"},
      {"data.max_memory", Kind::Int, "0", 0, 1e9, "",
       "MiB the decoded images of one folder may take; a larger folder is refused before decoding (0: half of RAM)"},
      {"data.cache", Kind::Bool, "true", 0, 0, "",
       "keep decoded image folders in the data cache folder (image-cache/), keyed by their files' paths, sizes and times"},
      {"data.on_bad_image", Kind::String, "skip", 0, 0, "skip|error",
       "an image that cannot be decoded is named and skipped (counted in result.json), or stops the run"},
      {"data.dir", Kind::String, "\"\"", 0, 0, "", "data cache folder (default: $DISTILLERY_DATA, else data/)"},
      {"data.train_limit", Kind::Int, "0", 0, kInf, "", "use only the first N training images (0: all)"},
      {"data.test_limit", Kind::Int, "0", 0, kInf, "", "use only the first N test images (0: all)"},
      {"data.validation", Kind::Int, "0", 0, kInf, "", "training images held out for validation (seeded)"},
      {"data.keep_classes", Kind::IntList, "[]", 0, 9999, "", "train only on these classes (empty: all)"},
      {"data.omit_classes", Kind::IntList, "[]", 0, 9999, "", "leave these classes out of training"},
      {"data.jitter", Kind::Int, "0", 0, 16, "",
       "random shifts of up to N pixels on training batches, zero-filled (torchvision's RandomCrop(size, padding=N))"},
      {"data.flip", Kind::Bool, "false", 0, 0, "", "mirror half of the training images left-right, at random (off: digits must not flip)"},
      {"data.normalize", Kind::String, "none", 0, 0, "none|train|given",
       "per-channel (x - mean) / std inside the model, so eval and predict repeat it: train: measured on the training split; given: data.mean, data.std"},
      {"data.mean", Kind::DoubleList, "[]", -1e6, 1e6, "", "with data.normalize: given: per-channel means of pixels in [0, 1] (one value, or one per channel)"},
      {"data.std", Kind::DoubleList, "[]", 1e-6, 1e6, "", "with data.normalize: given: per-channel standard deviations"},
      {"model.kind", Kind::String, "mlp", 0, 0, "mlp|convnet|capsnet|capsnet-cnn|torchscript", "architecture (torchscript: your own, model.path)"},
      {"model.path", Kind::String, "\"\"", 0, 0, "",
       "torchscript: the model's TorchScript file (torch.jit.script(model).save(path)), mapping [B, C, H, W] to logits [B, K]"},
      {"model.hidden", Kind::IntList, "[1200, 1200]", 1, 1e6, "", "hidden layer sizes (convnet: one fully connected size)"},
      {"model.channels", Kind::IntList, "[32, 64]", 1, 1e5, "", "convnet channel counts"},
      {"model.dropout_input", Kind::Double, "0", 0, 0.99, "", "dropout probability on inputs"},
      {"model.dropout_hidden", Kind::Double, "0", 0, 0.99, "", "dropout probability on hidden units"},
      {"model.max_norm", Kind::Double, "0", 0, kInf, "", "max L2 norm of each hidden unit's incoming weights (0: off)"},
      {"model.routing_iterations", Kind::Int, "3", 1, 100, "", "capsnet: dynamic routing iterations"},
      {"model.capsule_dims", Kind::IntList, "[8, 16]", 1, 1024, "", "capsnet: [primary capsule dim, class capsule dim]"},
      {"capsnet.reconstruction_weight", Kind::Double, "0.0005", 0, 1e3, "", "capsnet: weight of the reconstruction loss (0: no decoder)"},
      {"train.epochs", Kind::Int, "10", 1, 1e6, "", "passes over the training set"},
      {"train.batch_size", Kind::Int, "100", 1, 1e6, "", "examples per step"},
      {"train.optimizer", Kind::String, "sgd", 0, 0, "sgd|adam", "optimizer"},
      {"train.lr", Kind::Double, "0.1", 1e-12, 1e3, "", "learning rate"},
      {"train.momentum", Kind::Double, "0.9", 0, 0.9999, "", "SGD momentum"},
      {"train.weight_decay", Kind::Double, "0", 0, 1, "", "L2 weight decay"},
      {"train.schedule", Kind::String, "cosine", 0, 0, "constant|cosine|exponential", "learning-rate schedule over the run"},
      {"train.lr_decay", Kind::Double, "0.95", 1e-6, 1, "", "per-epoch factor of the exponential schedule"},
      {"train.seed", Kind::Int, "1", 0, 9.0e15, "", "seed of initialisation, shuffling, jitter and dropout"},
      {"train.checkpoint_every", Kind::Int, "0", 0, kInf, "", "also checkpoint every N steps (0: at each epoch end only)"},
      {"train.on_nonfinite", Kind::String, "stop", 0, 0, "stop|skip", "a NaN or Inf loss stops the run (keeping the last checkpoint) or skips its batch"},
      {"train.threads", Kind::Int, "0", 0, 1024, "", "intra-op threads (0: automatic: every core under bf16, else LibTorch's default)"},
      {"train.precision", Kind::String, "fp32", 0, 0, "fp32|bf16",
       "bf16: mixed precision, matrix products of the training step (student and teacher) in bfloat16, weights and losses in fp32"},
      {"distill.teachers", Kind::StringList, "[]", 0, 0, "", "teacher checkpoints or TorchScript files (several: an ensemble)"},
      {"distill.ensemble", Kind::String, "probs", 0, 0, "probs|logits", "how an ensemble combines its members"},
      {"distill.temperature", Kind::Double, "20", 1e-6, 1e4, "", "softmax temperature T of the soft targets"},
      {"distill.method", Kind::String, "kd", 0, 0, "kd|dkd",
       "kd: Hinton's soft targets; dkd: decoupled KD (Zhao et al. 2022), target-class and non-target terms weighted apart"},
      {"distill.dkd_alpha", Kind::Double, "1", 0, 1e6, "", "dkd: weight of the target-class term"},
      {"distill.dkd_beta", Kind::Double, "8", 0, 1e6, "", "dkd: weight of the non-target term"},
      {"distill.dkd_warmup", Kind::Int, "0", 0, 1e6, "", "dkd: epochs over which its weight grows linearly from 0 to 1"},
      {"distill.soft_weight", Kind::Double, "1", 0, 1e6, "", "weight of the soft-target term (already scaled by T^2)"},
      {"distill.hard_weight", Kind::Double, "0", 0, 1e6, "", "weight of the hard-label term at T = 1 (0: no labels)"},
      {"distill.cache", Kind::Bool, "true", 0, 0, "", "cache teacher outputs per (image, shift)"},
      {"distill.teacher_batches", Kind::Int, "10", 1, 1000, "", "with distill.cache: the teacher runs once per N training batches, on all their rows (larger, faster products; 1: every batch)"},
      {"distill.paper_bias_shift", Kind::Double, "0", -100, 100, "", "also report test errors at this published bias shift (0: none)"},
      {"distill.adjust_bias", Kind::Bool, "true", 0, 0, "", "shift the output bias of classes missing from the transfer set, chosen on validation"},
      {"codistill.peers", Kind::Int, "2", 1, 1024, "", "number of peers"},
      {"codistill.alpha", Kind::Double, "1", 0, 1e6, "", "weight of the distillation term (0: independent training)"},
      {"codistill.mode", Kind::String, "separate", 0, 0, "separate|consensus", "one term per peer, or one to the peers' mean"},
      {"codistill.divergence", Kind::String, "kl", 0, 0, "kl|mse", "KL on softmaxes at codistill.temperature, or MSE on logits"},
      {"codistill.temperature", Kind::Double, "1", 1e-6, 1e4, "", "temperature of the kl divergence"},
      {"codistill.burn_in", Kind::Int, "0", 0, kInf, "", "steps with alpha = 0 at the start"},
      {"codistill.exchange_every", Kind::Int, "100", 1, kInf, "", "steps between weight exchanges (K)"},
      {"codistill.shards", Kind::String, "disjoint", 0, 0, "disjoint|same", "each peer its own shard, or all the same data"},
      {"codistill.side_by_side", Kind::Bool, "true", 0, 0, "", "peers of one process step at the same time, one thread each, on every core (or train.threads); off: one after the other"},
      {"codistill.timeout", Kind::Double, "60", 0.1, 86400, "", "seconds an exchange or rendezvous may wait for a peer"},
      {"codistill.fault_exit_step", Kind::Int, "0", 0, kInf, "", "testing: the worker of rank codistill.fault_rank exits abruptly at this step"},
      {"codistill.fault_rank", Kind::Int, "-1", -1, 1024, "", "testing: which rank fault_exit_step applies to"},
      {"glom.levels", Kind::Int, "3", 1, 16, "", "GLOM: levels per column"},
      {"glom.dim", Kind::Int, "48", 1, 4096, "", "GLOM: dimensions of each level's embedding"},
      {"glom.hidden", Kind::Int, "96", 1, 1e5, "", "GLOM: hidden units of the bottom-up and top-down nets"},
      {"glom.iterations", Kind::Int, "6", 0, 100, "", "GLOM: settling iterations"},
      {"glom.train_iterations", Kind::IntList, "[]", 1, 100, "", "GLOM: [min, max]: each training step draws its iteration count from min..max ([]: always glom.iterations)"},
      {"glom.patch", Kind::Int, "4", 1, 56, "", "GLOM: patch side in pixels (56 must be a multiple)"},
      {"glom.radii", Kind::IntList, "[1, 2, 3]", -1, 56, "", "GLOM: consensus window radius per level (-1: global)"},
      {"glom.beta", Kind::Double, "5", 0, 1e4, "", "GLOM: consensus beta at level 0"},
      {"glom.beta_growth", Kind::Double, "2", 0, 100, "", "GLOM: beta at level l is beta * beta_growth^l"},
      {"glom.weight_previous", Kind::Double, "1", 0, 1e4, "", "GLOM: mixing weight of the previous value"},
      {"glom.weight_bottom_up", Kind::Double, "1", 0, 1e4, "", "GLOM: mixing weight of the bottom-up net"},
      {"glom.weight_top_down", Kind::Double, "1", 0, 1e4, "", "GLOM: mixing weight of the top-down net"},
      {"glom.weight_attention", Kind::Double, "1", 0, 1e4, "", "GLOM: mixing weight of the consensus (0: no attention)"},
      {"glom.learned_mixing", Kind::Bool, "false", 0, 0, "", "GLOM: learn the mixing weights per level"},
      {"glom.context", Kind::Int, "0", 0, 28, "", "GLOM: pixels of context around each patch fed to level 0"},
      {"glom.bottom_up_window", Kind::Int, "0", 0, 6, "", "GLOM: bottom-up nets see a (2w+1)^2 neighbourhood of the level below"},
      {"glom.dense_attention", Kind::Bool, "false", 0, 0, "", "GLOM: windowed consensus through a masked N x N matrix instead of the fused windowed kernel (same weights)"},
      {"glom.truncate", Kind::Int, "0", 0, 100, "", "GLOM: backpropagate through the last N iterations only (0: all)"},
      {"glom.init_from", Kind::String, "\"\"", 0, 0, "", "GLOM: continue training the models of this earlier run's glom-<profile> folder (same options; \"\": from scratch)"},
      {"glom.steps", Kind::Int, "600", 1, 1e8, "", "GLOM: training steps per seed"},
      {"glom.batch", Kind::Int, "32", 2, 1e5, "", "GLOM: scenes per step"},
      {"glom.lr", Kind::Double, "0.002", 1e-9, 10, "", "GLOM: Adam learning rate"},
      {"glom.mask_fraction", Kind::Double, "0.25", 0, 0.99, "", "GLOM: fraction of patches hidden for denoising"},
      {"glom.denoise", Kind::Double, "1", 0, 1e4, "", "GLOM: weight of the masked-patch reconstruction"},
      {"glom.island", Kind::Double, "0.1", 0, 1e4, "", "GLOM: weight of the pull towards the detached consensus"},
      {"glom.contrast", Kind::Double, "0.1", 0, 1e4, "", "GLOM: weight of the contrastive push-apart (InfoNCE)"},
      {"glom.temperature", Kind::Double, "0.1", 1e-4, 100, "", "GLOM: InfoNCE temperature"},
      {"glom.samples", Kind::Int, "8", 1, 4096, "", "GLOM: locations per image sampled for the InfoNCE term"},
      {"glom.same_image_negatives", Kind::Bool, "false", 0, 0, "", "GLOM: InfoNCE negatives also from the same image's locations beyond the level's consensus radius"},
      {"glom.label", Kind::Double, "1", 0, 1e4, "", "GLOM: weight of the image-level multi-label loss (MIL)"},
      {"glom.location_label", Kind::Double, "0", 0, 1e4, "", "GLOM: weight of the loss that puts every ink location's class mass on the image's classes"},
      {"glom.commitment", Kind::Double, "0", 0, 1e4, "", "GLOM: weight of the entropy of every ink location's class distribution over the image's classes (choose one digit)"},
      {"glom.pooling", Kind::String, "max", 0, 0, "max|lse", "GLOM: image class scores from the locations' scores: max, or log-sum-exp (learned nothing beyond the class prior in 600 steps)"},
      {"glom.train_scenes", Kind::Int, "8000", 1, 1e7, "", "GLOM: training scenes (from MNIST train)"},
      {"glom.train_layout", Kind::String, "any", 0, 0, "any|separated|touching|overlapping", "GLOM: how the digits of the multi-digit training scenes lie (any: uniform random positions; no masks are used either way)"},
      {"glom.single_fraction", Kind::Double, "0.3", 0, 1, "", "GLOM: fraction of training scenes with one digit"},
      {"glom.test_scenes", Kind::Int, "100", 1, 1e6, "", "GLOM: held-out two-digit scenes per layout (from MNIST test)"},
      {"glom.validation_scenes", Kind::Int, "0", 0, 1e6, "", "GLOM: validation scenes per counted layout (new scenes of MNIST-train digits) on which the best readout is chosen before the test scenes score it (0: none)"},
      {"glom.mnist_test", Kind::Int, "2000", 1, 10000, "", "GLOM: MNIST test digits for top-level accuracy"},
      {"glom.settle_iterations", Kind::Int, "0", 0, 1000, "", "GLOM: iterations at test time for the per-iteration FG-ARI (0 or fewer than glom.iterations: the trained count)"},
      {"glom.threshold", Kind::Double, "0.9", -1, 1, "", "GLOM: cosine threshold of threshold islands"},
      {"glom.seeds", Kind::IntList, "[1, 2]", 0, 9.0e15, "", "GLOM: seeds (one model each)"},
      {"glom.train_ablation", Kind::Bool, "true", 0, 0, "", "GLOM: also train each seed with the attention term off"},
      {"glom.train_unshared", Kind::Bool, "false", 0, 0, "", "GLOM: also train each seed with no weights shared between columns (issue 6)"},
      {"locality.scheme", Kind::String, "saccade", 0, 0, "none|saccade|consensus|shared|supervised", "how the periphery learns: (a) none, (b) saccade distillation, (c) consensus distillation, (d) one shared network, (e) labels everywhere"},
      {"locality.foveate", Kind::Bool, "false", 0, 0, "", "peripheral locations see a blurred, subsampled view"},
      {"locality.grid", Kind::Int, "3", 3, 99, "", "retina locations per side (odd; the fovea is the centre)"},
      {"locality.jitter", Kind::Int, "2", 0, 27, "", "digits shifted by up to N pixels on the canvas"},
      {"locality.blur_sigma", Kind::Double, "1", 0, 100, "", "peripheral Gaussian blur (pixels) when foveated"},
      {"locality.subsample", Kind::Int, "2", 1, 28, "", "peripheral subsampling factor when foveated"},
      {"locality.temperature", Kind::Double, "4", 1e-6, 1e4, "", "temperature of the saccade and consensus soft targets"},
      {"locality.consensus_views", Kind::Int, "2", 1, 9800, "", "consensus: peripheral locations that see each object"},
      {"locality.attention_beta", Kind::Double, "5", 0, 1e6, "", "consensus: sharpness of the attention over the others' predictions"},
      {"locality.batch_per_location", Kind::Int, "32", 1, 1e6, "", "objects per peripheral location per step"},
      {"locality.seeds", Kind::IntList, "[1, 2, 3]", 0, 9.0e15, "", "experiment locality: seeds of every variant"},
  };
  return keys;
}

const KeySpec* find_spec(const std::string& key) {
  for (const auto& spec : schema()) {
    if (key == spec.key) return &spec;
  }
  return nullptr;
}

// Every key's default, parsed once (a config reads them for every key it was not given).
const YAML::Node& default_node(const KeySpec& spec) {
  static const std::map<std::string, YAML::Node> defaults = [] {
    std::map<std::string, YAML::Node> parsed;
    for (const auto& s : schema()) parsed.emplace(s.key, YAML::Load(s.default_value));
    return parsed;
  }();
  return defaults.at(spec.key);
}

// Levenshtein distance of a and b, or any value above `limit` once it must exceed it (a row's
// smallest entry never decreases further down).
size_t edit_distance(const std::string& a, const std::string& b, size_t limit) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    size_t smallest = row[0];
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
      smallest = std::min(smallest, row[j]);
    }
    if (smallest > limit) return smallest;
  }
  return row[b.size()];
}

const char* kind_name(Kind kind) {
  switch (kind) {
    case Kind::Int: return "integer";
    case Kind::Double: return "number";
    case Kind::Bool: return "true/false";
    case Kind::String: return "text";
    case Kind::IntList: return "list of integers";
    case Kind::DoubleList: return "list of numbers";
    case Kind::StringList: return "list of text";
  }
  return "?";
}

std::string show(const YAML::Node& node) {
  YAML::Emitter out;
  out << YAML::Flow << node;
  return out.c_str();
}

void check_number(const KeySpec& spec, double number, const std::string& source) {
  if (number < spec.min || number > spec.max) {
    throw InputError(fmt::format("{}: {} = {} is out of range [{}, {}]", source, spec.key, number, spec.min, spec.max));
  }
}

// Checks one value against its key's type and range; throws InputError naming the key.
void validate(const KeySpec& spec, const YAML::Node& node, const std::string& source) {
  auto wrong_type = [&]() {
    return InputError(fmt::format("{}: {} must be of type {}, got '{}'", source, spec.key, kind_name(spec.kind), show(node)));
  };
  try {
    switch (spec.kind) {
      case Kind::Int: {
        if (!node.IsScalar()) throw wrong_type();
        int64_t v;
        if (!YAML::convert<int64_t>::decode(node, v)) throw wrong_type();
        check_number(spec, static_cast<double>(v), source);
        break;
      }
      case Kind::Double: {
        if (!node.IsScalar()) throw wrong_type();
        double v;
        if (!YAML::convert<double>::decode(node, v)) throw wrong_type();
        check_number(spec, v, source);
        break;
      }
      case Kind::Bool: {
        bool v;
        if (!node.IsScalar() || !YAML::convert<bool>::decode(node, v)) throw wrong_type();
        break;
      }
      case Kind::String: {
        if (!node.IsScalar()) throw wrong_type();
        const std::string choices = spec.choices;
        if (!choices.empty()) {
          const std::string v = node.as<std::string>();
          std::stringstream split(choices);
          std::string choice;
          bool ok = false;
          while (std::getline(split, choice, '|')) ok = ok || choice == v;
          if (!ok) throw InputError(fmt::format("{}: {} = '{}' is not one of {}", source, spec.key, v, choices));
        }
        break;
      }
      case Kind::IntList: {
        if (!node.IsSequence()) throw wrong_type();
        for (const auto& item : node) {
          int64_t v;
          if (!item.IsScalar() || !YAML::convert<int64_t>::decode(item, v)) throw wrong_type();
          check_number(spec, static_cast<double>(v), source);
        }
        break;
      }
      case Kind::DoubleList: {
        if (!node.IsSequence()) throw wrong_type();
        for (const auto& item : node) {
          double v;
          if (!item.IsScalar() || !YAML::convert<double>::decode(item, v)) throw wrong_type();
          check_number(spec, v, source);
        }
        break;
      }
      case Kind::StringList: {
        if (!node.IsSequence()) throw wrong_type();
        for (const auto& item : node) {
          if (!item.IsScalar()) throw wrong_type();
        }
        break;
      }
    }
  } catch (const YAML::Exception&) {
    throw wrong_type();
  }
}

void flatten(const YAML::Node& node, const std::string& prefix, std::vector<std::pair<std::string, YAML::Node>>* out) {
  for (const auto& item : node) {
    const std::string key = prefix.empty() ? item.first.as<std::string>() : prefix + "." + item.first.as<std::string>();
    if (item.second.IsMap() && !find_spec(key)) {
      flatten(item.second, key, out);
    } else {
      out->emplace_back(key, item.second);
    }
  }
}

}  // namespace

std::string nearest_config_key(const std::string& key) {
  // Keys are short: a suggestion for a long unknown key needs only its start (and the edit
  // distance of a 60 KB key against every key took fuzz/fuzz_config milliseconds per input).
  const std::string start = key.substr(0, 64);
  std::string best;
  size_t best_distance = std::numeric_limits<size_t>::max();
  for (const auto& spec : schema()) {
    const size_t d = edit_distance(start, spec.key, best_distance);
    if (d < best_distance) best_distance = d, best = spec.key;
  }
  return best;
}

Config Config::load(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw InputError(path + ": cannot open config file");
  std::stringstream text;
  text << in.rdbuf();
  return parse(text.str(), path);
}

Config Config::parse(const std::string& text, const std::string& source) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw InputError(fmt::format("{}: invalid YAML at line {}: {}", source, e.mark.line + 1, e.msg));
  }
  Config config;
  if (root.IsNull()) return config;
  if (!root.IsMap()) throw InputError(source + ": a config must be a YAML mapping of keys to values");
  std::vector<std::pair<std::string, YAML::Node>> entries;
  try {
    flatten(root, "", &entries);
    for (const auto& [key, value] : entries) config.assign(key, value, source);
  } catch (const YAML::Exception& e) {
    // A key that is not a plain string ("? [a, b]: 1"), found by fuzz/fuzz_config.
    throw InputError(fmt::format("{}: unreadable config at line {}: {}", source, e.mark.line + 1, e.msg));
  }
  return config;
}

void Config::assign(const std::string& key, const YAML::Node& value, const std::string& source) {
  const KeySpec* spec = find_spec(key);
  if (!spec) {
    throw InputError(fmt::format("{}: unknown config key '{}' (did you mean '{}'?)", source, key, nearest_config_key(key)));
  }
  validate(*spec, value, source);
  values_[key] = YAML::Clone(value);
}

void Config::set(const std::string& assignment) {
  const auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0) {
    throw InputError("--set '" + assignment + "': expected key=value, for example train.lr=0.05");
  }
  set(assignment.substr(0, eq), assignment.substr(eq + 1));
}

void Config::set(const std::string& key, const std::string& value) {
  YAML::Node node;
  try {
    node = YAML::Load(value);
  } catch (const YAML::Exception& e) {
    throw InputError(fmt::format("--set {}={}: value is not valid YAML: {}", key, value, e.msg));
  }
  assign(key, node, "--set");
}

YAML::Node Config::value(const std::string& key) const {
  const KeySpec* spec = find_spec(key);
  if (!spec) throw std::logic_error("config key not in schema: " + key);
  auto it = values_.find(key);
  return it != values_.end() ? it->second : YAML::Clone(default_node(*spec));
}

int64_t Config::get_int(const std::string& key) const { return value(key).as<int64_t>(); }
double Config::get_double(const std::string& key) const { return value(key).as<double>(); }
bool Config::get_bool(const std::string& key) const { return value(key).as<bool>(); }
std::string Config::get_string(const std::string& key) const { return value(key).as<std::string>(); }
std::vector<int64_t> Config::get_int_list(const std::string& key) const {
  return value(key).as<std::vector<int64_t>>();
}
std::vector<double> Config::get_double_list(const std::string& key) const {
  return value(key).as<std::vector<double>>();
}
std::vector<std::string> Config::get_string_list(const std::string& key) const {
  return value(key).as<std::vector<std::string>>();
}

std::vector<Config::Difference> Config::differences(const Config& other) const {
  std::vector<Difference> out;
  for (const auto& spec : schema()) {
    const std::string key = spec.key;
    bool same = false;
    switch (spec.kind) {
      case Kind::Int: same = get_int(key) == other.get_int(key); break;
      case Kind::Double: same = get_double(key) == other.get_double(key); break;
      case Kind::Bool: same = get_bool(key) == other.get_bool(key); break;
      case Kind::String: same = get_string(key) == other.get_string(key); break;
      case Kind::IntList: same = get_int_list(key) == other.get_int_list(key); break;
      case Kind::DoubleList: same = get_double_list(key) == other.get_double_list(key); break;
      case Kind::StringList: same = get_string_list(key) == other.get_string_list(key); break;
    }
    if (!same) out.push_back({key, show(value(key)), show(other.value(key))});
  }
  return out;
}

std::string Config::to_yaml() const {
  YAML::Node root(YAML::NodeType::Map);
  for (const auto& spec : schema()) {
    const std::string key = spec.key;
    const auto dot = key.find('.');
    if (dot == std::string::npos) {
      root[key] = value(key);
    } else {
      root[key.substr(0, dot)][key.substr(dot + 1)] = value(key);
    }
  }
  YAML::Emitter out;
  out << root;
  return std::string(out.c_str()) + "\n";
}

std::string Config::describe_keys() {
  std::string text;
  for (const auto& spec : schema()) {
    std::string type = kind_name(spec.kind);
    if (*spec.choices) type = spec.choices;
    text += fmt::format("  {:<24} {:<16} default {:<14} {}\n", spec.key, type, spec.default_value, spec.help);
  }
  return text;
}

namespace {
// "0 to 0.99", "at least 1", "" when any value of the type is allowed.
std::string describe_range(const KeySpec& spec) {
  if (spec.kind == Kind::Bool || spec.kind == Kind::String || spec.kind == Kind::StringList) return "";
  const auto number = [&](double v) { return spec.kind == Kind::Double ? fmt::format("{:g}", v) : fmt::format("{:.0f}", v); };
  const std::string bounds =
      spec.max == kInf ? fmt::format("at least {}", number(spec.min)) : fmt::format("{} to {}", number(spec.min), number(spec.max));
  return spec.kind == Kind::IntList || spec.kind == Kind::DoubleList ? "each " + bounds : bounds;
}
}  // namespace

std::vector<Config::KeyInfo> Config::keys() {
  std::vector<KeyInfo> keys;
  for (const auto& spec : schema()) {
    const std::string type = *spec.choices ? fmt::format("one of {}", spec.choices) : kind_name(spec.kind);
    keys.push_back({spec.key, type, spec.default_value, describe_range(spec), spec.help});
  }
  return keys;
}

}  // namespace distillery
