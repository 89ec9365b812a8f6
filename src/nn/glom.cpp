#include "distillery/nn/glom.h"

#include <cmath>
#include <limits>

namespace distillery::nn {
namespace F = torch::nn::functional;

torch::Tensor window_neighbours(int64_t height, int64_t width, int64_t radius) {
  TORCH_CHECK(radius >= 1, "window_neighbours: radius must be >= 1, got ", radius);
  const int64_t side = 2 * radius + 1, k = side * side;
  auto index = torch::empty({height * width, k}, torch::kInt64);
  auto acc = index.accessor<int64_t, 2>();
  for (int64_t r = 0; r < height; ++r) {
    for (int64_t c = 0; c < width; ++c) {
      int64_t j = 0;
      for (int64_t dr = -radius; dr <= radius; ++dr) {
        for (int64_t dc = -radius; dc <= radius; ++dc, ++j) {
          const int64_t rr = r + dr, cc = c + dc;
          acc[r * width + c][j] = (rr >= 0 && cc >= 0 && rr < height && cc < width) ? rr * width + cc : -1;
        }
      }
    }
  }
  return index;
}

ConsensusOutput consensus_attention(const torch::Tensor& x, int64_t height, int64_t width, const ConsensusOptions& options) {
  TORCH_CHECK(x.dim() == 3, "consensus_attention: x must be [B, N, D], got ", x.sizes());
  TORCH_CHECK(x.size(1) == height * width, "consensus_attention: N = ", x.size(1), " but the grid is ", height, " x ", width);
  if (options.radius() >= 0 && !options.dense()) {
    if (x.is_cpu() && (x.scalar_type() == torch::kFloat || x.scalar_type() == torch::kDouble)) {
      return windowed_consensus_fused(x, height, width, options.radius(), options.beta(), options.return_weights());
    }
    return consensus_attention_reference(x, height, width, options);
  }
  const int64_t batch = x.size(0), n = x.size(1);
  const double neg_inf = -std::numeric_limits<double>::infinity();
  const auto normed = F::normalize(x, F::NormalizeFuncOptions().dim(-1).eps(1e-8));
  ConsensusOutput out;
  if (options.radius() < 0) {
    TORCH_CHECK(n >= 2, "consensus_attention: global attention needs at least 2 locations, got ", n);
    auto logits = torch::matmul(normed, normed.transpose(1, 2)).mul(options.beta());  // [B, N, N]
    const auto self = torch::eye(n, torch::TensorOptions().dtype(torch::kBool).device(x.device()));
    logits = logits.masked_fill(self, neg_inf);
    const auto weights = logits.softmax(-1);
    out.consensus = torch::matmul(weights, x);
    if (options.return_weights()) out.weights = weights;
    return out;
  }
  // The same windowed weights through a masked N x N matrix: quadratic in N, but two matrix
  // products (BLAS) instead of K elementwise passes; faster on small grids on a CPU.
  const auto rows = torch::arange(n, torch::TensorOptions().dtype(torch::kInt64).device(x.device())).div(width, "floor");
  const auto cols = torch::arange(n, torch::TensorOptions().dtype(torch::kInt64).device(x.device())).remainder(width);
  const auto far = torch::maximum((rows.unsqueeze(1) - rows.unsqueeze(0)).abs(), (cols.unsqueeze(1) - cols.unsqueeze(0)).abs())
                       .gt(options.radius())
                       .logical_or(torch::eye(n, torch::TensorOptions().dtype(torch::kBool).device(x.device())));
  auto logits = torch::matmul(normed, normed.transpose(1, 2)).mul(options.beta()).masked_fill(far, neg_inf);
  const auto weights = logits.softmax(-1);
  out.consensus = torch::matmul(weights, x);
  if (options.return_weights()) {
    const auto index = window_neighbours(height, width, options.radius()).to(x.device());
    out.weights = weights.gather(2, index.clamp_min(0).unsqueeze(0).expand({batch, n, index.size(1)}))
                      .masked_fill(index.lt(0).unsqueeze(0), 0.0);
  }
  return out;
}

ConsensusOutput consensus_attention_reference(const torch::Tensor& x, int64_t height, int64_t width,
                                              const ConsensusOptions& options) {
  TORCH_CHECK(x.dim() == 3 && x.size(1) == height * width, "consensus_attention_reference: x must be [B, ",
              height * width, ", D], got ", x.sizes());
  TORCH_CHECK(options.radius() >= 1, "consensus_attention_reference: local windows only, got radius ", options.radius());
  const int64_t batch = x.size(0), n = x.size(1), dim = x.size(2);
  const double neg_inf = -std::numeric_limits<double>::infinity();
  const auto normed = F::normalize(x, F::NormalizeFuncOptions().dim(-1).eps(1e-8));
  ConsensusOutput out;
  // Local window, one shifted view per offset: nothing of size N x K x D is materialised (autograd
  // keeps views of one padded copy), so time and memory are O(N K D) and O(N (K + D)).
  const int64_t r = options.radius(), side = 2 * r + 1, k = side * side;
  const auto valid = window_neighbours(height, width, r).ge(0).to(x.device());  // [N, K]
  const auto grid = x.transpose(1, 2).reshape({batch, dim, height, width});
  const auto grid_normed = normed.transpose(1, 2).reshape({batch, dim, height, width});
  const auto padded = F::pad(grid, F::PadFuncOptions({r, r, r, r}));
  const auto padded_normed = F::pad(grid_normed, F::PadFuncOptions({r, r, r, r}));
  std::vector<torch::Tensor> logits_k;
  logits_k.reserve(k);
  for (int64_t dr = 0; dr < side; ++dr) {
    for (int64_t dc = 0; dc < side; ++dc) {
      const auto shifted = padded_normed.narrow(2, dr, height).narrow(3, dc, width);
      logits_k.push_back((grid_normed * shifted).sum(1).reshape({batch, n}));
    }
  }
  auto logits = torch::stack(logits_k, -1).mul(options.beta());  // [B, N, K]
  auto excluded = valid.logical_not();
  excluded.index_put_({torch::indexing::Slice(), k / 2}, true);  // the column's own vector
  logits = logits.masked_fill(excluded.unsqueeze(0), neg_inf);
  const auto weights = logits.softmax(-1);
  const auto weights_grid = weights.transpose(1, 2).reshape({batch, k, 1, height, width});
  torch::Tensor sum;
  int64_t j = 0;
  for (int64_t dr = 0; dr < side; ++dr) {
    for (int64_t dc = 0; dc < side; ++dc, ++j) {
      if (j == k / 2) continue;  // weight exactly zero
      const auto term = weights_grid.select(1, j) * padded.narrow(2, dr, height).narrow(3, dc, width);
      sum = sum.defined() ? sum + term : term;
    }
  }
  out.consensus = sum.reshape({batch, dim, n}).transpose(1, 2);
  if (options.return_weights()) out.weights = weights;
  return out;
}

namespace {

// Sinusoidal features of (row, column) in [0, 1]: sin and cos of 2^f * pi * u, [N, 4F].
torch::Tensor position_features(int64_t grid, int64_t frequencies) {
  auto coords = torch::arange(grid, torch::kFloat32).div(std::max<int64_t>(1, grid - 1));
  auto rows = coords.view({grid, 1}).expand({grid, grid}).reshape({-1, 1});
  auto cols = coords.view({1, grid}).expand({grid, grid}).reshape({-1, 1});
  auto scales = torch::pow(2.0, torch::arange(frequencies, torch::kFloat32)).mul(M_PI).view({1, -1});
  auto r = rows * scales, c = cols * scales;
  return torch::cat({r.sin(), r.cos(), c.sin(), c.cos()}, 1);
}

}  // namespace

ColumnNetImpl::ColumnNetImpl(int64_t in, const std::vector<int64_t>& hidden, int64_t out, int64_t locations, bool shared) {
  if (!shared) {
    per_location_ = register_module(
        "per_location", LocationMLP(LocationMLPOptions().locations(locations).in_features(in).hidden(hidden).num_classes(out).gelu(true)));
    return;
  }
  // Parameter names as the torch::nn::Linear / Sequential(Linear, GELU, Linear, ...) this replaced
  // ("weight", or "0.weight", "2.weight", ...), so that earlier GLOM checkpoints still load.
  std::vector<int64_t> sizes{in};
  sizes.insert(sizes.end(), hidden.begin(), hidden.end());
  sizes.push_back(out);
  for (size_t l = 0; l + 1 < sizes.size(); ++l) layers_.emplace_back(sizes[l], sizes[l + 1]);
  if (layers_.size() == 1) {
    register_parameter("weight", layers_[0]->weight);
    register_parameter("bias", layers_[0]->bias);
  } else {
    for (size_t l = 0; l < layers_.size(); ++l) register_module(std::to_string(2 * l), layers_[l]);
  }
}

torch::Tensor ColumnNetImpl::forward(const torch::Tensor& columns) {
  if (per_location_) return per_location_->forward(columns.transpose(0, 1)).transpose(0, 1);  // LocationMLP takes [N, B, in]
  auto x = columns;
  for (size_t l = 0; l < layers_.size(); ++l) {
    x = layers_[l]->forward(x);
    if (l + 1 < layers_.size()) x = torch::gelu(x);
  }
  return x;
}

GlomImpl::GlomImpl(const GlomOptions& options) : options_(options) { reset(); }

void GlomImpl::reset() {
  const auto& o = options_;
  TORCH_CHECK(o.patch_size() > 0 && o.image_size() % o.patch_size() == 0, "Glom: image_size ", o.image_size(),
              " is not a multiple of patch_size ", o.patch_size());
  TORCH_CHECK(o.levels() >= 1, "Glom: levels must be >= 1, got ", o.levels());
  TORCH_CHECK(static_cast<int64_t>(o.radii().size()) == o.levels(), "Glom: radii has ", o.radii().size(),
              " entries for ", o.levels(), " levels");
  TORCH_CHECK(static_cast<int64_t>(o.betas().size()) == o.levels(), "Glom: betas has ", o.betas().size(),
              " entries for ", o.levels(), " levels");
  TORCH_CHECK(o.pooling() == "max" || o.pooling() == "lse", "Glom: pooling must be max or lse, got '", o.pooling(), "'");
  for (auto r : o.radii()) TORCH_CHECK(r != 0, "Glom: a radius of 0 has no neighbours (use >= 1, or < 0 for global)");
  const int64_t p = o.patch_size() * o.patch_size(), d = o.dim(), pos = 4 * o.position_frequencies();
  const int64_t window = o.patch_size() + 2 * o.context(), neighbours = (2 * o.bottom_up_window() + 1) * (2 * o.bottom_up_window() + 1);
  const int64_t n = grid() * grid();
  const bool shared = o.shared_columns();
  embed_ = register_module("embed", ColumnNet(window * window, std::vector<int64_t>{}, d, n, shared));
  decode_ = register_module("decode", ColumnNet(d, std::vector<int64_t>{}, p, n, shared));
  classify_ = register_module("classify", ColumnNet(d, std::vector<int64_t>{}, o.num_classes(), n, shared));
  bottom_up_.clear();
  top_down_.clear();
  for (int64_t l = 1; l < o.levels(); ++l) {
    bottom_up_.push_back(register_module("bottom_up_" + std::to_string(l), ColumnNet(d * neighbours, std::vector<int64_t>{o.hidden()}, d, n, shared)));
  }
  for (int64_t l = 0; l + 1 < o.levels(); ++l) {
    top_down_.push_back(register_module("top_down_" + std::to_string(l), ColumnNet(d + pos, std::vector<int64_t>{o.hidden()}, d, n, shared)));
  }
  auto present = torch::ones({o.levels(), 4});
  present.index_put_({o.levels() - 1, 2}, 0.0);  // no top-down term at the top
  const std::vector<double> w = {o.weight_previous(), o.weight_bottom_up(), o.weight_top_down(), o.weight_attention()};
  auto init = torch::empty({o.levels(), 4});
  for (int64_t l = 0; l < o.levels(); ++l) {
    for (int64_t t = 0; t < 4; ++t) {
      TORCH_CHECK(w[t] >= 0, "Glom: mixing weights must be >= 0");
      init.index_put_({l, t}, std::log(std::max(w[t], 1e-12)));
    }
  }
  mixing_present_ = register_buffer("mixing_present", present);
  if (o.learned_mixing()) {
    mixing_logits_ = register_parameter("mixing_logits", init);
  } else {
    mixing_logits_ = register_buffer("mixing_logits", init);
  }
  positions_ = register_buffer("positions", position_features(grid(), o.position_frequencies()));
}

torch::Tensor GlomImpl::mixing_weights() const {
  auto present = mixing_present_.clone();
  if (!attention_enabled_) present.index_put_({torch::indexing::Slice(), 3}, 0.0);
  auto logits = mixing_logits_.masked_fill(present.eq(0), -std::numeric_limits<double>::infinity());
  return logits.softmax(-1);
}

torch::Tensor GlomImpl::patches(const torch::Tensor& images) const {
  TORCH_CHECK(images.dim() == 4 && images.size(1) == 1 && images.size(2) == options_.image_size() &&
                  images.size(3) == options_.image_size(),
              "Glom: images must be [B, 1, ", options_.image_size(), ", ", options_.image_size(), "], got ", images.sizes());
  const int64_t ps = options_.patch_size();
  return F::unfold(images, F::UnfoldFuncOptions({ps, ps}).stride({ps, ps})).transpose(1, 2);  // [B, N, P]
}

torch::Tensor GlomImpl::patch_windows(const torch::Tensor& images) const {
  if (options_.context() == 0) return patches(images);
  const int64_t ps = options_.patch_size(), c = options_.context();
  patches(images);  // shape check
  return F::unfold(images, F::UnfoldFuncOptions({ps + 2 * c, ps + 2 * c}).stride({ps, ps}).padding({c, c})).transpose(1, 2);
}

torch::Tensor GlomImpl::bottom_up_input(const torch::Tensor& below) const {
  const int64_t w = options_.bottom_up_window();
  if (w == 0) return below;
  const int64_t batch = below.size(0), n = below.size(1), d = below.size(2), g = grid();
  TORCH_CHECK(n == g * g, "Glom: bottom-up input has ", n, " locations for a ", g, " x ", g, " grid");
  const auto as_grid = below.transpose(1, 2).reshape({batch, d, g, g});
  return F::unfold(as_grid, F::UnfoldFuncOptions({2 * w + 1, 2 * w + 1}).padding({w, w})).transpose(1, 2);  // [B, N, D K]
}

GlomOutput GlomImpl::forward(const torch::Tensor& images, const torch::Tensor& patch_mask, bool record,
                             std::optional<int64_t> iteration_count) {
  const auto& o = options_;
  patches(images);  // shape check
  const int64_t batch = images.size(0), levels = o.levels(), g = grid(), n = g * g;
  auto visible = images;
  if (patch_mask.defined()) {
    TORCH_CHECK(patch_mask.dim() == 2 && patch_mask.size(0) == batch && patch_mask.size(1) == n,
                "Glom: patch_mask must be [", batch, ", ", n, "], got ", patch_mask.sizes());
    // Blank the hidden patches in the image, so that no column's context shows them.
    const int64_t ps = o.patch_size();
    const auto hidden = patch_mask.view({batch, 1, g, 1, g, 1}).expand({batch, 1, g, ps, g, ps}).reshape(images.sizes());
    visible = images.masked_fill(hidden, 0.0);
  }
  const auto input = embed_->forward(patch_windows(visible));  // [B, N, D]
  const auto positions = positions_.unsqueeze(0).expand({batch, n, positions_.size(1)});
  const auto mix = mixing_weights();  // [L, 4]
  const bool attention_on = attention_enabled_ && o.weight_attention() > 0;

  // Start: one bottom-up pass from the patch embedding.
  std::vector<torch::Tensor> x(levels);
  x[0] = input;
  for (int64_t l = 1; l < levels; ++l) x[l] = bottom_up_[l - 1]->forward(bottom_up_input(x[l - 1]));
  for (auto& v : x) v = F::layer_norm(v, F::LayerNormFuncOptions({o.dim()}));

  std::vector<torch::Tensor> history;
  if (record) history.push_back(torch::stack(x, 2));
  std::vector<torch::Tensor> bu(levels), td(levels), cons(levels);
  const int64_t iterations = iteration_count.value_or(o.iterations());
  TORCH_CHECK(iterations >= 0, "Glom: iterations must be >= 0, got ", iterations);
  for (int64_t t = 0; t < iterations; ++t) {
    if (o.truncate() > 0 && t == iterations - o.truncate()) {
      for (auto& v : x) v = v.detach();
    }
    std::vector<torch::Tensor> next(levels);
    for (int64_t l = 0; l < levels; ++l) {
      bu[l] = l == 0 ? input : bottom_up_[l - 1]->forward(bottom_up_input(x[l - 1]));
      td[l] = l + 1 < levels ? top_down_[l]->forward(torch::cat({x[l + 1], positions}, -1)) : torch::zeros_like(x[l]);
      cons[l] = attention_on ? consensus_attention(x[l], g, g, ConsensusOptions().radius(o.radii()[l]).beta(o.betas()[l]).dense(o.dense_attention())).consensus
                             : torch::zeros_like(x[l]);
      auto v = mix[l][0] * x[l] + mix[l][1] * bu[l] + mix[l][3] * cons[l];
      if (l + 1 < levels) v = v + mix[l][2] * td[l];
      next[l] = F::layer_norm(v, F::LayerNormFuncOptions({o.dim()}));
    }
    x = std::move(next);
    if (record) history.push_back(torch::stack(x, 2));
  }
  GlomOutput out;
  out.levels = torch::stack(x, 2);
  if (record) out.iterations = torch::stack(history, 0);
  if (iterations > 0) {
    out.bottom_up = torch::stack(bu, 2);
    out.top_down = torch::stack(td, 2);
    out.consensus = torch::stack(cons, 2);
  }
  out.reconstruction = decode_->forward(x[0]);
  out.location_logits = location_logits(x[levels - 1]);
  out.image_logits = o.pooling() == "max" ? out.location_logits.amax(1) : out.location_logits.logsumexp(1);
  return out;
}

torch::Tensor GlomImpl::location_logits(const torch::Tensor& top_level) { return classify_->forward(top_level); }

torch::Tensor GlomImpl::imagine(const torch::Tensor& embeddings, int64_t from) {
  const int64_t g = grid(), n = g * g;
  TORCH_CHECK(from >= 0 && from < options_.levels(), "Glom::imagine: level ", from, " of ", options_.levels());
  TORCH_CHECK(embeddings.dim() == 3 && embeddings.size(1) == n && embeddings.size(2) == options_.dim(),
              "Glom::imagine: embeddings must be [B, ", n, ", ", options_.dim(), "], got ", embeddings.sizes());
  const auto positions = positions_.unsqueeze(0).expand({embeddings.size(0), n, positions_.size(1)});
  auto x = F::layer_norm(embeddings, F::LayerNormFuncOptions({options_.dim()}));
  for (int64_t l = from - 1; l >= 0; --l) {
    x = F::layer_norm(top_down_[l]->forward(torch::cat({x, positions}, -1)), F::LayerNormFuncOptions({options_.dim()}));
  }
  return decode_->forward(x);
}

GlomLoss glom_loss(Glom& model, const torch::Tensor& images, const torch::Tensor& labels, const GlomLossOptions& options) {
  TORCH_CHECK(labels.dim() == 2 && labels.size(0) == images.size(0) && labels.size(1) == model->options_.num_classes(),
              "glom_loss: labels must be [", images.size(0), ", ", model->options_.num_classes(), "], got ", labels.sizes());
  const int64_t batch = images.size(0), n = model->grid() * model->grid();
  torch::Tensor patch_mask;
  if (options.mask_fraction() > 0) patch_mask = torch::rand({batch, n}, images.options()).lt(options.mask_fraction());
  const auto out = model->forward(images, patch_mask, /*record=*/false, options.iterations());
  const auto zero = torch::zeros({}, images.options());
  GlomLoss loss;
  // Denoising: the hidden patches' pixels (all patches if none are hidden).
  const auto target = model->patches(images);
  auto err = (out.reconstruction - target).pow(2).mean(-1);  // [B, N]
  if (patch_mask.defined() && patch_mask.any().item<bool>()) {
    const auto m = patch_mask.to(err.dtype());
    loss.denoise = (err * m).sum() / m.sum();
  } else {
    loss.denoise = err.mean();
  }
  const int64_t levels = model->options_.levels(), dim = model->options_.dim();
  loss.island = zero;
  loss.contrast = zero;
  if (out.consensus.defined() && model->attention() && model->options_.weight_attention() > 0 && levels > 1) {
    const auto level_slice = torch::indexing::Slice(1, torch::indexing::None);
    const auto target_c = out.consensus.index({torch::indexing::Slice(), torch::indexing::Slice(), level_slice}).detach();
    const auto bu = out.bottom_up.index({torch::indexing::Slice(), torch::indexing::Slice(), level_slice});
    const auto td = out.top_down.index({torch::indexing::Slice(), torch::indexing::Slice(), torch::indexing::Slice(1, levels - 1)});
    loss.island = (1 - F::cosine_similarity(bu, target_c, F::CosineSimilarityFuncOptions().dim(-1))).mean();
    if (levels > 2) {
      const auto target_td = target_c.index({torch::indexing::Slice(), torch::indexing::Slice(), torch::indexing::Slice(0, levels - 2)});
      loss.island = 0.5 * (loss.island + (1 - F::cosine_similarity(td, target_td, F::CosineSimilarityFuncOptions().dim(-1))).mean());
    }
    // InfoNCE per level >= 1: a location's embedding against the consensus at the same location
    // (positive) and the consensus at sampled locations of the other images (negatives), and
    // optionally at distant locations of its own image.
    const int64_t s = std::min(options.samples(), n);
    if ((batch > 1 || options.same_image_negatives()) && s > 0) {
      const auto picks = torch::rand({batch, n}, images.options()).argsort(/*dim=*/int64_t{1}, /*descending=*/false).narrow(1, 0, s);  // [B, S]
      const auto owner = torch::arange(batch, torch::TensorOptions().device(images.device())).repeat_interleave(s);
      const auto same_image = owner.unsqueeze(0).eq(owner.unsqueeze(1)).logical_and(
          torch::eye(batch * s, torch::TensorOptions().dtype(torch::kBool).device(images.device())).logical_not());
      const auto flat_picks = picks.reshape({batch * s});
      const auto rows = flat_picks.div(model->grid(), "floor"), cols = flat_picks.remainder(model->grid());
      const auto apart = torch::maximum((rows.unsqueeze(0) - rows.unsqueeze(1)).abs(), (cols.unsqueeze(0) - cols.unsqueeze(1)).abs());
      const auto gather_index = picks.unsqueeze(-1).expand({batch, s, dim});
      torch::Tensor total = zero;
      for (int64_t l = 1; l < levels; ++l) {
        const int64_t radius = model->options_.radii()[l];
        const auto excluded = options.same_image_negatives() && radius >= 0 ? same_image.logical_and(apart.le(radius)) : same_image;
        const auto emb = out.levels.select(2, l).gather(1, gather_index).reshape({batch * s, dim});
        const auto key = out.consensus.select(2, l).detach().gather(1, gather_index).reshape({batch * s, dim});
        auto logits = torch::matmul(F::normalize(emb, F::NormalizeFuncOptions().dim(-1)),
                                    F::normalize(key, F::NormalizeFuncOptions().dim(-1)).t()) /
                      options.temperature();
        logits = logits.masked_fill(excluded, -std::numeric_limits<double>::infinity());
        total = total + F::cross_entropy(logits, torch::arange(batch * s, torch::TensorOptions().device(images.device())));
      }
      loss.contrast = total / double(levels - 1);
    }
  }
  loss.label = F::binary_cross_entropy_with_logits(out.image_logits, labels.to(out.image_logits.dtype()));
  loss.location_label = zero;
  loss.commitment = zero;
  if (options.location_label() > 0 || options.commitment() > 0) {
    const auto ink = target.amax(-1).gt(options.ink()).to(out.location_logits.dtype());  // [B, N]
    const auto ink_count = ink.sum().clamp_min(1.0);
    const auto log_probs = out.location_logits.log_softmax(-1);                             // [B, N, C]
    const auto present = labels.to(log_probs.dtype()).unsqueeze(1).gt(0);                 // [B, 1, C]
    if (options.location_label() > 0) {
      const auto log_present = log_probs.masked_fill(present.logical_not(), -std::numeric_limits<double>::infinity()).logsumexp(-1);
      loss.location_label = -(log_present * ink).sum() / ink_count;
    }
    if (options.commitment() > 0) {
      // A large finite fill rather than -inf: an image without classes then gives a finite,
      // zero-weighted row instead of NaN.
      const auto log_q = out.location_logits.masked_fill(present.logical_not(), -1e9).log_softmax(-1);
      const auto entropy = -(log_q.exp() * log_q * present.to(log_q.dtype())).sum(-1);  // [B, N]
      loss.commitment = (entropy * ink).sum() / ink_count;
    }
  }
  loss.total = options.denoise() * loss.denoise + options.island() * loss.island + options.contrast() * loss.contrast +
               options.label() * loss.label + options.location_label() * loss.location_label +
               options.commitment() * loss.commitment;
  return loss;
}

}  // namespace distillery::nn
