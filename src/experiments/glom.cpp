#include "distillery/experiments/glom.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <limits>
#include <optional>
#include <set>
#include <tuple>

#include "distillery/config.h"
#include "distillery/data/dataset.h"
#include "distillery/data/image_input.h"
#include "distillery/data/scenes.h"
#include "distillery/error.h"
#include "distillery/nn/glom.h"
#include "distillery/nn/glom_parse.h"
#include "distillery/nn/islands.h"
#include "distillery/nn/model_spec.h"
#include "distillery/report/html.h"
#include "distillery/report/image.h"
#include "distillery/report/metrics.h"
#include "distillery/report/results_page.h"
#include "distillery/system.h"

namespace distillery::experiments {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

const std::vector<std::string> kLayouts = {"separated", "touching", "overlapping"};

// The models of the study: the main one and variants that change one thing.
struct Variant {
  bool attention = true;
  bool shared_columns = true;
  std::string name() const { return !attention ? "noattention" : !shared_columns ? "unshared" : "main"; }
};

nn::GlomOptions model_options(const Config& c, const Variant& variant) {
  const int64_t levels = c.get_int("glom.levels");
  const auto radii = c.get_int_list("glom.radii");
  if (static_cast<int64_t>(radii.size()) != levels) {
    throw InputError(fmt::format("glom.radii: {} radii for glom.levels = {}", radii.size(), levels));
  }
  for (auto r : radii) {
    if (r == 0) throw InputError("glom.radii: a radius of 0 has no neighbours (use >= 1, or -1 for global)");
  }
  if (56 % c.get_int("glom.patch") != 0) throw InputError(fmt::format("glom.patch = {} does not divide 56", c.get_int("glom.patch")));
  std::vector<double> betas;
  for (int64_t l = 0; l < levels; ++l) betas.push_back(c.get_double("glom.beta") * std::pow(c.get_double("glom.beta_growth"), double(l)));
  return nn::GlomOptions()
      .image_size(56)
      .patch_size(c.get_int("glom.patch"))
      .levels(levels)
      .dim(c.get_int("glom.dim"))
      .hidden(c.get_int("glom.hidden"))
      .iterations(c.get_int("glom.iterations"))
      .radii(radii)
      .betas(betas)
      .weight_previous(c.get_double("glom.weight_previous"))
      .weight_bottom_up(c.get_double("glom.weight_bottom_up"))
      .weight_top_down(c.get_double("glom.weight_top_down"))
      .weight_attention(variant.attention ? c.get_double("glom.weight_attention") : 0.0)
      .shared_columns(variant.shared_columns)
      .learned_mixing(c.get_bool("glom.learned_mixing"))
      .dense_attention(c.get_bool("glom.dense_attention"))
      .context(c.get_int("glom.context"))
      .bottom_up_window(c.get_int("glom.bottom_up_window"))
      .truncate(c.get_int("glom.truncate"))
      .pooling(c.get_string("glom.pooling"));
}

// The range of training iteration counts, [glom.iterations, glom.iterations] unless
// glom.train_iterations gives one.
std::pair<int64_t, int64_t> training_iteration_range(const Config& c) {
  const auto range = c.get_int_list("glom.train_iterations");
  if (range.empty()) return {c.get_int("glom.iterations"), c.get_int("glom.iterations")};
  if (range.size() != 2 || range[0] > range[1]) {
    throw InputError(fmt::format("glom.train_iterations: expected [min, max] with min <= max, got [{}]", fmt::join(range, ", ")));
  }
  return {range[0], range[1]};
}

nn::GlomLossOptions loss_options(const Config& c) {
  return nn::GlomLossOptions()
      .mask_fraction(c.get_double("glom.mask_fraction"))
      .denoise(c.get_double("glom.denoise"))
      .island(c.get_double("glom.island"))
      .contrast(c.get_double("glom.contrast"))
      .temperature(c.get_double("glom.temperature"))
      .samples(c.get_int("glom.samples"))
      .same_image_negatives(c.get_bool("glom.same_image_negatives"))
      .label(c.get_double("glom.label"))
      .location_label(c.get_double("glom.location_label"))
      .commitment(c.get_double("glom.commitment"));
}

// Training scenes carry no masks into training: only images and labels are kept.
struct TrainSet {
  torch::Tensor images, labels;
};

TrainSet training_scenes(const data::Dataset& train_digits, const Config& c) {
  const int64_t total = c.get_int("glom.train_scenes");
  const int64_t singles = static_cast<int64_t>(std::round(total * c.get_double("glom.single_fraction")));
  std::vector<torch::Tensor> images, labels;
  if (singles > 0) {
    auto s = data::make_scenes(train_digits, singles, data::SceneOptions().min_digits(1).max_digits(1).seed(101));
    images.push_back(s.images), labels.push_back(s.labels);
  }
  if (total - singles > 0) {
    const auto layout = data::parse_scene_layout(c.get_string("glom.train_layout"), "glom.train_layout");
    auto s = data::make_scenes(train_digits, total - singles, data::SceneOptions().min_digits(2).max_digits(3).layout(layout).seed(102));
    images.push_back(s.images), labels.push_back(s.labels);
  }
  return {torch::cat(images), torch::cat(labels)};
}

// The training time of a model loaded from its checkpoint, as its last metrics record says (NaN if
// none). Records before the variant field carry "attention" instead.
double recorded_train_seconds(const std::string& metrics_path, int64_t seed, const Variant& variant, int64_t steps) {
  double seconds = std::nan("");
  if (!fs::exists(metrics_path)) return seconds;
  for (const auto& record : report::read_metrics(metrics_path)) {
    if (record.value("seed", int64_t{-1}) != seed || record.value("step", int64_t{-1}) != steps) continue;
    const std::string name = record.contains("variant") ? record["variant"].get<std::string>()
                                                        : (record.value("attention", true) ? "main" : "noattention");
    if (name == variant.name()) seconds = record.value("seconds", std::nan(""));
  }
  return seconds;
}

// Keys that change only how trained models are scored, not what is trained.
bool shapes_training(const std::string& key) {
  static const std::set<std::string> scoring = {"glom.seeds", "glom.test_scenes", "glom.validation_scenes", "glom.mnist_test", "glom.settle_iterations",
                                                "glom.threshold", "glom.train_ablation", "glom.train_unshared"};
  return key.rfind("glom.", 0) == 0 && scoring.count(key) == 0;
}

// The config a model was trained with is kept beside it (model-seed1.pt: model-seed1.yaml), so that
// a model trained for 1000 steps is never scored as one trained for 10000.
std::string training_config_path(const std::string& model_path) {
  return (fs::path(model_path).replace_extension(".yaml")).string();
}

void check_training_config(const std::string& model_path, const Config& c) {
  const std::string recorded = training_config_path(model_path);
  if (!fs::exists(recorded)) {
    spdlog::warn("glom: {} has no {} beside it (an older run): its training config cannot be checked", model_path, recorded);
    return;
  }
  for (const auto& d : Config::load(recorded).differences(c)) {
    if (!shapes_training(d.key)) continue;
    throw InputError(fmt::format("{} was trained with {} = {}, this run asks for {}; rerun with --fresh to retrain it, "
                                 "or choose another --runs folder", model_path, d.key, d.ours, d.theirs));
  }
}

// torch::load; LibTorch's reason if it cannot: c10::Error (a damaged zip, other shapes; its backtrace
// left out) or std::runtime_error (damaged TorchScript inside, train/checkpoint.cpp).
std::optional<std::string> load_failure(nn::Glom& model, const std::string& path) {
  try {
    torch::load(model, path);
  } catch (const c10::Error& e) {
    return e.what_without_backtrace();
  } catch (const std::exception& e) {
    return std::string(e.what());
  }
  return std::nullopt;
}

// Trains one model (or loads its checkpoint); appends progress to metrics.
nn::Glom train_model(const Config& c, const TrainSet& train, int64_t seed, const Variant& variant, const std::string& path,
                     bool fresh, report::MetricsWriter& metrics, double* train_seconds) {
  torch::manual_seed(seed);
  nn::Glom model(model_options(c, variant));
  if (!fresh && fs::exists(path)) {
    check_training_config(path, c);
    if (const auto why = load_failure(model, path)) {
      throw InputError(fmt::format("{} is damaged or does not fit this run's model: {}; rerun with --fresh to retrain it, or choose "
                                   "another --runs folder", path, *why));
    }
    spdlog::info("glom: loaded {}", path);
    *train_seconds = recorded_train_seconds((fs::path(path).parent_path() / "metrics.jsonl").string(), seed, variant, c.get_int("glom.steps"));
    return model;
  }
  const std::string init_folder = c.get_string("glom.init_from");
  if (!init_folder.empty()) {
    // Continue training a finished model (a warm restart of the learning-rate schedule): the same
    // variant and seed's checkpoint in that run folder.
    const std::string init_path = (fs::path(init_folder) / fs::path(path).filename()).string();
    if (!fs::exists(init_path)) {
      throw InputError(fmt::format("glom.init_from: {} has no {} (a --runs folder's glom-<profile> folder is expected)",
                                   init_folder, fs::path(path).filename().string()));
    }
    if (const auto why = load_failure(model, init_path)) {
      throw InputError(fmt::format("glom.init_from: {} does not fit this model's options, or is damaged: {}", init_path, *why));
    }
    spdlog::info("glom: seed {} {} continues from {}", seed, variant.name(), init_path);
  }
  const auto start = Clock::now();
  const auto loss_opts = loss_options(c);
  torch::optim::Adam opt(model->parameters(), torch::optim::AdamOptions(c.get_double("glom.lr")));
  const int64_t steps = c.get_int("glom.steps"), batch = c.get_int("glom.batch"), n = train.images.size(0);
  const auto [fewest_iterations, most_iterations] = training_iteration_range(c);
  auto last_log = Clock::now();
  model->train();
  for (int64_t step = 1; step <= steps; ++step) {
    // Cosine learning-rate decay.
    const double lr = c.get_double("glom.lr") * 0.5 * (1 + std::cos(M_PI * double(step - 1) / double(steps)));
    for (auto& group : opt.param_groups()) static_cast<torch::optim::AdamOptions&>(group.options()).lr(lr);
    const auto index = torch::randint(n, {batch}, torch::kInt64);
    // A varying count asks every iteration from fewest to most to hold the islands, not only the
    // last one: a fixed point, so that settling longer at test time does not undo them.
    auto step_loss = loss_opts;
    if (most_iterations > fewest_iterations) {
      step_loss.iterations(torch::randint(fewest_iterations, most_iterations + 1, {1}, torch::kInt64).item<int64_t>());
    }
    opt.zero_grad();
    auto loss = nn::glom_loss(model, train.images.index_select(0, index), train.labels.index_select(0, index), step_loss);
    if (!std::isfinite(loss.total.item<double>())) throw std::runtime_error(fmt::format("glom: non-finite loss at step {}", step));
    loss.total.backward();
    torch::nn::utils::clip_grad_norm_(model->parameters(), 5.0);
    opt.step();
    if (step == 1 || step == steps || step % 50 == 0) {
      json record = {{"seed", seed}, {"variant", variant.name()}, {"step", step}, {"loss", loss.total.item<double>()},
                     {"denoise", loss.denoise.item<double>()}, {"island", loss.island.item<double>()},
                     {"contrast", loss.contrast.item<double>()}, {"label", loss.label.item<double>()},
                     {"location_label", loss.location_label.item<double>()}, {"commitment", loss.commitment.item<double>()},
                     {"seconds", seconds_since(start)}};
      metrics.write(record);
      if (seconds_since(last_log) > 20 || step == steps) {
        spdlog::info("glom seed {} {}: step {}/{} loss {:.4f} (denoise {:.4f} island {:.4f} contrast {:.3f} label {:.4f} "
                     "location label {:.4f}) {:.1f} steps/s",
                     seed, variant.name(), step, steps, record["loss"].get<double>(), record["denoise"].get<double>(),
                     record["island"].get<double>(), record["contrast"].get<double>(), record["label"].get<double>(),
                     record["location_label"].get<double>(), step / seconds_since(start));
        last_log = Clock::now();
      }
    }
  }
  *train_seconds = seconds_since(start);
  model->eval();
  report::write_file_atomic(training_config_path(path), c.to_yaml());
  const std::string tmp = path + ".tmp";
  torch::save(model, tmp);
  fs::rename(tmp, path);
  return model;
}

double mean_of(const std::vector<double>& v) {
  double s = 0;
  int64_t k = 0;
  for (double x : v) {
    if (std::isfinite(x)) s += x, ++k;
  }
  return k ? s / k : std::nan("");
}

double sd_of(const std::vector<double>& v) {
  const double m = mean_of(v);
  double s = 0;
  int64_t k = 0;
  for (double x : v) {
    if (std::isfinite(x)) s += (x - m) * (x - m), ++k;
  }
  return k > 1 ? std::sqrt(s / (k - 1)) : 0.0;
}

json finite_or_null(double x) { return std::isfinite(x) ? json(x) : json(nullptr); }

// How per-scene FG-ARI is spread: a mean of 0.75 can be every scene a little wrong or a few scenes
// split the wrong way. Quartiles, the 10th percentile and the fraction of scenes below 0.5.
json scene_distribution(std::vector<double> v) {
  v.erase(std::remove_if(v.begin(), v.end(), [](double x) { return !std::isfinite(x); }), v.end());
  if (v.empty()) return nullptr;
  std::sort(v.begin(), v.end());
  auto quantile = [&](double q) { return v[static_cast<size_t>(std::lround(q * double(v.size() - 1)))]; };
  const auto below = std::count_if(v.begin(), v.end(), [](double x) { return x < 0.5; });
  return {{"scenes", v.size()}, {"p10", quantile(0.1)}, {"p25", quantile(0.25)}, {"median", quantile(0.5)},
          {"p75", quantile(0.75)}, {"fraction_below_0.5", double(below) / double(v.size())}};
}

struct LayoutScores {
  // [iteration][level] -> per-scene FG-ARI of k-means islands on the ink patches.
  std::vector<std::vector<std::vector<double>>> kmeans_ari;
  std::vector<std::vector<double>> pixel_ari;      // [level], final iteration, islands read out per pixel
  std::vector<std::vector<double>> spectral_ari;   // [level], final iteration, normalised cut of the agreement graph
  // Final iteration, top level, the image's mean ink embedding subtracted first: a component that
  // every location shares says nothing about which digit a location belongs to, yet it dominates
  // the cosine between them.
  std::vector<double> centred_ari, centred_pixel_ari;
  std::vector<double> class_ari;  // final iteration: each ink patch labelled by the top level's classifier (not islands)
  // [level] (empty at level 0), final iteration: each ink pixel to the k-means island whose mean
  // embedding imagines the most ink there (Glom::imagine); and at the top level, the same from the
  // masks' islands (each ink patch grouped with its majority digit): how far imagining can go.
  std::vector<std::vector<double>> imagined_ari;
  std::vector<double> imagined_reference_ari;
  std::vector<std::vector<double>> threshold_ari;  // [level], final iteration
  std::vector<std::vector<double>> island_count;   // [level], islands among ink patches, final iteration
  std::vector<std::vector<double>> within_between; // [level], final iteration
  std::vector<std::vector<double>> ablation_ari;   // [level], attention switched off at test time
};

// What each island imagines: the mean embedding at `level` of each group of patches (labels [N],
// -1 for none) placed at every location and read down to pixels (Glom::imagine); each ink pixel
// joins the island that imagines the most ink there. -> pixel labels [H, W].
torch::Tensor imagined_islands(nn::Glom& model, const torch::Tensor& embeddings, const torch::Tensor& labels, int64_t level,
                               const torch::Tensor& ink) {
  const int64_t grid = model->grid(), patch = model->options_.patch_size();
  std::vector<torch::Tensor> means;
  for (int64_t j = 0; j <= labels.max().item<int64_t>(); ++j) {
    const auto members = labels.eq(j).nonzero().reshape({-1});
    if (members.numel() > 0) means.push_back(embeddings.index_select(0, members).mean(0));
  }
  if (means.empty()) return torch::full({grid * patch, grid * patch}, -1, torch::kInt64);
  const auto centres = torch::stack(means).unsqueeze(1).expand({int64_t(means.size()), grid * grid, embeddings.size(1)});
  return nn::imagined_ink_pixels(model->imagine(centres, level), ink, grid, patch);
}

// Scores a model's islands on held-out scenes. Masks are used here only, after training. The
// k-means FG-ARI is recorded for `settle` (>= the trained count) iterations, as GLOM is meant to
// settle; every other score is taken at the trained count.
LayoutScores score_islands(nn::Glom& model, const data::Scenes& scenes, double threshold, int64_t settle) {
  torch::NoGradGuard no_grad;
  model->eval();
  const auto& o = model->options_;
  const int64_t levels = o.levels(), iterations = o.iterations(), grid = model->grid(), patch = o.patch_size();
  LayoutScores s;
  s.kmeans_ari.assign(settle + 1, std::vector<std::vector<double>>(levels));
  s.pixel_ari.assign(levels, {});
  s.imagined_ari.assign(levels, {});
  s.spectral_ari.assign(levels, {});
  s.threshold_ari.assign(levels, {});
  s.island_count.assign(levels, {});
  s.within_between.assign(levels, {});
  s.ablation_ari.assign(levels, {});
  const int64_t chunk = 50;
  for (int64_t begin = 0; begin < scenes.size(); begin += chunk) {
    const int64_t len = std::min(chunk, scenes.size() - begin);
    const auto images = scenes.images.narrow(0, begin, len);
    model->set_attention(true);
    const auto history = model->forward(images, {}, /*record=*/true, settle).iterations;  // [settle + 1, B, N, L, D]
    const auto final_levels = history[iterations];
    model->set_attention(false);
    const auto off = model->forward(images).levels;
    model->set_attention(true);
    const auto location_logits = model->location_logits(final_levels.select(2, levels - 1));  // [B, N, C]
    for (int64_t i = 0; i < len; ++i) {
      const auto image = images[i][0];
      const auto mask = scenes.masks[begin + i];
      const int64_t k = scenes.num_digits[begin + i].item<int64_t>();
      const auto ink = nn::ink_patches(image, patch, 0.3);
      const auto objects = nn::patch_objects(mask, patch);
      std::vector<torch::Tensor> final_islands(levels);  // k-means patch labels at the trained count, per level
      for (int64_t t = 0; t <= settle; ++t) {
        for (int64_t l = 0; l < levels; ++l) {
          const auto islands = nn::kmeans_ink_patches(history[t][i].select(1, l), ink, k, 1, true);
          if (t == iterations) final_islands[l] = islands;
          s.kmeans_ari[t][l].push_back(nn::foreground_ari(mask, nn::patch_labels_to_pixels(islands, grid, patch)));
        }
      }
      {
        const auto emb = final_levels[i].select(1, levels - 1);
        const auto on_ink = ink.reshape({-1, 1}).to(emb.dtype());
        const auto centred = emb - (emb * on_ink).sum(0, true) / on_ink.sum().clamp_min(1.0);
        s.centred_ari.push_back(nn::foreground_ari(mask, nn::cluster_ink_patches(centred, ink, grid, patch, k, 1, true)));
        s.centred_pixel_ari.push_back(nn::foreground_ari(mask, nn::cluster_ink_pixels(centred, ink, grid, patch, k, 1, true)));
      }
      s.class_ari.push_back(nn::foreground_ari(mask, nn::classify_ink_patches(location_logits[i], ink, grid, patch, k)));
      s.imagined_reference_ari.push_back(nn::foreground_ari(
          mask, imagined_islands(model, final_levels[i].select(1, levels - 1), (objects - 1).masked_fill(ink.logical_not(), -1),
                                 levels - 1, ink)));
      for (int64_t l = 0; l < levels; ++l) {
        const auto emb = final_levels[i].select(1, l);
        s.pixel_ari[l].push_back(nn::foreground_ari(mask, nn::cluster_ink_pixels(emb, ink, grid, patch, k, 1, true)));
        if (l >= 1) {
          s.imagined_ari[l].push_back(
              nn::foreground_ari(mask, imagined_islands(model, emb, final_islands[l], l, ink)));
        }
        // The graph of the level's own consensus: its window (the grid, if global) and beta.
        const int64_t radius = o.radii()[l] < 0 ? grid : o.radii()[l];
        s.spectral_ari[l].push_back(
            nn::foreground_ari(mask, nn::spectral_ink_patches(emb, ink, grid, patch, k, radius, o.betas()[l], 1)));
        auto islands = nn::threshold_islands(emb, grid, grid, threshold);
        islands = islands.masked_fill(ink.logical_not(), -1);
        s.threshold_ari[l].push_back(nn::foreground_ari(mask, nn::patch_labels_to_pixels(islands, grid, patch)));
        s.island_count[l].push_back(double(nn::island_sizes(islands.masked_select(ink)).size()));
        s.within_between[l].push_back(nn::within_minus_between_cosine(emb, objects));
        s.ablation_ari[l].push_back(
            nn::foreground_ari(mask, nn::cluster_ink_patches(off[i].select(1, l), ink, grid, patch, k, 1, true)));
      }
    }
  }
  return s;
}

// Every island readout a reader could pick: k-means per patch at each level and iteration, per
// pixel and by normalised cut at each level, the top level centred. Name and per-scene FG-ARI.
std::vector<std::pair<std::string, const std::vector<double>*>> island_readouts(const LayoutScores& s) {
  std::vector<std::pair<std::string, const std::vector<double>*>> out;
  const size_t levels = s.pixel_ari.size();
  for (size_t t = 1; t < s.kmeans_ari.size(); ++t) {
    for (size_t l = 0; l < levels; ++l) out.push_back({fmt::format("k-means per patch, level {}, iteration {}", l, t), &s.kmeans_ari[t][l]});
  }
  for (size_t l = 0; l < levels; ++l) out.push_back({fmt::format("k-means per pixel, level {}", l), &s.pixel_ari[l]});
  for (size_t l = 0; l < levels; ++l) out.push_back({fmt::format("normalised cut, level {}", l), &s.spectral_ari[l]});
  for (size_t l = 1; l < levels; ++l) out.push_back({fmt::format("k-means islands imagined per pixel, level {}", l), &s.imagined_ari[l]});
  out.push_back({"centred k-means per patch, top level", &s.centred_ari});
  out.push_back({"centred k-means per pixel, top level", &s.centred_pixel_ari});
  return out;
}

// Baselines on the same scenes: connected components of the ink; k-means on raw patch pixels plus
// position (the position weight that scores best on these scenes is reported, to favour the baseline).
// Beside them a reference for any labelling of ink patches: each given its majority digit from the
// mask. Overlapping digits share patches and a patch gets one label, so this is near the best a
// patch-level segmentation can score.
json score_baselines(const data::Scenes& scenes, int64_t patch, int64_t radius) {
  std::vector<double> components, reference, pixel_reference;
  std::map<double, std::vector<double>> by_weight, by_weight_pixel, by_beta_spectral;
  const int64_t grid = 56 / patch;
  for (int64_t i = 0; i < scenes.size(); ++i) {
    const auto image = scenes.images[i][0];
    const auto mask = scenes.masks[i];
    const int64_t k = scenes.num_digits[i].item<int64_t>();
    components.push_back(nn::foreground_ari(mask, nn::ink_components(image, 0.3)));
    const auto ink = nn::ink_patches(image, patch, 0.3);
    const auto majority = nn::patch_objects(mask, patch).masked_fill(ink.logical_not(), -1);
    reference.push_back(nn::foreground_ari(mask, nn::patch_labels_to_pixels(majority, grid, patch)));
    // The same majority labels read out per pixel (interpolated between patch centres).
    const auto one_hot = torch::one_hot(majority.clamp_min(0), scenes.masks[i].max().item<int64_t>() + 1).to(torch::kFloat32);
    pixel_reference.push_back(nn::foreground_ari(mask, nn::cluster_ink_pixels(one_hot, ink, grid, patch, k, 1, false)));
    for (double w : {0.5, 1.0, 2.0, 4.0, 8.0}) {
      const auto features = nn::pixel_position_features(image, patch, w);
      by_weight[w].push_back(nn::foreground_ari(mask, nn::cluster_ink_patches(features, ink, grid, patch, k, 1, false)));
      by_weight_pixel[w].push_back(nn::foreground_ari(mask, nn::cluster_ink_pixels(features, ink, grid, patch, k, 1, false)));
    }
    // A normalised cut of the raw patches' agreement graph, in the window of GLOM's top level.
    const auto raw = nn::pixel_position_features(image, patch, 0.0).narrow(1, 0, patch * patch);
    for (double beta : {1.0, 3.0, 10.0, 30.0}) {
      by_beta_spectral[beta].push_back(nn::foreground_ari(mask, nn::spectral_ink_patches(raw, ink, grid, patch, k, radius, beta, 1)));
    }
  }
  // The position weight that scores best, so as to favour the baseline.
  auto best_of = [](const std::map<double, std::vector<double>>& scores) {
    std::pair<double, double> best = {-2, 0};
    for (const auto& [w, v] : scores) {
      if (mean_of(v) > best.first) best = {mean_of(v), w};
    }
    return best;
  };
  const auto [best, best_w] = best_of(by_weight);
  const auto [best_pixel, best_pixel_w] = best_of(by_weight_pixel);
  const auto [best_spectral, best_beta] = best_of(by_beta_spectral);
  return {{"ink_components", mean_of(components)}, {"kmeans_pixels_position", best}, {"kmeans_position_weight", best_w},
          {"kmeans_pixels_position_per_pixel", best_pixel}, {"kmeans_position_weight_per_pixel", best_pixel_w},
          {"spectral_pixels", best_spectral}, {"spectral_beta", best_beta},
          {"patch_reference", mean_of(reference)}, {"patch_reference_per_pixel", mean_of(pixel_reference)}};
}

// MNIST accuracy (%) from the top level, read two ways: the trained MIL head (the most confident
// location of each class), and a vote of the island: the sum of every ink location's class
// log-probabilities, which the location-label term trains each of them to give.
struct MnistAccuracy {
  double head = 0, vote = 0;
};

MnistAccuracy mnist_accuracy(nn::Glom& model, const data::Scenes& digits, const torch::Tensor& labels) {
  torch::NoGradGuard no_grad;
  model->eval();
  model->set_attention(true);
  int64_t head = 0, vote = 0;
  for (int64_t begin = 0; begin < digits.size(); begin += 100) {
    const int64_t len = std::min<int64_t>(100, digits.size() - begin);
    const auto images = digits.images.narrow(0, begin, len);
    const auto truth = labels.narrow(0, begin, len);
    const auto out = model->forward(images);
    head += out.image_logits.argmax(1).eq(truth).sum().item<int64_t>();
    const auto ink = model->patches(images).amax(2).gt(0.3);  // [B, N]
    vote += nn::ink_class_votes(out.location_logits, ink).argmax(1).eq(truth).sum().item<int64_t>();
  }
  return {100.0 * double(head) / double(digits.size()), 100.0 * double(vote) / double(digits.size())};
}

// For a few scenes: rows = levels (and the masks), columns = iterations; k-means islands on the ink
// patches as colours over the input. Labels of two clusters are aligned across iterations so that
// a colour keeps its island.
torch::Tensor island_pictures(nn::Glom& model, const data::Scenes& scenes, int64_t count, int64_t level_rows) {
  torch::NoGradGuard no_grad;
  model->eval();
  model->set_attention(true);
  const auto& o = model->options_;
  const int64_t grid = model->grid(), patch = o.patch_size(), iterations = o.iterations();
  const auto out = model->forward(scenes.images.narrow(0, 0, count), {}, true);
  std::vector<torch::Tensor> cells;
  for (int64_t i = 0; i < count; ++i) {
    const auto image = scenes.images[i][0];
    const auto ink = nn::ink_patches(image, patch, 0.3);
    const int64_t k = scenes.num_digits[i].item<int64_t>();
    // The masks, then for each level every iteration.
    auto truth = scenes.masks[i].clone() - 1;
    for (int64_t t = 0; t <= iterations; ++t) cells.push_back(t == 0 ? report::colour_islands(truth, image) : torch::zeros({3, 56, 56}));
    for (int64_t l = 0; l < level_rows; ++l) {
      torch::Tensor reference;
      std::vector<torch::Tensor> row;
      for (int64_t t = iterations; t >= 0; --t) {
        auto labels = nn::cluster_ink_patches(out.iterations[t][i].select(1, l), ink, grid, patch, k, 1, true);
        if (reference.defined() && k == 2) {
          const auto swapped = torch::where(labels.ge(0), 1 - labels, labels);
          if (swapped.eq(reference).sum().item<int64_t>() > labels.eq(reference).sum().item<int64_t>()) labels = swapped;
        }
        reference = labels;
        row.push_back(report::colour_islands(labels, image));
      }
      for (auto it = row.rbegin(); it != row.rend(); ++it) cells.push_back(*it);
    }
  }
  return report::image_grid(torch::stack(cells), iterations + 1, 2, 1.0);
}

json matrix_json(const std::vector<std::vector<double>>& m) {
  json out = json::array();
  for (const auto& row : m) {
    json r = json::array();
    for (double x : row) r.push_back(finite_or_null(x));
    out.push_back(r);
  }
  return out;
}

}  // namespace

