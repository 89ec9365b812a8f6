#include "distillery/nn/islands.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <numeric>
#include <random>

namespace distillery::nn {

namespace {

double pairs(double n) { return n * (n - 1) / 2.0; }

struct UnionFind {
  std::vector<int64_t> parent;
  explicit UnionFind(int64_t n) : parent(n) { std::iota(parent.begin(), parent.end(), 0); }
  int64_t find(int64_t a) {
    while (parent[a] != a) a = parent[a] = parent[parent[a]];
    return a;
  }
  void unite(int64_t a, int64_t b) { parent[find(a)] = find(b); }
  // Labels 0..I-1 in order of first appearance.
  std::vector<int64_t> labels() {
    std::map<int64_t, int64_t> names;
    std::vector<int64_t> out(parent.size());
    for (size_t i = 0; i < parent.size(); ++i) {
      const auto root = find(static_cast<int64_t>(i));
      auto it = names.find(root);
      if (it == names.end()) it = names.emplace(root, static_cast<int64_t>(names.size())).first;
      out[i] = it->second;
    }
    return out;
  }
};

torch::Tensor to_tensor(const std::vector<int64_t>& v) { return torch::tensor(v, torch::kInt64); }

}  // namespace

double adjusted_rand_index(const torch::Tensor& truth, const torch::Tensor& predicted) {
  TORCH_CHECK(truth.dim() == 1 && predicted.dim() == 1 && truth.size(0) == predicted.size(0),
              "adjusted_rand_index: labellings must be [M] and [M], got ", truth.sizes(), " and ", predicted.sizes());
  const auto a = truth.to(torch::kInt64).contiguous(), b = predicted.to(torch::kInt64).contiguous();
  const int64_t m = a.size(0);
  const int64_t* pa = a.data_ptr<int64_t>();
  const int64_t* pb = b.data_ptr<int64_t>();
  std::map<std::pair<int64_t, int64_t>, double> cells;
  std::map<int64_t, double> rows, cols;
  for (int64_t i = 0; i < m; ++i) {
    cells[{pa[i], pb[i]}] += 1;
    rows[pa[i]] += 1;
    cols[pb[i]] += 1;
  }
  double index = 0, sum_rows = 0, sum_cols = 0;
  for (const auto& [key, count] : cells) index += pairs(count);
  for (const auto& [key, count] : rows) sum_rows += pairs(count);
  for (const auto& [key, count] : cols) sum_cols += pairs(count);
  const double total = pairs(static_cast<double>(m));
  if (total == 0) return 1.0;
  const double expected = sum_rows * sum_cols / total;
  const double maximum = 0.5 * (sum_rows + sum_cols);
  if (maximum - expected == 0) return 1.0;
  return (index - expected) / (maximum - expected);
}

double foreground_ari(const torch::Tensor& truth, const torch::Tensor& predicted) {
  TORCH_CHECK(truth.sizes() == predicted.sizes(), "foreground_ari: truth ", truth.sizes(), " and prediction ",
              predicted.sizes(), " differ in shape");
  const auto fg = truth.reshape({-1}).ne(0);
  if (!fg.any().item<bool>()) return std::numeric_limits<double>::quiet_NaN();
  return adjusted_rand_index(truth.reshape({-1}).masked_select(fg), predicted.reshape({-1}).masked_select(fg));
}

torch::Tensor kmeans(const torch::Tensor& features, int64_t k, uint64_t seed, bool cosine, int64_t restarts,
                     int64_t max_iterations) {
  TORCH_CHECK(features.dim() == 2, "kmeans: features must be [M, F], got ", features.sizes());
  TORCH_CHECK(k >= 1, "kmeans: k must be >= 1, got ", k);
  auto x = features.to(torch::kFloat64).contiguous();
  if (cosine) x = x / x.norm(2, 1, true).clamp_min(1e-12);
  x = x.contiguous();
  const int64_t m = x.size(0), f = x.size(1);
  if (m == 0) return torch::zeros({0}, torch::kInt64);
  k = std::min(k, m);
  const double* px = x.data_ptr<double>();
  auto dist2 = [&](const double* a, const double* b) {
    double s = 0;
    for (int64_t j = 0; j < f; ++j) s += (a[j] - b[j]) * (a[j] - b[j]);
    return s;
  };
  std::mt19937_64 rng(seed);
  std::vector<int64_t> best(m, 0);
  double best_inertia = std::numeric_limits<double>::infinity();
  for (int64_t restart = 0; restart < std::max<int64_t>(1, restarts); ++restart) {
    // k-means++ seeding.
    std::vector<double> centres(k * f);
    std::uniform_int_distribution<int64_t> first(0, m - 1);
    const int64_t start = first(rng);
    std::copy(px + start * f, px + start * f + f, centres.begin());
    std::vector<double> nearest(m, std::numeric_limits<double>::infinity());
    for (int64_t c = 1; c < k; ++c) {
      double sum = 0;
      for (int64_t i = 0; i < m; ++i) {
        nearest[i] = std::min(nearest[i], dist2(px + i * f, centres.data() + (c - 1) * f));
        sum += nearest[i];
      }
      int64_t pick = 0;
      if (sum > 0) {
        double u = std::uniform_real_distribution<double>(0, sum)(rng);
        for (pick = 0; pick < m - 1 && (u -= nearest[pick]) > 0; ++pick) {
        }
      } else {
        pick = first(rng);
      }
      std::copy(px + pick * f, px + pick * f + f, centres.begin() + c * f);
    }
    std::vector<int64_t> assign(m, -1);
    double inertia = 0;
    for (int64_t it = 0; it < max_iterations; ++it) {
      bool changed = false;
      inertia = 0;
      for (int64_t i = 0; i < m; ++i) {
        int64_t arg = 0;
        double low = std::numeric_limits<double>::infinity();
        for (int64_t c = 0; c < k; ++c) {
          const double d = dist2(px + i * f, centres.data() + c * f);
          if (d < low) low = d, arg = c;
        }
        inertia += low;
        if (assign[i] != arg) assign[i] = arg, changed = true;
      }
      if (!changed) break;
      std::vector<double> sums(k * f, 0.0);
      std::vector<int64_t> counts(k, 0);
      for (int64_t i = 0; i < m; ++i) {
        ++counts[assign[i]];
        for (int64_t j = 0; j < f; ++j) sums[assign[i] * f + j] += px[i * f + j];
      }
      for (int64_t c = 0; c < k; ++c) {
        if (counts[c] == 0) continue;  // an empty cluster keeps its centre
        for (int64_t j = 0; j < f; ++j) centres[c * f + j] = sums[c * f + j] / counts[c];
      }
    }
    if (inertia < best_inertia) best_inertia = inertia, best = assign;
  }
  return to_tensor(best);
}

torch::Tensor threshold_islands(const torch::Tensor& embeddings, int64_t height, int64_t width, double threshold) {
  TORCH_CHECK(embeddings.dim() == 2 && embeddings.size(0) == height * width, "threshold_islands: embeddings must be [",
              height * width, ", D], got ", embeddings.sizes());
  auto x = embeddings.to(torch::kFloat64);
  x = (x / x.norm(2, 1, true).clamp_min(1e-12)).contiguous();
  const int64_t d = x.size(1);
  const double* px = x.data_ptr<double>();
  auto cosine = [&](int64_t a, int64_t b) {
    double s = 0;
    for (int64_t j = 0; j < d; ++j) s += px[a * d + j] * px[b * d + j];
    return s;
  };
  UnionFind uf(height * width);
  for (int64_t r = 0; r < height; ++r) {
    for (int64_t c = 0; c < width; ++c) {
      const int64_t i = r * width + c;
      if (c + 1 < width && cosine(i, i + 1) > threshold) uf.unite(i, i + 1);
      if (r + 1 < height && cosine(i, i + width) > threshold) uf.unite(i, i + width);
    }
  }
  return to_tensor(uf.labels());
}

std::vector<int64_t> island_sizes(const torch::Tensor& labels) {
  std::map<int64_t, int64_t> counts;
  const auto l = labels.to(torch::kInt64).contiguous();
  for (int64_t i = 0; i < l.numel(); ++i) ++counts[l.data_ptr<int64_t>()[i]];
  std::vector<int64_t> sizes;
  for (const auto& [label, count] : counts) sizes.push_back(count);
  std::sort(sizes.rbegin(), sizes.rend());
  return sizes;
}

torch::Tensor patch_labels_to_pixels(const torch::Tensor& labels, int64_t grid, int64_t patch) {
  TORCH_CHECK(labels.numel() == grid * grid, "patch_labels_to_pixels: ", labels.numel(), " labels for a ", grid, " x ",
              grid, " grid");
  return labels.to(torch::kInt64)
      .reshape({grid, 1, grid, 1})
      .expand({grid, patch, grid, patch})
      .reshape({grid * patch, grid * patch});
}

torch::Tensor ink_patches(const torch::Tensor& image, int64_t patch, double threshold) {
  TORCH_CHECK(image.dim() == 2 && image.size(0) % patch == 0 && image.size(1) % patch == 0,
              "ink_patches: image must be [H, W] with sides a multiple of ", patch, ", got ", image.sizes());
  const int64_t gh = image.size(0) / patch, gw = image.size(1) / patch;
  return image.reshape({gh, patch, gw, patch}).amax({1, 3}).gt(threshold).reshape({-1});
}

torch::Tensor ink_components(const torch::Tensor& image, double threshold) {
  TORCH_CHECK(image.dim() == 2, "ink_components: image must be [H, W], got ", image.sizes());
  const int64_t h = image.size(0), w = image.size(1);
  const auto ink = image.gt(threshold).to(torch::kUInt8).contiguous();
  const uint8_t* p = ink.data_ptr<uint8_t>();
  UnionFind uf(h * w);
  for (int64_t r = 0; r < h; ++r) {
    for (int64_t c = 0; c < w; ++c) {
      if (!p[r * w + c]) continue;
      for (auto [dr, dc] : {std::pair<int64_t, int64_t>{0, 1}, {1, -1}, {1, 0}, {1, 1}}) {
        const int64_t rr = r + dr, cc = c + dc;
        if (rr < h && cc >= 0 && cc < w && p[rr * w + cc]) uf.unite(r * w + c, rr * w + cc);
      }
    }
  }
  auto labels = uf.labels();
  // Background pixels: label 0; components renumbered from 1.
  std::map<int64_t, int64_t> names;
  for (int64_t i = 0; i < h * w; ++i) {
    if (!p[i]) {
      labels[i] = 0;
      continue;
    }
    auto it = names.find(labels[i]);
    if (it == names.end()) it = names.emplace(labels[i], static_cast<int64_t>(names.size()) + 1).first;
    labels[i] = it->second;
  }
  return to_tensor(labels).reshape({h, w});
}

torch::Tensor cluster_ink_patches(const torch::Tensor& features, const torch::Tensor& ink, int64_t grid, int64_t patch,
                                  int64_t k, uint64_t seed, bool cosine) {
  TORCH_CHECK(features.dim() == 2 && features.size(0) == grid * grid && ink.numel() == grid * grid,
              "cluster_ink_patches: features must be [", grid * grid, ", F] with an ink flag per patch, got ",
              features.sizes(), " and ", ink.sizes());
  return patch_labels_to_pixels(kmeans_ink_patches(features, ink, k, seed, cosine), grid, patch);
}

torch::Tensor kmeans_ink_patches(const torch::Tensor& features, const torch::Tensor& ink, int64_t k, uint64_t seed, bool cosine) {
  TORCH_CHECK(features.dim() == 2 && ink.numel() == features.size(0),
              "kmeans_ink_patches: features must be [N, F] with an ink flag per patch, got ", features.sizes(), " and ", ink.sizes());
  auto labels = torch::full({features.size(0)}, -1, torch::kInt64);
  const auto where = ink.reshape({-1}).nonzero().reshape({-1});
  if (where.numel() > 0) labels.index_put_({where}, kmeans(features.index_select(0, where), k, seed, cosine));
  return labels;
}

torch::Tensor imagined_ink_pixels(const torch::Tensor& imagined, const torch::Tensor& ink, int64_t grid, int64_t patch) {
  TORCH_CHECK(imagined.dim() == 3 && imagined.size(0) >= 1 && imagined.size(1) == grid * grid &&
                  imagined.size(2) == patch * patch && ink.numel() == grid * grid,
              "imagined_ink_pixels: imagined must be [I, ", grid * grid, ", ", patch * patch, "] with an ink flag per patch, got ",
              imagined.sizes(), " and ", ink.sizes());
  const int64_t side = grid * patch;
  // [I, N, P] -> [I, H, W]: patch (row r, column c), pixel (row y, column x) -> (r patch + y, c patch + x).
  const auto pixels = imagined.reshape({imagined.size(0), grid, grid, patch, patch}).permute({0, 1, 3, 2, 4}).reshape({-1, side, side});
  const auto in_ink = patch_labels_to_pixels(ink.to(torch::kInt64), grid, patch).ne(0);
  return pixels.argmax(0).masked_fill(in_ink.logical_not(), -1);
}

torch::Tensor ink_class_votes(const torch::Tensor& location_logits, const torch::Tensor& ink) {
  const auto log_probs = torch::log_softmax(location_logits.to(torch::kFloat32), -1);
  return (log_probs * ink.unsqueeze(-1).to(torch::kFloat32)).sum(-2);
}

torch::Tensor classify_ink_patches(const torch::Tensor& location_logits, const torch::Tensor& ink, int64_t grid,
                                   int64_t patch, int64_t k) {
  TORCH_CHECK(location_logits.dim() == 2 && location_logits.size(0) == grid * grid && ink.numel() == grid * grid &&
                  k >= 1 && k <= location_logits.size(1),
              "classify_ink_patches: class scores must be [", grid * grid, ", C >= k] with an ink flag per patch, got ",
              location_logits.sizes(), ", ", ink.sizes(), " and k = ", k);
  const auto on_ink = ink.reshape({-1});
  const auto classes = std::get<1>(ink_class_votes(location_logits, on_ink).topk(k));
  // A location's highest score among those classes is also its most probable one (softmax keeps the order).
  const auto labels = location_logits.index_select(1, classes).argmax(1).masked_fill(on_ink.logical_not(), -1);
  return patch_labels_to_pixels(labels, grid, patch);
}

torch::Tensor cluster_ink_pixels(const torch::Tensor& features, const torch::Tensor& ink, int64_t grid, int64_t patch,
                                 int64_t k, uint64_t seed, bool cosine) {
  TORCH_CHECK(features.dim() == 2 && features.size(0) == grid * grid && ink.numel() == grid * grid,
              "cluster_ink_pixels: features must be [", grid * grid, ", F] with an ink flag per patch, got ",
              features.sizes(), " and ", ink.sizes());
  const int64_t side = grid * patch, f = features.size(1);
  const auto where = ink.reshape({-1}).nonzero().reshape({-1});
  if (where.numel() == 0) return torch::full({side, side}, -1, torch::kInt64);
  auto x = features.to(torch::kFloat64);
  if (cosine) x = x / x.norm(2, 1, true).clamp_min(1e-12);
  const auto members = x.index_select(0, where);
  const auto assigned = kmeans(members, k, seed, cosine);
  const int64_t found = assigned.max().item<int64_t>() + 1;
  auto centres = torch::zeros({found, f}, torch::kFloat64).index_add_(0, assigned, members);
  const auto counts = torch::zeros({found}, torch::kFloat64).index_add_(0, assigned, torch::ones({members.size(0)}, torch::kFloat64));
  centres = cosine ? centres / centres.norm(2, 1, true).clamp_min(1e-12) : centres / counts.clamp_min(1).unsqueeze(1);

  // Bilinear weights between patch centres, over ink patches only (renormalised).
  namespace F = torch::nn::functional;
  const auto weight = ink.reshape({1, 1, grid, grid}).to(torch::kFloat64);
  const auto field = (x * weight.reshape({-1, 1})).t().reshape({1, f, grid, grid});
  const auto up = F::InterpolateFuncOptions().size(std::vector<int64_t>{side, side}).mode(torch::kBilinear).align_corners(false);
  const auto numerator = F::interpolate(field, up).reshape({f, side * side}).t();
  const auto denominator = F::interpolate(weight, up).reshape({side * side, 1}).clamp_min(1e-12);
  auto pixels = numerator / denominator;
  torch::Tensor labels;
  if (cosine) {
    labels = torch::matmul(pixels / pixels.norm(2, 1, true).clamp_min(1e-12), centres.t()).argmax(1);
  } else {
    labels = torch::cdist(pixels, centres).argmin(1);
  }
  const auto in_ink = patch_labels_to_pixels(ink.to(torch::kInt64), grid, patch).reshape({-1}).ne(0);
  return labels.masked_fill(in_ink.logical_not(), -1).reshape({side, side});
}

torch::Tensor spectral_ink_patches(const torch::Tensor& features, const torch::Tensor& ink, int64_t grid, int64_t patch,
                                   int64_t k, int64_t radius, double beta, uint64_t seed) {
  TORCH_CHECK(features.dim() == 2 && features.size(0) == grid * grid && ink.numel() == grid * grid,
              "spectral_ink_patches: features must be [", grid * grid, ", F] with an ink flag per patch, got ",
              features.sizes(), " and ", ink.sizes());
  TORCH_CHECK(radius >= 1, "spectral_ink_patches: radius must be >= 1, got ", radius);
  auto labels = torch::full({grid * grid}, -1, torch::kInt64);
  const auto where = ink.reshape({-1}).nonzero().reshape({-1});
  const int64_t m = where.numel();
  if (m == 0) return patch_labels_to_pixels(labels, grid, patch);
  auto x = features.index_select(0, where).to(torch::kFloat64);
  x = x / x.norm(2, 1, true).clamp_min(1e-12);
  const auto rows = where.div(grid, "floor").to(torch::kFloat64), cols = where.remainder(grid).to(torch::kFloat64);
  const auto chebyshev = torch::maximum((rows.unsqueeze(1) - rows.unsqueeze(0)).abs(), (cols.unsqueeze(1) - cols.unsqueeze(0)).abs());
  const auto joined = chebyshev.le(double(radius)).logical_and(torch::eye(m, torch::kBool).logical_not());
  const auto affinity = torch::exp(beta * (torch::matmul(x, x.t()) - 1.0)) * joined.to(torch::kFloat64);
  // A patch with no ink within the radius keeps a tiny degree: its own component.
  const auto scale = affinity.sum(1).clamp_min(1e-12).rsqrt();
  const auto normalised = scale.unsqueeze(1) * affinity * scale.unsqueeze(0);
  const auto eigenvectors = std::get<1>(torch::linalg::eigh(normalised, "L"));  // ascending eigenvalues
  const int64_t leading = std::min(k, m);
  auto embedding = eigenvectors.narrow(1, m - leading, leading);
  embedding = embedding / embedding.norm(2, 1, true).clamp_min(1e-12);
  labels.index_put_({where}, kmeans(embedding, k, seed, false));
  return patch_labels_to_pixels(labels, grid, patch);
}

torch::Tensor pixel_position_features(const torch::Tensor& image, int64_t patch, double position_weight) {
  TORCH_CHECK(image.dim() == 2 && image.size(0) == image.size(1) && image.size(0) % patch == 0,
              "pixel_position_features: image must be square [H, H], H a multiple of ", patch, ", got ", image.sizes());
  const int64_t g = image.size(0) / patch;
  auto pixels = image.reshape({g, patch, g, patch}).permute({0, 2, 1, 3}).reshape({g * g, patch * patch});
  auto coords = torch::arange(g, torch::kFloat32).div(double(g)).mul(position_weight);
  auto rows = coords.view({g, 1}).expand({g, g}).reshape({-1, 1});
  auto cols = coords.view({1, g}).expand({g, g}).reshape({-1, 1});
  return torch::cat({pixels.to(torch::kFloat32), rows, cols}, 1);
}

double within_minus_between_cosine(const torch::Tensor& embeddings, const torch::Tensor& objects) {
  TORCH_CHECK(embeddings.dim() == 2 && objects.numel() == embeddings.size(0), "within_minus_between_cosine: [N, D] and [N], got ",
              embeddings.sizes(), " and ", objects.sizes());
  const auto keep = objects.reshape({-1}).ne(0).nonzero().reshape({-1});
  auto x = embeddings.index_select(0, keep).to(torch::kFloat64);
  x = x / x.norm(2, 1, true).clamp_min(1e-12);
  const auto o = objects.reshape({-1}).index_select(0, keep);
  const auto sim = torch::matmul(x, x.t());
  const auto same = o.unsqueeze(0).eq(o.unsqueeze(1));
  const auto off_diagonal = torch::eye(o.size(0), torch::kBool).logical_not();
  const auto within = same.logical_and(off_diagonal), between = same.logical_not();
  if (!within.any().item<bool>() || !between.any().item<bool>()) return std::numeric_limits<double>::quiet_NaN();
  return sim.masked_select(within).mean().item<double>() - sim.masked_select(between).mean().item<double>();
}

torch::Tensor patch_objects(const torch::Tensor& mask, int64_t patch) {
  TORCH_CHECK(mask.dim() == 2 && mask.size(0) % patch == 0 && mask.size(1) % patch == 0,
              "patch_objects: mask must be [H, W], sides a multiple of ", patch, ", got ", mask.sizes());
  const int64_t gh = mask.size(0) / patch, gw = mask.size(1) / patch;
  const auto m = mask.to(torch::kInt64).reshape({gh, patch, gw, patch}).permute({0, 2, 1, 3}).reshape({gh * gw, patch * patch});
  const int64_t classes = m.max().item<int64_t>() + 1;
  auto counts = torch::zeros({gh * gw, classes}, torch::kInt64);
  counts.scatter_add_(1, m, torch::ones_like(m));
  counts.select(1, 0).zero_();
  auto arg = counts.argmax(1);
  return arg.masked_fill(counts.amax(1).eq(0), 0);
}

}  // namespace distillery::nn
