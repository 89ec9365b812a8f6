#include "distillery/data/scenes.h"

#include <fmt/format.h>

#include <algorithm>
#include <random>
#include <vector>

#include "distillery/error.h"

namespace distillery::data {

SceneLayout parse_scene_layout(const std::string& text, const std::string& field) {
  if (text == "any") return SceneLayout::Any;
  if (text == "separated") return SceneLayout::Separated;
  if (text == "touching") return SceneLayout::Touching;
  if (text == "overlapping") return SceneLayout::Overlapping;
  throw InputError(fmt::format("{}: unknown scene layout '{}' (known: any, separated, touching, overlapping)", field, text));
}

std::string scene_layout_name(SceneLayout layout) {
  switch (layout) {
    case SceneLayout::Any: return "any";
    case SceneLayout::Separated: return "separated";
    case SceneLayout::Touching: return "touching";
    case SceneLayout::Overlapping: return "overlapping";
  }
  return "?";
}

namespace {

// One digit placed on the canvas: its pixels (row-major side x side) and top-left corner.
struct Placed {
  const float* pixels;
  int64_t row, col;
};

struct PairStats {
  int64_t ink_a = 0, ink_b = 0, overlap = 0;
  int64_t min_distance = 1 << 30;  // Chebyshev distance between the nearest ink pixels
};

// Ink statistics of two placed digits; distances are only resolved up to `horizon`.
PairStats pair_stats(const Placed& a, const Placed& b, int64_t side, float threshold, int64_t horizon) {
  PairStats s;
  std::vector<std::pair<int64_t, int64_t>> ink_a, ink_b;
  for (int64_t r = 0; r < side; ++r) {
    for (int64_t c = 0; c < side; ++c) {
      if (a.pixels[r * side + c] > threshold) ink_a.emplace_back(a.row + r, a.col + c);
      if (b.pixels[r * side + c] > threshold) ink_b.emplace_back(b.row + r, b.col + c);
    }
  }
  s.ink_a = ink_a.size();
  s.ink_b = ink_b.size();
  // Canvas-sized occupancy of b, to look up overlaps and neighbourhoods.
  const int64_t extent = std::max(a.row, b.row) + side + horizon + 1, width = std::max(a.col, b.col) + side + horizon + 1;
  std::vector<uint8_t> grid_b(extent * width, 0);
  for (auto [r, c] : ink_b) grid_b[r * width + c] = 1;
  for (auto [r, c] : ink_a) {
    if (grid_b[r * width + c]) {
      ++s.overlap;
      s.min_distance = 0;
      continue;
    }
    for (int64_t d = 1; d <= std::min<int64_t>(horizon, s.min_distance - 1); ++d) {
      bool found = false;
      for (int64_t dr = -d; dr <= d && !found; ++dr) {
        for (int64_t dc = -d; dc <= d && !found; ++dc) {
          if (std::max(std::abs(dr), std::abs(dc)) != d) continue;
          const int64_t rr = r + dr, cc = c + dc;
          if (rr >= 0 && cc >= 0 && rr < extent && cc < width && grid_b[rr * width + cc]) found = true;
        }
      }
      if (found) {
        s.min_distance = std::min(s.min_distance, d);
        break;
      }
    }
  }
  return s;
}

bool pair_ok(const PairStats& s, SceneLayout layout, const SceneOptions& o) {
  const double smaller = std::max<int64_t>(1, std::min(s.ink_a, s.ink_b));
  const double shared = s.overlap / smaller;
  switch (layout) {
    case SceneLayout::Any: return true;
    case SceneLayout::Separated: return s.min_distance > o.separation_gap();
    case SceneLayout::Touching: return s.min_distance <= 1 && shared <= o.touch_overlap();
    case SceneLayout::Overlapping: return shared >= o.overlap_min() && shared <= o.overlap_max();
  }
  return false;
}

}  // namespace

Scenes make_scenes(const Dataset& digits, int64_t count, const SceneOptions& options) {
  TORCH_CHECK(digits.images.dim() == 4 && digits.images.size(1) == 1 && digits.images.size(2) == digits.images.size(3),
              "make_scenes: digits must be [M, 1, S, S], got ", digits.images.sizes());
  const int64_t side = digits.images.size(2), canvas = options.canvas();
  if (canvas < side) throw InputError(fmt::format("scenes: canvas = {} is smaller than the digits ({})", canvas, side));
  if (options.min_digits() < 1 || options.max_digits() < options.min_digits() || options.max_digits() > 10) {
    throw InputError(fmt::format("scenes: digits per scene must satisfy 1 <= min_digits ({}) <= max_digits ({}) <= 10",
                                 options.min_digits(), options.max_digits()));
  }
  if (digits.size() == 0) throw InputError("scenes: no source digits");
  const auto images = digits.images.to(torch::kFloat32).contiguous();
  const auto labels = digits.labels.to(torch::kInt64).contiguous();
  const float* pixels = images.data_ptr<float>();
  const int64_t* digit_labels = labels.data_ptr<int64_t>();
  const float threshold = static_cast<float>(options.ink_threshold());
  const int64_t horizon = options.separation_gap() + 1;

  Scenes out;
  out.images = torch::zeros({count, 1, canvas, canvas});
  out.labels = torch::zeros({count, 10});
  out.masks = torch::zeros({count, canvas, canvas}, torch::kInt64);
  out.classes = torch::full({count, options.max_digits()}, -1, torch::kInt64);
  out.num_digits = torch::zeros({count}, torch::kInt64);
  auto image_acc = out.images.accessor<float, 4>();
  auto label_acc = out.labels.accessor<float, 2>();
  auto mask_acc = out.masks.accessor<int64_t, 3>();
  auto class_acc = out.classes.accessor<int64_t, 2>();
  auto count_acc = out.num_digits.accessor<int64_t, 1>();

  std::mt19937_64 rng(options.seed());
  std::uniform_int_distribution<int64_t> pick_digit(0, digits.size() - 1);
  std::uniform_int_distribution<int64_t> pick_count(options.min_digits(), options.max_digits());
  std::uniform_int_distribution<int64_t> pick_offset(0, canvas - side);
  const int64_t max_redraws = 1000;

  for (int64_t n = 0; n < count; ++n) {
    std::vector<Placed> placed;
    std::vector<int64_t> classes;
    for (int64_t redraw = 0;; ++redraw) {
      if (redraw >= max_redraws) {
        throw InputError(fmt::format("scenes: layout '{}' could not be met in {} draws (canvas {}, digits {}..{})",
                                     scene_layout_name(options.layout()), max_redraws, canvas, options.min_digits(),
                                     options.max_digits()));
      }
      placed.clear();
      classes.clear();
      const int64_t k = pick_count(rng);
      bool failed = false;
      for (int64_t d = 0; d < k && !failed; ++d) {
        int64_t index = pick_digit(rng);
        if (options.distinct_classes()) {
          for (int tries = 0; tries < 100 && std::count(classes.begin(), classes.end(), digit_labels[index]) > 0; ++tries) {
            index = pick_digit(rng);
          }
          if (std::count(classes.begin(), classes.end(), digit_labels[index]) > 0) {
            failed = true;
            break;
          }
        }
        const float* digit = pixels + index * side * side;
        bool ok = false;
        for (int64_t attempt = 0; attempt < options.max_attempts() && !ok; ++attempt) {
          Placed candidate{digit, pick_offset(rng), pick_offset(rng)};
          if (k == 1 && options.centre_single()) candidate.row = candidate.col = (canvas - side) / 2;
          if (placed.empty()) {
            ok = true;
          } else {
            // Separated: apart from every digit. Touching / overlapping: that relation with at
            // least one digit and no more than touching-level overlap... with none beyond overlap_max.
            bool any_relation = false, all_allowed = true;
            for (const auto& other : placed) {
              const auto stats = pair_stats(candidate, other, side, threshold, horizon);
              const bool related = pair_ok(stats, options.layout(), options);
              any_relation = any_relation || related;
              const double smaller = std::max<int64_t>(1, std::min(stats.ink_a, stats.ink_b));
              if (options.layout() == SceneLayout::Separated && !related) all_allowed = false;
              if (options.layout() != SceneLayout::Any && stats.overlap / smaller > options.overlap_max()) all_allowed = false;
            }
            ok = any_relation && all_allowed;
          }
          if (ok) {
            placed.push_back(candidate);
            classes.push_back(digit_labels[index]);
          }
        }
        if (!ok) failed = true;
      }
      if (!failed) break;
    }
    // Paint: image = pixelwise max; mask = the digit with the most ink, if above threshold.
    for (int64_t r = 0; r < canvas; ++r) {
      for (int64_t c = 0; c < canvas; ++c) {
        float best = 0;
        int64_t owner = 0;
        for (size_t d = 0; d < placed.size(); ++d) {
          const int64_t rr = r - placed[d].row, cc = c - placed[d].col;
          if (rr < 0 || cc < 0 || rr >= side || cc >= side) continue;
          const float v = placed[d].pixels[rr * side + cc];
          if (v > best) {
            best = v;
            owner = static_cast<int64_t>(d) + 1;
          }
        }
        image_acc[n][0][r][c] = best;
        mask_acc[n][r][c] = best > threshold ? owner : 0;
      }
    }
    for (size_t d = 0; d < classes.size(); ++d) {
      class_acc[n][d] = classes[d];
      label_acc[n][classes[d]] = 1.0f;
    }
    count_acc[n] = static_cast<int64_t>(placed.size());
  }
  return out;
}

}  // namespace distillery::data