nn::Glom load_glom_model(const std::string& model_path) {
  if (!fs::exists(model_path)) throw InputError(fmt::format("{}: no such GLOM model", model_path));
  const std::string recorded = training_config_path(model_path);
  if (!fs::exists(recorded)) {
    throw InputError(fmt::format("{}: the training config {} is not beside it (a study's glom-<profile> folder keeps both)",
                                 model_path, recorded));
  }
  const std::string name = fs::path(model_path).filename().string();
  Variant variant;
  variant.attention = name.find("noattention") == std::string::npos;
  variant.shared_columns = name.find("unshared") == std::string::npos;
  nn::Glom model(model_options(Config::load(recorded), variant));
  if (const auto why = load_failure(model, model_path)) {
    throw InputError(fmt::format("{}: not a GLOM model of the options in {} (corrupt, or trained with others): {}", model_path,
                                 recorded, *why));
  }
  model->eval();
  return model;
}

json parse_image_files(const std::string& model_path, const std::vector<std::string>& images, int64_t objects, double threshold,
                       const std::string& out_dir) {
  if (objects < 0) throw InputError(fmt::format("--objects: expected 0 (islands by agreement) or more, got {}", objects));
  auto model = load_glom_model(model_path);
  const int64_t size = model->options_.image_size();
  fs::create_directories(out_dir);
  json parsed = json::array();
  for (const auto& path : images) {
    const auto scene = data::prepare_scene(report::read_grey_image(path), size);
    const auto parse = nn::parse_scene(model, scene, objects, threshold);
    // The input, then each level's islands over it, side by side, each pixel shown 4 x 4.
    auto enlarge = [](const torch::Tensor& t) { return t.repeat_interleave(4, 1).repeat_interleave(4, 2); };
    std::vector<torch::Tensor> tiles = {enlarge(scene.unsqueeze(0).expand({3, size, size}))};
    json levels = json::array();
    for (size_t l = 0; l < parse.islands.size(); ++l) {
      tiles.push_back(enlarge(report::colour_islands(parse.islands[l], scene)));
      levels.push_back({{"level", l}, {"islands", parse.island_ink[l].size()}, {"ink_pixels", parse.island_ink[l]}});
    }
    const std::string picture = (fs::path(out_dir) / (fs::path(path).stem().string() + "-islands.png")).string();
    report::write_file_atomic(picture, report::encode_png(report::image_grid(torch::stack(tiles), int64_t(tiles.size()))));
    json digits = json::array();
    const auto order = parse.class_probabilities.argsort(0, /*descending=*/true);
    for (int64_t i = 0; i < order.numel(); ++i) {
      const int64_t c = order[i].item<int64_t>();
      const double p = parse.class_probabilities[c].item<double>();
      if (p < 0.5 && i > 0) break;  // the digits present, and at least the likeliest one
      digits.push_back({{"class", c}, {"probability", p}});
    }
    parsed.push_back({{"image", path}, {"picture", picture}, {"digits", digits}, {"levels", levels}});
  }
  return parsed;
}

namespace {

// What the study trains on and scores on. Training keeps images and labels only; the masks stay
// with the held-out scenes, for scoring.
struct StudyScenes {
  TrainSet train;
  std::map<std::string, data::Scenes> tests;       // [layout], MNIST-test digits
  std::map<std::string, data::Scenes> validation;  // [layout] of the layouts that count, MNIST-train digits
  data::Scenes mnist_centred;                      // MNIST test digits, each centred on the 56 x 56 canvas
  torch::Tensor mnist_labels;
  int64_t mnist_available = 0;  // MNIST test digits there are (the study may score the first of them only)
};

StudyScenes study_scenes(const Config& config, const std::string& data_dir) {
  const auto train_digits = data::load_dataset("mnist", "train", data_dir);
  const auto test_digits = data::load_dataset("mnist", "test", data_dir);
  StudyScenes out;
  out.train = training_scenes(train_digits, config);
  for (size_t i = 0; i < kLayouts.size(); ++i) {
    out.tests[kLayouts[i]] = data::make_scenes(test_digits, config.get_int("glom.test_scenes"),
                                               data::SceneOptions().min_digits(2).max_digits(2).seed(1001 + i)
                                                   .layout(data::parse_scene_layout(kLayouts[i])));
  }
  // Validation scenes, for choosing a readout (level, iteration, clustering) without looking at the
  // test scenes: new scenes of MNIST-train digits (training saw the digits, not these scenes).
  // Only the layouts that count (separated scenes do not); seeds 2001 touching, 2002 overlapping.
  const int64_t validation_count = config.get_int("glom.validation_scenes");
  for (size_t i = 0; validation_count > 0 && i < kLayouts.size(); ++i) {
    if (kLayouts[i] == "separated") continue;
    out.validation[kLayouts[i]] = data::make_scenes(train_digits, validation_count,
                                                    data::SceneOptions().min_digits(2).max_digits(2).seed(2000 + i)
                                                        .layout(data::parse_scene_layout(kLayouts[i])));
  }
  const auto mnist_digits = test_digits.head(config.get_int("glom.mnist_test"));
  out.mnist_centred.images = torch::zeros({mnist_digits.size(), 1, 56, 56});
  out.mnist_centred.images.narrow(2, 14, 28).narrow(3, 14, 28).copy_(mnist_digits.images);
  out.mnist_labels = mnist_digits.labels;
  out.mnist_available = test_digits.size();
  return out;
}

// The study's settings that shape its rows.
struct StudyShape {
  int64_t levels = 0, iterations = 0, settle = 0, patch = 0;
  double threshold = 0;
  bool train_ablation = false, train_unshared = false;
  int64_t top() const { return levels - 1; }
};

StudyShape study_shape(const Config& config) {
  StudyShape s;
  s.levels = config.get_int("glom.levels");
  s.iterations = config.get_int("glom.iterations");
  // Test-time settling: 0 means the trained count.
  s.settle = std::max(s.iterations, config.get_int("glom.settle_iterations"));
  s.patch = config.get_int("glom.patch");
  s.threshold = config.get_double("glom.threshold");
  s.train_ablation = config.get_bool("glom.train_ablation");
  s.train_unshared = config.get_bool("glom.train_unshared");
  return s;
}

// One seed's models, scored: the main model, and the variants the config asks for.
struct SeedRun {
  int64_t seed = 0;
  std::map<std::string, LayoutScores> test, validation, trained_off, unshared;  // [layout]
  double mnist = 0, mnist_vote = 0, mnist_off = 0, mnist_unshared = 0;
  double train_seconds = 0, unshared_seconds = 0;
  int64_t parameters = 0, unshared_parameters = 0;
  std::map<std::string, torch::Tensor> pictures;  // [layout], when asked for
};

SeedRun run_seed(const Config& config, const StudyScenes& scenes, const StudyShape& shape, int64_t seed, const std::string& root,
                 bool fresh, report::MetricsWriter& metrics, bool draw_pictures) {
  SeedRun run;
  run.seed = seed;
  auto model = train_model(config, scenes.train, seed, Variant{}, fmt::format("{}/model-seed{}.pt", root, seed), fresh, metrics,
                           &run.train_seconds);
  run.parameters = nn::count_parameters(*model);
  for (const auto& layout : kLayouts) run.test[layout] = score_islands(model, scenes.tests.at(layout), shape.threshold, shape.settle);
  for (const auto& [layout, s] : scenes.validation) run.validation[layout] = score_islands(model, s, shape.threshold, shape.settle);
  const auto accuracy = mnist_accuracy(model, scenes.mnist_centred, scenes.mnist_labels);
  run.mnist = accuracy.head, run.mnist_vote = accuracy.vote;
  const auto final_top = [&](const std::string& layout) { return mean_of(run.test[layout].kmeans_ari[shape.iterations][shape.top()]); };
  spdlog::info("glom seed {}: top-level FG-ARI touching {:.3f} overlapping {:.3f} separated {:.3f}, MNIST {:.2f}%", seed,
               final_top("touching"), final_top("overlapping"), final_top("separated"), run.mnist);
  if (draw_pictures) {
    const std::vector<std::pair<std::string, int64_t>> shown = {{"touching", 4}, {"overlapping", 4}, {"separated", 2}};
    for (const auto& [layout, count] : shown) run.pictures[layout] = island_pictures(model, scenes.tests.at(layout), count, shape.levels);
  }
  if (shape.train_ablation) {
    double seconds = 0;
    auto off = train_model(config, scenes.train, seed, Variant{false, true}, fmt::format("{}/model-noattention-seed{}.pt", root, seed),
                           fresh, metrics, &seconds);
    for (const auto& layout : kLayouts) run.trained_off[layout] = score_islands(off, scenes.tests.at(layout), shape.threshold, shape.settle);
    run.mnist_off = mnist_accuracy(off, scenes.mnist_centred, scenes.mnist_labels).head;
  }
  if (shape.train_unshared) {
    auto separate = train_model(config, scenes.train, seed, Variant{true, false}, fmt::format("{}/model-unshared-seed{}.pt", root, seed),
                                fresh, metrics, &run.unshared_seconds);
    run.unshared_parameters = nn::count_parameters(*separate);
    for (const auto& layout : kLayouts) run.unshared[layout] = score_islands(separate, scenes.tests.at(layout), shape.threshold, shape.settle);
    run.mnist_unshared = mnist_accuracy(separate, scenes.mnist_centred, scenes.mnist_labels).head;
  }
  return run;
}

// One figure per seed, in seed order.
template <typename Get>
std::vector<double> over_seeds(const std::vector<SeedRun>& runs, Get&& get) {
  std::vector<double> v;
  for (const auto& run : runs) v.push_back(get(run));
  return v;
}

// Each seed's mean over the scenes of `layout` of one per-scene score of its main model.
template <typename Get>
std::vector<double> test_means(const std::vector<SeedRun>& runs, const std::string& layout, Get&& get) {
  return over_seeds(runs, [&](const SeedRun& r) { return mean_of(get(r.test.at(layout))); });
}

// The top level's FG-ARI of each readout, mean over seeds: [readout][layout].
struct Headlines {
  std::map<std::string, double> patch, pixel, spectral, centred, centred_pixel;
};

// The rows of one layout: GLOM's readouts, the baselines, the references and the ablations.
void add_layout_rows(json& rows, Headlines& headlines, const std::string& layout, const std::vector<SeedRun>& runs,
                     const json& baselines, const StudyShape& shape) {
  const int64_t top = shape.top(), iterations = shape.iterations;
  const auto v = test_means(runs, layout, [&](const LayoutScores& s) { return s.kmeans_ari[iterations][top]; });
  headlines.patch[layout] = mean_of(v);
  const bool counts = layout != "separated";
  rows.push_back(report::result_row("fg_ari_" + layout,
                                    fmt::format("FG-ARI, {} two-digit scenes: GLOM top-level islands (k-means, k = digits), "
                                                "mean of {} seeds (sd {:.3f}){}",
                                                layout, runs.size(), sd_of(v), counts ? "" : "; does not count"),
                                    counts ? json(0.80) : json(nullptr), finite_or_null(headlines.patch[layout]), "ARI"));
  const auto pixel = test_means(runs, layout, [&](const LayoutScores& s) { return s.pixel_ari[top]; });
  headlines.pixel[layout] = mean_of(pixel);
  rows.push_back(report::result_row("fg_ari_per_pixel_" + layout,
                                    fmt::format("  the same islands read out per pixel (embeddings interpolated between patch centres, "
                                                "nearest k-means centre), {} (sd {:.3f})", layout, sd_of(pixel)),
                                    nullptr, finite_or_null(headlines.pixel[layout]), "ARI"));
  const auto centred = test_means(runs, layout, [&](const LayoutScores& s) { return s.centred_ari; });
  const auto centred_pixel = test_means(runs, layout, [&](const LayoutScores& s) { return s.centred_pixel_ari; });
  headlines.centred[layout] = mean_of(centred);
  headlines.centred_pixel[layout] = mean_of(centred_pixel);
  rows.push_back(report::result_row("fg_ari_centred_" + layout,
                                    fmt::format("  the same islands, the image's mean ink embedding subtracted before the cosine "
                                                "k-means, {} (sd {:.3f})", layout, sd_of(centred)),
                                    nullptr, finite_or_null(headlines.centred[layout]), "ARI"));
  rows.push_back(report::result_row("fg_ari_centred_per_pixel_" + layout,
                                    fmt::format("  the same, centred and read out per pixel, {} (sd {:.3f})", layout, sd_of(centred_pixel)),
                                    nullptr, finite_or_null(headlines.centred_pixel[layout]), "ARI"));
  const auto imagined = test_means(runs, layout, [&](const LayoutScores& s) { return s.imagined_ari[top]; });
  rows.push_back(report::result_row("fg_ari_imagined_" + layout,
                                    fmt::format("  the same islands imagined per pixel (each island's mean embedding at every location, "
                                                "down the top-down nets to pixels; each ink pixel to the island imagining the most ink "
                                                "there), {} (sd {:.3f})", layout, sd_of(imagined)),
                                    nullptr, finite_or_null(mean_of(imagined)), "ARI"));
  const auto imagined_reference = test_means(runs, layout, [&](const LayoutScores& s) { return s.imagined_reference_ari; });
  rows.push_back(report::result_row("imagined_reference_" + layout,
                                    fmt::format("  reference: the same imagining from the masks' islands (ink patches grouped by "
                                                "majority digit), {} (sd {:.3f})", layout, sd_of(imagined_reference)),
                                    nullptr, finite_or_null(mean_of(imagined_reference)), "ARI"));
  const auto spectral = test_means(runs, layout, [&](const LayoutScores& s) { return s.spectral_ari[top]; });
  headlines.spectral[layout] = mean_of(spectral);
  rows.push_back(report::result_row("fg_ari_spectral_" + layout,
                                    fmt::format("  the same embeddings, islands by a normalised cut of the top level's agreement graph "
                                                "(its window and beta), {} (sd {:.3f})", layout, sd_of(spectral)),
                                    nullptr, finite_or_null(headlines.spectral[layout]), "ARI"));
  const auto classified = test_means(runs, layout, [&](const LayoutScores& s) { return s.class_ari; });
  rows.push_back(report::result_row("fg_ari_classifier_" + layout,
                                    fmt::format("  diagnostic, not islands: every ink patch labelled by the top level's class scores "
                                                "(the most probable of the k classes its image votes for), {} (sd {:.3f})",
                                                layout, sd_of(classified)),
                                    nullptr, finite_or_null(mean_of(classified)), "ARI"));
  rows.push_back(report::result_row("ink_components_" + layout, "  baseline: connected components of the ink, " + layout, nullptr,
                                    baselines["ink_components"], "ARI"));
  rows.push_back(report::result_row("kmeans_pixels_" + layout,
                                    fmt::format("  baseline: k-means on raw patch pixels + position (weight {}), {}",
                                                baselines["kmeans_position_weight"].get<double>(), layout),
                                    nullptr, baselines["kmeans_pixels_position"], "ARI"));
  rows.push_back(report::result_row("kmeans_pixels_per_pixel_" + layout,
                                    fmt::format("  baseline: the same k-means read out per pixel (weight {}), {}",
                                                baselines["kmeans_position_weight_per_pixel"].get<double>(), layout),
                                    nullptr, baselines["kmeans_pixels_position_per_pixel"], "ARI"));
  rows.push_back(report::result_row("spectral_pixels_" + layout,
                                    fmt::format("  baseline: a normalised cut of the raw patches' agreement graph (the same window, beta {}), {}",
                                                baselines["spectral_beta"].get<double>(), layout),
                                    nullptr, baselines["spectral_pixels"], "ARI"));
  rows.push_back(report::result_row("patch_reference_" + layout,
                                    fmt::format("  reference: every ink patch labelled with its majority digit from the masks (one label "
                                                "per {}x{} patch, perfectly chosen), {}", shape.patch, shape.patch, layout),
                                    nullptr, baselines["patch_reference"], "ARI"));
  rows.push_back(report::result_row("patch_reference_per_pixel_" + layout,
                                    "  reference: the same majority labels read out per pixel, " + layout, nullptr,
                                    baselines["patch_reference_per_pixel"], "ARI"));
  if (shape.settle > iterations) {
    const auto settled = test_means(runs, layout, [&](const LayoutScores& s) { return s.kmeans_ari[shape.settle][top]; });
    rows.push_back(report::result_row("fg_ari_settled_" + layout,
                                      fmt::format("  the same models settling for {} iterations at test time (trained with {}), {}", shape.settle,
                                                  iterations, layout),
                                      nullptr, finite_or_null(mean_of(settled)), "ARI"));
  }
  const auto thr = test_means(runs, layout, [&](const LayoutScores& s) { return s.threshold_ari[top]; });
  rows.push_back(report::result_row("fg_ari_threshold_" + layout,
                                    fmt::format("  GLOM top-level islands by cosine > {} + connected components, {}", shape.threshold, layout),
                                    nullptr, finite_or_null(mean_of(thr)), "ARI"));
  const auto abl = test_means(runs, layout, [&](const LayoutScores& s) { return s.ablation_ari[top]; });
  rows.push_back(report::result_row("fg_ari_attention_off_" + layout,
                                    "  ablation: same models, attention term switched off at test time, " + layout, nullptr,
                                    finite_or_null(mean_of(abl)), "ARI"));
  if (shape.train_ablation) {
    const auto tabl = over_seeds(runs, [&](const SeedRun& r) { return mean_of(r.trained_off.at(layout).kmeans_ari[iterations][top]); });
    rows.push_back(report::result_row("fg_ari_trained_without_attention_" + layout,
                                      "  ablation: models trained and run without the attention term, " + layout, nullptr,
                                      finite_or_null(mean_of(tabl)), "ARI"));
  }
}

// Each readout of GLOM's embeddings against the baselines read out the same way (ink components
// count against all), on the layouts that count.
void add_baseline_verdicts(json& rows, const Headlines& h, const json& baselines) {
  for (const auto& layout : {std::string("touching"), std::string("overlapping")}) {
    const json& b = baselines[layout];
    const double ink = b["ink_components"].get<double>();
    const std::vector<std::tuple<std::string, double, double>> readouts = {
        {"k-means per patch", h.patch.at(layout), b["kmeans_pixels_position"].get<double>()},
        {"per pixel", h.pixel.at(layout), b["kmeans_pixels_position_per_pixel"].get<double>()},
        {"normalised cut", h.spectral.at(layout), b["spectral_pixels"].get<double>()},
        // The baselines' k-means is Euclidean, which subtracting a mean does not change.
        {"centred", h.centred.at(layout), b["kmeans_pixels_position"].get<double>()},
        {"centred per pixel", h.centred_pixel.at(layout), b["kmeans_pixels_position_per_pixel"].get<double>()}};
    bool beats = true;
    std::vector<std::string> lost;
    for (const auto& [name, glom, baseline] : readouts) {
      if (glom > std::max(ink, baseline)) continue;
      beats = false;
      lost.push_back(fmt::format("{} {:.3f} vs {:.3f}", name, glom, std::max(ink, baseline)));
    }
    rows.push_back(report::result_row("beats_baselines_" + layout,
                                      "GLOM top level beats the best trivial baseline on " + layout + " scenes, each readout against its own",
                                      "yes", beats ? "yes" : fmt::format("no ({})", fmt::join(lost, "; ")), ""));
  }
}

// The readout chosen on the validation scenes, scored on the test scenes: a row per validated
// layout, and what was chosen (with the runners-up) per layout.
std::map<std::string, json> add_validated_rows(json& rows, const std::vector<SeedRun>& runs,
                                               const std::map<std::string, data::Scenes>& validation) {
  std::map<std::string, json> chosen;
  for (const auto& [layout, scenes] : validation) {
    std::vector<std::vector<std::pair<std::string, const std::vector<double>*>>> validated_by_seed, tested_by_seed;
    for (const auto& run : runs) {
      validated_by_seed.push_back(island_readouts(run.validation.at(layout)));
      tested_by_seed.push_back(island_readouts(run.test.at(layout)));
    }
    // Each seed's mean over scenes, for readout c.
    const auto mean_over_seeds = [&](const auto& by_seed, size_t c) {
      std::vector<double> v;
      for (const auto& readouts : by_seed) v.push_back(mean_of(*readouts[c].second));
      return v;
    };
    std::vector<std::pair<double, size_t>> ranked;
    for (size_t c = 0; c < validated_by_seed[0].size(); ++c) {
      const double mean = mean_of(mean_over_seeds(validated_by_seed, c));
      ranked.push_back({std::isfinite(mean) ? mean : -std::numeric_limits<double>::infinity(), c});  // NaN would break the sort
    }
    std::sort(ranked.begin(), ranked.end(), std::greater<>());
    const auto [validated, best] = ranked.front();
    const std::string& name = tested_by_seed[0][best].first;
    const auto test = mean_over_seeds(tested_by_seed, best);
    rows.push_back(report::result_row("fg_ari_validated_" + layout,
                                      fmt::format("  the readout chosen on {} validation scenes (new scenes of MNIST-train digits): {} "
                                                  "(validation {:.3f}), {} (sd {:.3f})",
                                                  scenes.size(), name, validated, layout, sd_of(test)),
                                      nullptr, finite_or_null(mean_of(test)), "ARI"));
    json runners_up = json::array();
    for (size_t r = 0; r < std::min<size_t>(5, ranked.size()); ++r) {
      runners_up.push_back({{"readout", tested_by_seed[0][ranked[r].second].first}, {"validation", finite_or_null(ranked[r].first)}});
    }
    chosen[layout] = {{"scenes", scenes.size()}, {"readout", name}, {"validation", finite_or_null(validated)},
                      {"test", finite_or_null(mean_of(test))}, {"best_on_validation", runners_up}};
  }
  return chosen;
}

// The top level's agreement, MNIST accuracy, size and cost; and the variant without weight sharing.
void add_summary_rows(json& rows, const std::vector<SeedRun>& runs, const Headlines& headlines, const StudyScenes& scenes,
                      const StudyShape& shape) {
  const int64_t top = shape.top();
  const auto wb = test_means(runs, "touching", [&](const LayoutScores& s) { return s.within_between[top]; });
  rows.push_back(report::result_row("within_minus_between", "Top level: within-digit minus between-digit cosine similarity, touching scenes",
                                    nullptr, finite_or_null(mean_of(wb)), "cosine"));
  const auto count = test_means(runs, "touching", [&](const LayoutScores& s) { return s.island_count[top]; });
  rows.push_back(report::result_row("islands_top",
                                    fmt::format("Top level: islands (cosine > {}) among ink patches, touching scenes (2 digits)", shape.threshold),
                                    nullptr, finite_or_null(mean_of(count)), "islands"));
  const auto mnist = over_seeds(runs, [](const SeedRun& r) { return r.mnist; });
  const auto mnist_vote = over_seeds(runs, [](const SeedRun& r) { return r.mnist_vote; });
  const int64_t mnist_count = scenes.mnist_centred.size();
  rows.push_back(report::result_row("mnist_top_level",
                                    fmt::format("MNIST test accuracy from the top level (MIL head), {} {} test digits centred on the canvas, "
                                                "mean of {} seeds (sd {:.2f})",
                                                mnist_count == scenes.mnist_available ? "all" : "first", mnist_count, runs.size(), sd_of(mnist)),
                                    98.0, mean_of(mnist), "%"));
  rows.push_back(report::result_row("mnist_top_level_vote",
                                    fmt::format("  the same models, the island's vote: every ink location's class log-probabilities summed (sd {:.2f})",
                                                sd_of(mnist_vote)),
                                    nullptr, mean_of(mnist_vote), "%"));
  if (shape.train_ablation) {
    rows.push_back(report::result_row("mnist_without_attention", "  the same, models trained without attention", nullptr,
                                      mean_of(over_seeds(runs, [](const SeedRun& r) { return r.mnist_off; })), "%"));
  }
  rows.push_back(report::result_row("parameters", "GLOM parameters (one set of column nets shared by all locations)", nullptr,
                                    runs.back().parameters, "parameters"));
  rows.push_back(report::result_row("train_seconds", "  training seconds per seed (wall clock on the shared machine)", nullptr,
                                    finite_or_null(mean_of(over_seeds(runs, [](const SeedRun& r) { return r.train_seconds; }))), "s"));
  if (!shape.train_unshared) return;
  // Issue 6: the same GLOM with nothing shared between columns. Its columns can learn from each
  // other only through the consensus: the attention term and the island regulariser, which
  // distils every column's bottom-up and top-down predictions towards it.
  const std::string what = "GLOM without weight sharing (each column its own nets; they learn from each other only by distilling towards the consensus)";
  rows.push_back(report::result_row("unshared_parameters", what + ": parameters", nullptr, runs.back().unshared_parameters, "parameters"));
  rows.push_back(report::result_row("unshared_train_seconds", "  its training seconds per seed", nullptr,
                                    finite_or_null(mean_of(over_seeds(runs, [](const SeedRun& r) { return r.unshared_seconds; }))), "s"));
  for (const auto& layout : kLayouts) {
    const auto v = over_seeds(runs, [&](const SeedRun& r) { return mean_of(r.unshared.at(layout).kmeans_ari[shape.iterations][top]); });
    rows.push_back(report::result_row("unshared_fg_ari_" + layout,
                                      fmt::format("  its FG-ARI, {} scenes (shared weights: {:.3f})", layout, headlines.patch.at(layout)),
                                      nullptr, finite_or_null(mean_of(v)), "ARI"));
  }
  const auto unshared_wb = over_seeds(runs, [&](const SeedRun& r) { return mean_of(r.unshared.at("touching").within_between[top]); });
  rows.push_back(report::result_row("unshared_within_minus_between", "  its top level: within-digit minus between-digit cosine, touching scenes",
                                    nullptr, finite_or_null(mean_of(unshared_wb)), "cosine"));
  rows.push_back(report::result_row("unshared_mnist", fmt::format("  its MNIST accuracy from the top level (shared weights: {:.1f}%)", mean_of(mnist)),
                                    nullptr, mean_of(over_seeds(runs, [](const SeedRun& r) { return r.mnist_unshared; })), "%"));
}

// Per level and per iteration, one layout, mean over seeds; each seed's levels; the top level's
// scenes of every seed pooled.
json layout_detail(const std::string& layout, const std::vector<SeedRun>& runs, const StudyShape& shape, const json& baselines) {
  const int64_t levels = shape.levels, iterations = shape.iterations, top = shape.top();
  const auto seed_mean = [&](auto&& get) { return mean_of(test_means(runs, layout, get)); };
  std::vector<std::vector<double>> per(shape.settle + 1, std::vector<double>(levels));
  std::vector<double> pix(levels), imagined(levels), spec(levels), thr(levels), abl(levels), wb(levels), count(levels), off(levels);
  for (int64_t t = 0; t <= shape.settle; ++t) {
    for (int64_t l = 0; l < levels; ++l) per[t][l] = seed_mean([&](const LayoutScores& s) { return s.kmeans_ari[t][l]; });
  }
  for (int64_t l = 0; l < levels; ++l) {
    pix[l] = seed_mean([&](const LayoutScores& s) { return s.pixel_ari[l]; });
    imagined[l] = seed_mean([&](const LayoutScores& s) { return s.imagined_ari[l]; });
    spec[l] = seed_mean([&](const LayoutScores& s) { return s.spectral_ari[l]; });
    thr[l] = seed_mean([&](const LayoutScores& s) { return s.threshold_ari[l]; });
    abl[l] = seed_mean([&](const LayoutScores& s) { return s.ablation_ari[l]; });
    wb[l] = seed_mean([&](const LayoutScores& s) { return s.within_between[l]; });
    count[l] = seed_mean([&](const LayoutScores& s) { return s.island_count[l]; });
    off[l] = shape.train_ablation
                 ? mean_of(over_seeds(runs, [&](const SeedRun& r) { return mean_of(r.trained_off.at(layout).kmeans_ari[iterations][l]); }))
                 : std::nan("");
  }
  json per_seed = json::array();
  std::vector<double> top_patch, top_pixel;
  for (const auto& run : runs) {
    const auto& s = run.test.at(layout);
    std::vector<double> v(levels);
    for (int64_t l = 0; l < levels; ++l) v[l] = mean_of(s.kmeans_ari[iterations][l]);
    per_seed.push_back({{"seed", run.seed}, {"fg_ari_per_level", matrix_json({v})[0]}});
    top_patch.insert(top_patch.end(), s.kmeans_ari[iterations][top].begin(), s.kmeans_ari[iterations][top].end());
    top_pixel.insert(top_pixel.end(), s.pixel_ari[top].begin(), s.pixel_ari[top].end());
  }
  return {{"fg_ari_iteration_level", matrix_json(per)},
          {"top_level_scenes", {{"per_patch", scene_distribution(top_patch)}, {"per_pixel", scene_distribution(top_pixel)}}},
          {"fg_ari_per_pixel_level", matrix_json({pix})[0]},
          {"fg_ari_imagined_level", matrix_json({imagined})[0]},
          {"fg_ari_spectral_level", matrix_json({spec})[0]},
          {"fg_ari_threshold_level", matrix_json({thr})[0]},
          {"fg_ari_attention_off_level", matrix_json({abl})[0]},
          {"fg_ari_trained_without_attention_level", matrix_json({off})[0]},
          {"within_minus_between_level", matrix_json({wb})[0]},
          {"islands_level", matrix_json({count})[0]},
          {"per_seed", per_seed},
          {"baselines", baselines}};
}

// What the model was, how it was trained and how the islands are read out, in words.
json study_notes(const Config& config, const StudyShape& shape) {
  json notes = json::array();
  notes.push_back(fmt::format("Model: {} levels x {} dims, {} iterations, {}x{} patches (a {}x{} grid), radii {}, beta {} x {}^level; "
                              "trained {} steps x {} scenes per seed on {} MNIST-train scenes ({:.0f}% single digits, the rest 2-3 digits {}), "
                              "with denoising, the island regulariser, InfoNCE push-apart and image-level multi-labels (MIL). No masks in training.",
                              shape.levels, config.get_int("glom.dim"), shape.iterations, shape.patch, shape.patch, 56 / shape.patch,
                              56 / shape.patch, fmt::join(config.get_int_list("glom.radii"), ","), config.get_double("glom.beta"),
                              config.get_double("glom.beta_growth"), config.get_int("glom.steps"), config.get_int("glom.batch"),
                              config.get_int("glom.train_scenes"), 100 * config.get_double("glom.single_fraction"),
                              config.get_string("glom.train_layout") == "any" ? std::string("at random positions")
                                                                              : "laid out " + config.get_string("glom.train_layout")));
  if (!config.get_string("glom.init_from").empty()) {
    notes.push_back(fmt::format("Continued: each model started from the same seed's model in {} (its own training config is kept "
                                "beside it), so the steps above come on top of that training, with a new cosine decay from "
                                "learning rate {}.",
                                config.get_string("glom.init_from"), config.get_double("glom.lr")));
  }
  notes.push_back("FG-ARI: islands of the ink patches (largest pixel > 0.3) from spherical k-means with k = the number of digits "
                  "(told, as Slot Attention is told its slots), mapped to the patch's pixels, against the digit masks; background "
                  "pixels excluded. Test scenes: two digits of different classes from MNIST test. Per pixel: each pixel of an ink "
                  "patch joins the k-means centre nearest to the embedding interpolated at that pixel between the centres of the "
                  "ink patches around it; the baselines and the majority reference are read out the same way beside it. "
                  "Centred: the mean embedding of the image's ink patches is subtracted before the cosine k-means (a "
                  "component that every location shares dominates the cosine without saying which digit a location "
                  "belongs to); the baselines' k-means is Euclidean, which a shift does not change. Imagined per pixel: each "
                  "k-means island's mean embedding, placed at every location, is read down through the top-down nets (with "
                  "the location's position) and the decoder to the pixels it predicts; each pixel of an ink patch joins the "
                  "island that predicts the most ink there, so two digits crossing inside one patch can be told apart.");
  if (const int64_t validation_count = config.get_int("glom.validation_scenes"); validation_count > 0) {
    notes.push_back(fmt::format("Validated readout: every island readout (k-means per patch at each level and iteration, per pixel, by "
                                "normalised cut and imagined per pixel at each level, centred at the top level) is scored on {} new two-digit scenes "
                                "per layout of MNIST-train digits (training saw the digits, not these scenes); the best there is "
                                "reported on the test scenes.",
                                validation_count));
  }
  if (shape.settle > shape.iterations) {
    notes.push_back(fmt::format("Settling: at test time the models also run {} iterations (trained with {}); the per-iteration FG-ARI "
                                "after iteration {} is that settling. Every other score is taken at iteration {}.",
                                shape.settle, shape.iterations, shape.iterations, shape.iterations));
  }
  return notes;
}

// report.html: the notes, the rows, the per-level tables, the island pictures and the loss curves.
void write_study_page(const std::string& root, const std::string& profile, const json& notes, const json& rows, const json& detail,
                      const StudyShape& shape, const SeedRun& pictured) {
  report::HtmlReport page("GLOM islands on multi-digit MNIST scenes (profile " + profile + ")");
  for (const auto& note : notes) page.paragraph(note.get<std::string>());
  page.table(report::result_cells(rows, "target"));
  const auto cell = [](const json& v) { return v.is_null() ? std::string("-") : fmt::format("{:.3f}", v.get<double>()); };
  for (const auto& layout : kLayouts) {
    page.heading("FG-ARI per iteration and level: " + layout + " scenes (mean of seeds)");
    std::vector<std::vector<std::string>> cells;
    std::vector<std::string> header = {"iteration"};
    for (int64_t l = 0; l < shape.levels; ++l) header.push_back(fmt::format("level {}", l));
    cells.push_back(header);
    for (int64_t t = 0; t <= shape.settle; ++t) {
      std::vector<std::string> row = {t == 0                   ? "start (bottom-up)"
                                      : t > shape.iterations ? std::to_string(t) + " (settling)"
                                                             : std::to_string(t)};
      for (int64_t l = 0; l < shape.levels; ++l) row.push_back(cell(detail[layout]["fg_ari_iteration_level"][t][l]));
      cells.push_back(row);
    }
    for (const char* key : {"fg_ari_per_pixel_level", "fg_ari_spectral_level", "fg_ari_threshold_level", "fg_ari_attention_off_level",
                            "fg_ari_trained_without_attention_level", "within_minus_between_level", "islands_level"}) {
      std::vector<std::string> row = {key};
      for (int64_t l = 0; l < shape.levels; ++l) row.push_back(cell(detail[layout][key][l]));
      cells.push_back(row);
    }
    page.table(cells);
  }
  page.heading("Islands over the input (seed " + std::to_string(pictured.seed) + ")");
  page.paragraph("Each block is one scene: the first row shows the digit masks, then one row per level (0 at the top), one column "
                 "per iteration (start, then 1..T). Colours are the k-means islands of the ink patches; grey is background.");
  for (const auto& layout : {"touching", "overlapping", "separated"}) page.image(std::string(layout) + " scenes", pictured.pictures.at(layout), 2);
  std::vector<report::Series> curves;
  for (const auto& record : report::read_metrics(root + "/metrics.jsonl")) {
    const std::string name = fmt::format("seed {} {} loss", record["seed"].get<int64_t>(), record.value("variant", "main"));
    auto it = std::find_if(curves.begin(), curves.end(), [&](const report::Series& c) { return c.name == name; });
    if (it == curves.end()) curves.push_back({name, {}, {}}), it = curves.end() - 1;
    it->x.push_back(record["step"].get<double>());
    it->y.push_back(record["loss"].get<double>());
  }
  if (!curves.empty()) page.line_chart("training loss", "step", "loss", curves);
  page.save(root + "/report.html");
}

}  // namespace

json run_glom_study(const ExperimentOptions& options) {
  if (options.profile != "quick" && options.profile != "paper") {
    throw InputError("--profile: unknown profile '" + options.profile + "' (known: quick, paper)");
  }
  const std::string config_path = options.configs_dir + "/glom/" + options.profile + ".yaml";
  if (!fs::exists(config_path)) throw InputError("experiment glom: config file not found: " + config_path);
  Config config = Config::load(config_path);
  for (const auto& o : options.overrides) config.set(o);
  const auto seeds = config.get_int_list("glom.seeds");
  if (seeds.empty()) throw InputError("glom.seeds: no seeds (give at least one, e.g. --set \"glom.seeds=[1]\")");
  if (config.get_int("train.threads") > 0) set_compute_threads(static_cast<int>(config.get_int("train.threads")));
  const std::string root = options.runs_dir + "/glom-" + options.profile;
  if (options.fresh && fs::exists(root)) fs::remove_all(root);
  fs::create_directories(root);
  report::write_file_atomic(root + "/config.yaml", config.to_yaml());
  const auto start = Clock::now();
  const auto scenes = study_scenes(config, data::resolve_data_dir(options.data_dir.empty() ? config.get_string("data.dir") : options.data_dir));
  spdlog::info("glom: {} training scenes, {} test scenes per layout, {:.1f} s", scenes.train.images.size(0),
               config.get_int("glom.test_scenes"), seconds_since(start));

  const auto shape = study_shape(config);
  json baselines;
  const auto radii = config.get_int_list("glom.radii");
  const int64_t top_radius = radii.back() < 0 ? 56 / shape.patch : radii.back();
  for (const auto& layout : kLayouts) baselines[layout] = score_baselines(scenes.tests.at(layout), shape.patch, top_radius);

  report::MetricsWriter metrics(root + "/metrics.jsonl");
  std::vector<SeedRun> runs;
  for (const int64_t seed : seeds) {
    runs.push_back(run_seed(config, scenes, shape, seed, root, options.fresh, metrics, /*draw_pictures=*/runs.empty()));
  }

  // Rows: top level, final iteration, mean over seeds of each seed's mean over scenes.
  json rows = json::array(), detail = json::object();
  Headlines headlines;
  for (const auto& layout : kLayouts) add_layout_rows(rows, headlines, layout, runs, baselines[layout], shape);
  add_baseline_verdicts(rows, headlines, baselines);
  const auto chosen_readouts = add_validated_rows(rows, runs, scenes.validation);
  add_summary_rows(rows, runs, headlines, scenes, shape);
  for (const auto& layout : kLayouts) {
    detail[layout] = layout_detail(layout, runs, shape, baselines[layout]);
    if (chosen_readouts.count(layout)) detail[layout]["validated_readout"] = chosen_readouts.at(layout);
  }

  const json notes = study_notes(config, shape);
  json results = report::results_record("glom", "GLOM islands on multi-digit MNIST scenes (Hinton 2021)", options.profile, options.command,
                                        seconds_since(start), rows);
  results["notes"] = notes;
  results["detail"] = detail;
  results["train_seconds_per_seed"] = over_seeds(runs, [](const SeedRun& r) { return r.train_seconds; });
  report::save_results(results, root, options.results_path);

  std::cout << "\nGLOM islands, profile " << options.profile << " (runs in " << root << ")\n\n"
            << report::result_rows_markdown(rows, "target") << "\n";
  if (config.get_int("glom.steps") < 10000) {
    // The short budgets show the machinery; a reader must not take their figures for the study's.
    std::cout << fmt::format(
        "{} training steps show the machinery, not the result. The figures of docs/guide/glom.md need 10,000 steps on\n"
        "60,000 scenes, about 65 minutes per seed on one core:\n"
        "  distillery experiment glom --profile quick --set glom.steps=10000 --set glom.train_ablation=false \\\n"
        "    --set glom.train_scenes=60000 --set glom.test_scenes=500 --set glom.validation_scenes=500 \\\n"
        "    --set 'glom.radii=[1, 1, 2]' --set 'glom.seeds=[1]'\n",
        config.get_int("glom.steps"));
  }
  write_study_page(root, options.profile, notes, rows, detail, shape, runs.front());
  return results;
}

}  // namespace distillery::experiments
