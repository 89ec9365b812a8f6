// GLOM (issue 10): consensus attention, the model's shapes, islands, FG-ARI, scenes, the loss.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <type_traits>

#include "distillery/data/image_input.h"
#include "distillery/data/scenes.h"
#include "distillery/experiments/glom.h"
#include "distillery/nn/glom.h"
#include "distillery/nn/islands.h"
#include "distillery/report/image.h"
#include "test_support.h"

namespace distillery {
namespace {

using nn::ConsensusOptions;
using testing::SeededTest;

class Glom : public SeededTest {};

TEST_F(Glom, ConsensusWeightsSumToOneAndExcludeSelf) {
  const auto x = torch::randn({2, 5 * 6, 7});
  for (int64_t radius : {1, 2}) {
    const auto out = nn::consensus_attention(x, 5, 6, ConsensusOptions().radius(radius).beta(3.0).return_weights(true));
    const int64_t k = (2 * radius + 1) * (2 * radius + 1);
    ASSERT_EQ(out.weights.sizes(), (std::vector<int64_t>{2, 30, k}));
    ASSERT_EQ(out.consensus.sizes(), x.sizes());
    EXPECT_TRUE(torch::allclose(out.weights.sum(-1), torch::ones({2, 30}), 1e-5, 1e-6));
    EXPECT_EQ(out.weights.select(2, k / 2).abs().max().item<float>(), 0.0f);  // self: exactly zero
    // Window positions outside the grid get zero weight: corner (0, 0) has no row above.
    const auto neighbours = nn::window_neighbours(5, 6, radius);
    const auto outside = neighbours.lt(0);
    EXPECT_EQ(out.weights.masked_select(outside.unsqueeze(0).expand({2, 30, k})).abs().max().item<float>(), 0.0f);
  }
  const auto global = nn::consensus_attention(x, 5, 6, ConsensusOptions().radius(-1).beta(3.0).return_weights(true));
  ASSERT_EQ(global.weights.sizes(), (std::vector<int64_t>{2, 30, 30}));
  EXPECT_TRUE(torch::allclose(global.weights.sum(-1), torch::ones({2, 30}), 1e-5, 1e-6));
  EXPECT_EQ(global.weights.diagonal(0, 1, 2).abs().max().item<float>(), 0.0f);
}

// The windowed computation equals dense attention over all N locations with everything outside
// the window (and the location itself) masked.
TEST_F(Glom, LocalConsensusMatchesDenseMaskedReference) {
  const int64_t h = 4, w = 5, n = h * w, radius = 1;
  const auto x = torch::randn({3, n, 6}, torch::kFloat64);
  const auto out = nn::consensus_attention(x, h, w, ConsensusOptions().radius(radius).beta(7.0).return_weights(true));
  const auto normed = x / x.norm(2, -1, true);
  auto logits = torch::matmul(normed, normed.transpose(1, 2)) * 7.0;
  auto far = torch::zeros({n, n}, torch::kBool);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      far[i][j] = i == j || std::max(std::abs(i / w - j / w), std::abs(i % w - j % w)) > radius;
    }
  }
  const auto dense = logits.masked_fill(far, -INFINITY).softmax(-1);
  EXPECT_TRUE(torch::allclose(out.consensus, torch::matmul(dense, x), 1e-10, 1e-12));
  const auto index = nn::window_neighbours(h, w, radius);
  const auto gathered = dense.gather(2, index.clamp_min(0).unsqueeze(0).expand({3, n, index.size(1)}))
                            .masked_fill(index.lt(0).unsqueeze(0), 0.0);
  EXPECT_TRUE(torch::allclose(out.weights, gathered, 1e-10, 1e-12));
  // The dense implementation option gives the same results.
  const auto matrix = nn::consensus_attention(x, h, w, ConsensusOptions().radius(radius).beta(7.0).return_weights(true).dense(true));
  EXPECT_TRUE(torch::allclose(matrix.consensus, out.consensus, 1e-10, 1e-12));
  EXPECT_TRUE(torch::allclose(matrix.weights, out.weights, 1e-10, 1e-12));
}

// The fused CPU kernel against the same computation written op by op and differentiated by
// autograd: values, attention weights and gradients, for several radii, both dtypes, a dimension
// that is not a multiple of the kernel's 8 partial sums, and a zero vector (clamped norm).
TEST_F(Glom, FusedWindowedConsensusMatchesTheOpByOpReference) {
  const int64_t h = 5, w = 6, n = h * w;
  for (auto dtype : {torch::kFloat64, torch::kFloat32}) {
    for (int64_t dim : {7, 16}) {
      for (int64_t radius : {1, 2, 3}) {
        SCOPED_TRACE(::testing::Message() << "dtype " << dtype << " dim " << dim << " radius " << radius);
        auto x = torch::randn({3, n, dim}, dtype);
        x[1][4].zero_();
        const auto probe = torch::randn({3, n, dim}, dtype);
        const auto options = ConsensusOptions().radius(radius).beta(6.0).return_weights(true);
        auto fused_in = x.clone().requires_grad_(true), reference_in = x.clone().requires_grad_(true);
        const auto fused = nn::windowed_consensus_fused(fused_in, h, w, radius, 6.0, true);
        const auto reference = nn::consensus_attention_reference(reference_in, h, w, options);
        (fused.consensus * probe).sum().backward();
        (reference.consensus * probe).sum().backward();
        const double tol = dtype == torch::kFloat64 ? 1e-10 : 1e-4;
        EXPECT_TRUE(torch::allclose(fused.consensus, reference.consensus, tol, tol));
        EXPECT_TRUE(torch::allclose(fused.weights, reference.weights, tol, tol));
        EXPECT_TRUE(torch::allclose(fused_in.grad(), reference_in.grad(), tol, tol))
            << (fused_in.grad() - reference_in.grad()).abs().max();
      }
    }
  }
  // consensus_attention takes the fused kernel on a CPU; other dtypes fall back to the reference.
  const auto x = torch::randn({2, n, 8});
  const auto options = ConsensusOptions().radius(2).beta(3.0);
  EXPECT_TRUE(torch::allclose(nn::consensus_attention(x, h, w, options).consensus,
                              nn::windowed_consensus_fused(x, h, w, 2, 3.0, false).consensus));
  const auto half = nn::consensus_attention(x.to(torch::kBFloat16), h, w, options).consensus;
  EXPECT_EQ(half.scalar_type(), torch::kBFloat16);
  EXPECT_THROW(nn::windowed_consensus_fused(x.to(torch::kBFloat16), h, w, 2, 3.0, false), c10::Error);
  EXPECT_THROW(nn::windowed_consensus_fused(x, h, w, 0, 3.0, false), c10::Error);
}

TEST_F(Glom, ConsensusMatchesHandComputedAverage) {
  // A 1 x 3 grid, radius 1: the middle location averages its two neighbours with weights
  // proportional to exp(beta * cos).
  const auto x = torch::tensor({{1.0, 0.0}, {1.0, 1.0}, {0.0, 2.0}}, torch::kFloat64).unsqueeze(0);
  const double beta = 2.0;
  const auto out = nn::consensus_attention(x, 1, 3, ConsensusOptions().radius(1).beta(beta));
  const double c = 1.0 / std::sqrt(2.0);  // cos of (1,1) with both (1,0) and (0,2)
  const double w = std::exp(beta * c) / (2 * std::exp(beta * c));
  const auto expected = torch::tensor({w * 1.0 + w * 0.0, w * 0.0 + w * 2.0}, torch::kFloat64);
  EXPECT_TRUE(torch::allclose(out.consensus[0][1], expected, 1e-12, 1e-12)) << out.consensus;
  // The ends have one neighbour each: they copy it.
  EXPECT_TRUE(torch::allclose(out.consensus[0][0], x[0][1]));
  EXPECT_TRUE(torch::allclose(out.consensus[0][2], x[0][1]));
}

TEST_F(Glom, ConsensusGradientMatchesFiniteDifferences) {
  for (int64_t radius : {1, 2, -1}) {
    auto x = torch::randn({2, 3 * 4, 3}, torch::kFloat64).requires_grad_(true);
    const auto probe = torch::randn({2, 12, 3}, torch::kFloat64);
    auto f = [&](const torch::Tensor& input) {
      return (nn::consensus_attention(input, 3, 4, ConsensusOptions().radius(radius).beta(4.0)).consensus * probe).sum();
    };
    f(x).backward();
    const auto analytic = x.grad().clone();
    auto flat = x.detach().clone().reshape({-1});
    const double h = 1e-6;
    double worst = 0;
    for (int64_t i = 0; i < flat.numel(); ++i) {
      auto plus = flat.clone(), minus = flat.clone();
      plus[i] += h;
      minus[i] -= h;
      const double numeric = (f(plus.view(x.sizes())).item<double>() - f(minus.view(x.sizes())).item<double>()) / (2 * h);
      worst = std::max(worst, std::abs(numeric - analytic.reshape({-1})[i].item<double>()));
    }
    EXPECT_LT(worst, 1e-6) << "radius " << radius;
  }
}

// Settling longer at test time and a random count per training step pass their count to the
// forward pass instead of changing the model's own count, which the scores index by.
TEST_F(Glom, ForwardRunsTheIterationCountItIsGiven) {
  nn::Glom model(nn::GlomOptions().image_size(16).patch_size(4).levels(2).dim(8).hidden(8).iterations(2).radii({1, 1}).betas({2, 4}));
  model->eval();
  torch::NoGradGuard no_grad;
  const auto images = torch::rand({2, 1, 16, 16});
  const auto trained = model->forward(images, {}, /*record=*/true);
  const auto settled = model->forward(images, {}, /*record=*/true, 5);
  EXPECT_EQ(trained.iterations.size(0), 3);
  EXPECT_EQ(settled.iterations.size(0), 6);
  EXPECT_TRUE(torch::allclose(settled.iterations.narrow(0, 0, 3), trained.iterations));
  EXPECT_TRUE(torch::allclose(settled.levels, settled.iterations[5]));
  EXPECT_THROW(model->forward(images, {}, false, -1), c10::Error);
  // The objective runs the count its options give: with none, no consensus, so no island term.
  const auto labels = torch::zeros({2, 10});
  EXPECT_EQ(nn::glom_loss(model, images, labels, nn::GlomLossOptions().iterations(0)).island.item<float>(), 0.0f);
  EXPECT_GT(nn::glom_loss(model, images, labels, nn::GlomLossOptions()).island.item<float>(), 0.0f);
}

TEST_F(Glom, ShapesOfEveryOutput) {
  nn::Glom model(nn::GlomOptions().image_size(16).patch_size(4).levels(3).dim(8).hidden(12).iterations(3)
                     .radii({1, 1, -1}).betas({2, 4, 8}).learned_mixing(true).context(2).bottom_up_window(1));
  const auto images = torch::rand({2, 1, 16, 16});
  const auto out = model->forward(images, torch::zeros({2, 16}, torch::kBool), /*record=*/true);
  EXPECT_EQ(out.levels.sizes(), (std::vector<int64_t>{2, 16, 3, 8}));
  EXPECT_EQ(out.iterations.sizes(), (std::vector<int64_t>{4, 2, 16, 3, 8}));
  EXPECT_EQ(out.bottom_up.sizes(), out.levels.sizes());
  EXPECT_EQ(out.top_down.sizes(), out.levels.sizes());
  EXPECT_EQ(out.consensus.sizes(), out.levels.sizes());
  EXPECT_EQ(out.reconstruction.sizes(), (std::vector<int64_t>{2, 16, 16}));
  EXPECT_EQ(out.location_logits.sizes(), (std::vector<int64_t>{2, 16, 10}));
  EXPECT_EQ(out.image_logits.sizes(), (std::vector<int64_t>{2, 10}));
  // Image class scores: the locations' maximum by default, log-sum-exp as an option.
  EXPECT_TRUE(torch::equal(out.image_logits, out.location_logits.amax(1)));
  nn::Glom lse(nn::GlomOptions().image_size(16).patch_size(4).levels(2).dim(8).hidden(12).iterations(1)
                   .radii({1, 1}).betas({2, 4}).pooling("lse"));
  const auto lse_out = lse->forward(images);
  EXPECT_TRUE(torch::allclose(lse_out.image_logits, lse_out.location_logits.logsumexp(1)));
  EXPECT_THROW(nn::Glom(nn::GlomOptions().pooling("mean")), c10::Error);
  EXPECT_TRUE(torch::allclose(out.iterations[3], out.levels));
  const auto mix = model->mixing_weights();
  EXPECT_TRUE(torch::allclose(mix.sum(1), torch::ones({3})));
  EXPECT_EQ(mix[2][2].item<float>(), 0.0f);  // no top-down term at the top
  model->set_attention(false);
  EXPECT_EQ(model->mixing_weights().select(1, 3).abs().max().item<float>(), 0.0f);
  EXPECT_THROW(model->forward(torch::rand({2, 1, 12, 12})), c10::Error);
  EXPECT_THROW(nn::Glom(nn::GlomOptions().levels(2).radii({1, 1, 1}).betas({1, 1})), c10::Error);
}

// Issue 6's variant: with shared_columns(false) every column has its own nets (N times the
// parameters), and without attention a column's output depends on its own weights only: the
// gradient of one column's levels reaches no other column's slice of any weight.
TEST_F(Glom, UnsharedColumnsOwnTheirWeights) {
  const auto options = nn::GlomOptions().image_size(12).patch_size(4).levels(2).dim(6).hidden(5).iterations(2).radii({1, 1}).betas({2, 4});
  nn::Glom shared(options);
  nn::Glom separate(nn::GlomOptions(options).shared_columns(false));
  auto count = [](nn::Glom& m) {
    int64_t c = 0;
    for (const auto& p : m->parameters()) c += p.numel();
    return c;
  };
  EXPECT_EQ(count(separate), 9 * count(shared));  // a 3 x 3 grid; the mixing weights are buffers
  const auto images = torch::rand({2, 1, 12, 12});
  EXPECT_EQ(separate->forward(images).levels.sizes(), shared->forward(images).levels.sizes());

  separate->set_attention(false);
  const int64_t column = 4;
  separate->forward(images).levels.select(1, column).sum().backward();
  int64_t checked = 0;
  for (const auto& p : separate->parameters()) {
    ASSERT_EQ(p.size(0), 9) << "every weight has a leading location dimension";
    if (!p.grad().defined()) continue;
    for (int64_t n = 0; n < 9; ++n) {
      const double g = p.grad()[n].abs().max().item<double>();
      if (n == column) checked += g > 0;
      else EXPECT_EQ(g, 0.0) << "column " << n;
    }
  }
  EXPECT_GE(checked, 3);  // embedding, bottom-up and top-down nets of that column all learn
}

// Denoising hides patches from every column: with context windows, changing a hidden patch's
// pixels changes nothing the model computes.
TEST_F(Glom, HiddenPatchesAreInvisibleEvenWithContext) {
  nn::Glom model(nn::GlomOptions().image_size(16).patch_size(4).levels(2).dim(8).hidden(8).iterations(2)
                     .radii({1, 1}).betas({2, 4}).context(4).bottom_up_window(1));
  torch::NoGradGuard no_grad;
  auto image = torch::rand({1, 1, 16, 16});
  auto mask = torch::zeros({1, 16}, torch::kBool);
  mask[0][5] = true;  // the patch at grid (1, 1): pixels 4..7 x 4..7
  const auto before = model->forward(image, mask).levels;
  auto changed = image.clone();
  changed.narrow(2, 4, 4).narrow(3, 4, 4).fill_(1.0);
  EXPECT_TRUE(torch::equal(model->forward(changed, mask).levels, before));
  EXPECT_FALSE(torch::equal(model->forward(changed).levels, model->forward(image).levels));
}

// Two constant regions, each embedding corrupted by noise: repeated consensus averaging (the echo
// chamber alone) turns them into exactly two islands, one per region; the noise alone does not.
TEST_F(Glom, IslandsFormOnTwoConstantRegions) {
  const int64_t h = 8, w = 8, d = 16;
  const auto a = torch::randn({d}), b = torch::randn({d});
  auto regions = torch::zeros({h * w}, torch::kInt64);
  for (int64_t i = 0; i < h * w; ++i) regions[i] = (i % w) < 3 ? 1 : 2;  // left 3 columns, right 5
  auto x = torch::where(regions.eq(1).unsqueeze(1), a.unsqueeze(0), b.unsqueeze(0)) + 0.6 * torch::randn({h * w, d});
  x = x.unsqueeze(0);
  const auto before = nn::threshold_islands(x[0], h, w, 0.95);
  EXPECT_GT(nn::island_sizes(before).size(), 10u);
  for (int step = 0; step < 15; ++step) {
    x = 0.5 * x + 0.5 * nn::consensus_attention(x, h, w, ConsensusOptions().radius(1).beta(10.0)).consensus;
  }
  const auto after = nn::threshold_islands(x[0], h, w, 0.95);
  EXPECT_EQ(nn::island_sizes(after), (std::vector<int64_t>{40, 24}));
  EXPECT_DOUBLE_EQ(nn::adjusted_rand_index(regions, after), 1.0);
  EXPECT_GT(nn::within_minus_between_cosine(x[0], regions), 0.5);
  // k-means with two clusters finds the same partition.
  EXPECT_DOUBLE_EQ(nn::adjusted_rand_index(regions, nn::kmeans(x[0], 2, 1, /*cosine=*/true)), 1.0);
}

// The whole model on an image of two constant regions with noise: with the attention term the
// object level's columns agree more within each region than without it.
TEST_F(Glom, ModelAttentionTightensIslandsOnTwoRegions) {
  nn::Glom model(nn::GlomOptions().image_size(32).patch_size(4).levels(2).dim(16).hidden(16).iterations(8)
                     .radii({1, 2}).betas({10, 20}).weight_attention(2.0));
  model->eval();
  torch::NoGradGuard no_grad;
  auto image = torch::zeros({1, 1, 32, 32});
  image.narrow(3, 0, 12).fill_(0.9);
  image = (image + 0.15 * torch::randn({1, 1, 32, 32})).clamp(0, 1);
  auto regions = torch::zeros({64}, torch::kInt64);
  for (int64_t i = 0; i < 64; ++i) regions[i] = (i % 8) < 3 ? 1 : 2;
  // Mean cosine similarity of the object level's columns within each region, and the number of
  // islands at a cosine threshold.
  auto agreement = [&](bool attention) {
    model->set_attention(attention);
    const auto emb = model->forward(image).levels[0].select(1, 1);  // [N, D]
    const auto normed = emb / emb.norm(2, 1, true);
    const auto sim = torch::matmul(normed, normed.t());
    const auto same = regions.unsqueeze(0).eq(regions.unsqueeze(1)).logical_and(torch::eye(64, torch::kBool).logical_not());
    return std::make_pair(sim.masked_select(same).mean().item<double>(),
                          nn::island_sizes(nn::threshold_islands(emb, 8, 8, 0.98)).size());
  };
  const auto with = agreement(true), without = agreement(false);
  EXPECT_GT(with.first, without.first + 0.02) << "with attention " << with.first << ", without " << without.first;
  EXPECT_LT(with.second, without.second) << "islands with attention " << with.second << ", without " << without.second;
}

TEST_F(Glom, ForegroundAriOnKnownPartitions) {
  const auto truth = torch::tensor({1, 1, 1, 2, 2, 2, 3, 3}, torch::kInt64);
  EXPECT_DOUBLE_EQ(nn::adjusted_rand_index(truth, truth), 1.0);
  EXPECT_DOUBLE_EQ(nn::adjusted_rand_index(truth, torch::tensor({7, 7, 7, 0, 0, 0, 5, 5}, torch::kInt64)), 1.0);  // renamed
  // Hand-computed: pairs(2,1,1,2 cells) = 2; rows (3,3) -> 6; columns (2,2,2) -> 3; 15 pairs:
  // expected 6 * 3 / 15 = 1.2, maximum 4.5: ARI = 0.8 / 3.3.
  EXPECT_NEAR(nn::adjusted_rand_index(torch::tensor({0, 0, 0, 1, 1, 1}), torch::tensor({0, 0, 1, 1, 2, 2})), 0.8 / 3.3, 1e-12);
  // Another: rows (2, 2) -> 2, columns (3, 1) -> 3, cells -> 1, 6 pairs: (1 - 1) / (2.5 - 1) = 0.
  EXPECT_NEAR(nn::adjusted_rand_index(torch::tensor({0, 0, 1, 1}), torch::tensor({0, 0, 0, 1})), 0.0, 1e-12);
  // Symmetric in its arguments.
  const auto p = torch::tensor({0, 1, 1, 2, 0, 2, 2, 1}, torch::kInt64);
  EXPECT_NEAR(nn::adjusted_rand_index(truth, p), nn::adjusted_rand_index(p, truth), 1e-12);
  // Foreground only: background pixels (0) do not count, whatever they are predicted as.
  const auto mask = torch::tensor({{0, 1, 1}, {0, 2, 2}}, torch::kInt64);
  EXPECT_DOUBLE_EQ(nn::foreground_ari(mask, torch::tensor({{5, 3, 3}, {3, 4, 4}}, torch::kInt64)), 1.0);
  EXPECT_LT(nn::foreground_ari(mask, torch::tensor({{0, 3, 4}, {0, 3, 4}}, torch::kInt64)), 0.0);
  EXPECT_TRUE(std::isnan(nn::foreground_ari(torch::zeros({2, 2}, torch::kInt64), torch::zeros({2, 2}, torch::kInt64))));
}

TEST_F(Glom, BaselinesOnASyntheticScene) {
  // Two separate blobs: connected components of the ink separate them perfectly; the patch
  // k-means baseline too.
  auto image = torch::zeros({16, 16});
  image.narrow(0, 0, 8).narrow(1, 0, 4).fill_(1.0);
  image.narrow(0, 8, 8).narrow(1, 12, 4).fill_(1.0);
  auto mask = torch::zeros({16, 16}, torch::kInt64);
  mask.narrow(0, 0, 8).narrow(1, 0, 4).fill_(1);
  mask.narrow(0, 8, 8).narrow(1, 12, 4).fill_(2);
  const auto components = nn::ink_components(image, 0.5);
  EXPECT_EQ(components.max().item<int64_t>(), 2);
  EXPECT_DOUBLE_EQ(nn::foreground_ari(mask, components), 1.0);
  const auto ink = nn::ink_patches(image, 4, 0.5);
  EXPECT_EQ(ink.sum().item<int64_t>(), 4);
  const auto clusters = nn::cluster_ink_patches(nn::pixel_position_features(image, 4, 4.0), ink, 4, 4, 2, 1, false);
  EXPECT_DOUBLE_EQ(nn::foreground_ari(mask, clusters), 1.0);
  const auto objects = nn::patch_objects(mask, 4);
  EXPECT_EQ(objects.sizes(), (std::vector<int64_t>{16}));
  EXPECT_EQ(objects[0].item<int64_t>(), 1);
  EXPECT_EQ(objects[15].item<int64_t>(), 2);
  EXPECT_EQ(objects[1].item<int64_t>(), 0);
}

TEST_F(Glom, PixelIslandsSplitAPatchOnTheBorderOfTwoObjects) {
  // Object 1 covers pixel columns 0-6, object 2 columns 7-15 (all 16 rows; 4 x 4 patches). The
  // patches of grid column 1 (pixel columns 4-7) hold pixels of both; their features lean to
  // object 1. One label per patch must give column 7 to object 1; read out per pixel, the
  // features interpolated there lean to the next patch, of object 2.
  auto mask = torch::ones({16, 16}, torch::kInt64);
  mask.narrow(1, 7, 9).fill_(2);
  auto features = torch::zeros({4, 4, 2});
  features.select(1, 0).select(1, 0).fill_(1.0);
  features.select(1, 1).copy_(torch::tensor({0.55, 0.45}).expand({4, 2}));
  features.select(1, 2).select(1, 1).fill_(1.0);
  features.select(1, 3).select(1, 1).fill_(1.0);
  features = features.reshape({16, 2});
  auto ink = torch::ones({16}, torch::kBool);
  const auto per_patch = nn::cluster_ink_patches(features, ink, 4, 4, 2, 1, true);
  const auto per_pixel = nn::cluster_ink_pixels(features, ink, 4, 4, 2, 1, true);
  EXPECT_LT(nn::foreground_ari(mask, per_patch), 1.0);
  EXPECT_EQ(per_patch[0][7].item<int64_t>(), per_patch[0][0].item<int64_t>());
  EXPECT_DOUBLE_EQ(nn::foreground_ari(mask, per_pixel), 1.0);
  // A patch without ink gets -1 and lends its features to no pixel: the bottom row of patches,
  // turned towards object 2 everywhere, leaves the labels of the rows above unchanged.
  auto partial_ink = ink.clone(), turned = features.clone();
  partial_ink.narrow(0, 12, 4).fill_(false);
  turned.narrow(0, 12, 4).copy_(torch::tensor({0.0, 1.0}).expand({4, 2}));
  const auto partial = nn::cluster_ink_pixels(turned, partial_ink, 4, 4, 2, 1, true);
  EXPECT_TRUE(partial.narrow(0, 12, 4).eq(-1).all().item<bool>());
  EXPECT_DOUBLE_EQ(nn::foreground_ari(mask.narrow(0, 0, 12), partial.narrow(0, 0, 12)), 1.0);
  // Euclidean centres give the same split.
  EXPECT_DOUBLE_EQ(nn::foreground_ari(mask, nn::cluster_ink_pixels(features, ink, 4, 4, 2, 1, false)), 1.0);
}

TEST_F(Glom, ImaginedIslandsSplitAPatchPixelByPixel) {
  // A 2 x 2 grid of 2 x 2 patches. Island 0 imagines ink in the left pixel column of every patch,
  // island 1 in the right one: inside each patch the two crossing digits are told apart.
  auto imagined = torch::zeros({2, 4, 4});
  imagined.select(0, 0).index_put_({torch::indexing::Slice(), torch::tensor({0, 2}, torch::kInt64)}, 0.9);
  imagined.select(0, 1).index_put_({torch::indexing::Slice(), torch::tensor({1, 3}, torch::kInt64)}, 0.7);
  auto ink = torch::tensor({true, true, true, false});
  const auto labels = nn::imagined_ink_pixels(imagined, ink, 2, 2);
  ASSERT_EQ(labels.sizes(), (std::vector<int64_t>{4, 4}));
  // Pixel columns 0 and 2 are the left columns of their patches, 1 and 3 the right ones.
  const auto expected = torch::tensor({0, 1, 0, 1}, torch::kInt64).expand({4, 4}).clone();
  expected.narrow(0, 2, 2).narrow(1, 2, 2).fill_(-1);  // the patch without ink
  EXPECT_TRUE(labels.equal(expected)) << labels;
  auto mask = torch::tensor({1, 2, 1, 2}, torch::kInt64).expand({4, 4}).clone();
  mask.narrow(0, 2, 2).narrow(1, 2, 2).fill_(0);
  EXPECT_DOUBLE_EQ(nn::foreground_ari(mask, labels), 1.0);
  EXPECT_THROW(nn::imagined_ink_pixels(torch::zeros({2, 4, 3}), ink, 2, 2), c10::Error);
}

TEST_F(Glom, ImaginingReadsTheTopDownFieldWithEachLocationsPosition) {
  torch::manual_seed(3);
  nn::Glom model(nn::GlomOptions().image_size(16).patch_size(4).levels(3).dim(8).hidden(16).iterations(1));
  torch::NoGradGuard no_grad;
  const auto one = torch::randn({1, 1, 8}).expand({1, 16, 8});
  const auto from_top = model->imagine(one, 2);
  ASSERT_EQ(from_top.sizes(), (std::vector<int64_t>{1, 16, 16}));
  // The same embedding everywhere imagines different pixels at different places (the top-down nets
  // see the position) ...
  EXPECT_FALSE(from_top[0][0].allclose(from_top[0][5]));
  // ... but read from level 0 it goes straight to the decoder, which sees no position.
  const auto from_bottom = model->imagine(one, 0);
  EXPECT_TRUE(from_bottom[0][0].allclose(from_bottom[0][5]));
  // Scaling an embedding does not change what it imagines (layer-normed first, as an update is).
  EXPECT_TRUE(model->imagine(one * 3.0, 2).allclose(from_top, 1e-4, 1e-5));
  EXPECT_THROW(model->imagine(one, 3), c10::Error);
  EXPECT_THROW(model->imagine(torch::zeros({1, 9, 8}), 2), c10::Error);
}

TEST_F(Glom, SpectralIslandsCutTheAgreementGraph) {
  // Two blobs of ink patches (8 x 8 grid, 2 x 2 patches), rows 2-5 of grid columns 0-2 and 5-7,
  // joined by a bridge along row 3: every patch has the same features, so k-means cannot split
  // them; the normalised cut of the neighbourhood graph cuts the bridge in its middle.
  auto ink = torch::zeros({8, 8}, torch::kBool);
  ink.narrow(0, 2, 4).narrow(1, 0, 3).fill_(true);
  ink.narrow(0, 2, 4).narrow(1, 5, 3).fill_(true);
  ink[3].narrow(0, 3, 2).fill_(true);
  auto mask = torch::zeros({16, 16}, torch::kInt64);
  mask.narrow(1, 0, 8).fill_(1);
  mask.narrow(1, 8, 8).fill_(2);
  mask.masked_fill_(nn::patch_labels_to_pixels(ink.reshape({-1}).to(torch::kInt64), 8, 2).eq(0), 0);
  const auto same = torch::ones({64, 3});
  const auto cut = nn::spectral_ink_patches(same, ink.reshape({-1}), 8, 2, 2, 1, 5.0, 1);
  EXPECT_DOUBLE_EQ(nn::foreground_ari(mask, cut), 1.0);
  EXPECT_TRUE(cut.masked_select(mask.eq(0)).eq(-1).all().item<bool>());
  // One rectangle of ink in two halves that disagree: the cut follows the features.
  auto features = torch::zeros({8, 8, 2});
  features.narrow(1, 0, 3).select(2, 0).fill_(1.0);
  features.narrow(1, 3, 5).select(2, 1).fill_(1.0);
  auto halves = torch::ones({16, 16}, torch::kInt64);
  halves.narrow(1, 6, 10).fill_(2);
  const auto by_features = nn::spectral_ink_patches(features.reshape({64, 2}), torch::ones({64}, torch::kBool), 8, 2, 2, 2, 10.0, 1);
  EXPECT_DOUBLE_EQ(nn::foreground_ari(halves, by_features), 1.0);
}

TEST_F(Glom, ClassifierReadoutLabelsEachInkPatchByTheImagesVotedClasses) {
  // A 2 x 2 grid of 2 x 2 patches, 4 classes. Patches 0 and 1 say class 2, then class 0; patch 2
  // says class 3 most of all but prefers class 0 to class 2; patch 3 holds no ink. The ink votes
  // for classes 2 and 0 (class 3 has one supporter only), so patch 2 joins class 0, not class 3.
  auto logits = torch::tensor({2.0f, 0.0f, 5.0f, 0.0f,  //
                               2.0f, 0.0f, 4.0f, 0.0f,  //
                               3.0f, -9.0f, 0.0f, 6.0f,  //
                               0.0f, 9.0f, 0.0f, 0.0f})
                    .view({4, 4});
  const auto ink = torch::tensor({true, true, true, false});
  const auto labels = nn::classify_ink_patches(logits, ink, 2, 2, 2);
  ASSERT_EQ(labels.sizes(), (std::vector<int64_t>{4, 4}));
  const auto at = [&](int64_t r, int64_t c) { return labels[r][c].item<int64_t>(); };
  EXPECT_EQ(at(0, 0), at(1, 1));  // patch 0
  EXPECT_EQ(at(0, 2), at(0, 0));  // patch 1: the same class
  EXPECT_NE(at(2, 0), at(0, 0));  // patch 2: the other voted class
  EXPECT_GE(at(2, 0), 0);
  EXPECT_EQ(at(3, 3), -1);        // patch 3: no ink
  // With k = 1 every ink patch joins the most voted class.
  const auto one = nn::classify_ink_patches(logits, ink, 2, 2, 1);
  EXPECT_EQ(one.eq(0).sum().item<int64_t>(), 12);
  EXPECT_THROW(nn::classify_ink_patches(logits, ink, 2, 2, 5), c10::Error);
}

data::Dataset toy_digits() {
  // Ten "digits" (filled squares of different sizes), one per class, 28 x 28.
  data::Dataset d;
  d.images = torch::zeros({10, 1, 28, 28});
  d.labels = torch::arange(10, torch::kInt64);
  for (int64_t c = 0; c < 10; ++c) d.images[c][0].narrow(0, 6, 10 + c).narrow(1, 8, 12).fill_(1.0);
  return d;
}

TEST_F(Glom, ScenesAreSeededAndMeetTheirLayout) {
  const auto digits = toy_digits();
  for (auto layout : {data::SceneLayout::Separated, data::SceneLayout::Touching, data::SceneLayout::Overlapping}) {
    const auto opts = data::SceneOptions().min_digits(2).max_digits(2).layout(layout).seed(7);
    const auto a = data::make_scenes(digits, 12, opts), b = data::make_scenes(digits, 12, opts);
    EXPECT_TRUE(torch::equal(a.images, b.images));
    EXPECT_TRUE(torch::equal(a.masks, b.masks));
    EXPECT_FALSE(torch::equal(a.images, data::make_scenes(digits, 12, data::SceneOptions(opts).seed(8)).images));
    EXPECT_EQ(a.images.sizes(), (std::vector<int64_t>{12, 1, 56, 56}));
    EXPECT_TRUE(torch::equal(a.labels.sum(1), torch::full({12}, 2.0f)));
    for (int64_t n = 0; n < 12; ++n) {
      EXPECT_EQ(a.masks[n].max().item<int64_t>(), 2);
      const auto ink_components = nn::ink_components(a.images[n][0], 0.3).max().item<int64_t>();
      // Solid squares: separated ones form two components of ink, touching or overlapping ones one.
      EXPECT_EQ(ink_components, layout == data::SceneLayout::Separated ? 2 : 1) << data::scene_layout_name(layout) << " " << n;
    }
  }
  EXPECT_THROW(data::parse_scene_layout("stacked"), InputError);
}

TEST_F(Glom, LocationLabelLossPutsInkLocationsOnTheImagesClasses) {
  torch::manual_seed(3);
  nn::Glom model(nn::GlomOptions().image_size(16).patch_size(4).levels(2).dim(8).hidden(8).iterations(2)
                     .radii({1, 2}).betas({2, 4}));
  auto images = torch::zeros({2, 1, 16, 16});
  images[0][0].slice(0, 0, 4).slice(1, 0, 4).fill_(1.0);  // ink in patch 0 of image 0
  images[1][0].slice(0, 8, 12).slice(1, 4, 8).fill_(0.8);  // ink in patch 9 (row 2, column 1) of image 1
  images[1][0][0][15] = 0.2;                              // faint: below the ink threshold of 0.3
  auto labels = torch::zeros({2, 10});
  labels[0][3] = 1;
  labels[1][1] = 1;
  labels[1][7] = 1;
  const auto options = nn::GlomLossOptions().mask_fraction(0);
  const auto loss = nn::glom_loss(model, images, labels, nn::GlomLossOptions(options).location_label(1.0));
  const auto log_probs = model->forward(images).location_logits.log_softmax(-1);
  const double expected = -(log_probs[0][0][3].item<double>() +
                            torch::logsumexp(torch::stack({log_probs[1][9][1], log_probs[1][9][7]}), 0).item<double>()) / 2;
  EXPECT_NEAR(loss.location_label.item<double>(), expected, 1e-5);
  // Off by default, and then not part of the total.
  EXPECT_EQ(nn::glom_loss(model, images, labels, options).location_label.item<double>(), 0.0);
  // Commitment: the entropy over the image's classes at ink locations. Image 0 has one class (no
  // choice: 0); image 1's ink patch chooses between classes 1 and 7.
  const auto commitment = nn::glom_loss(model, images, labels, nn::GlomLossOptions(options).commitment(1.0)).commitment;
  const auto pair = torch::stack({log_probs[1][9][1], log_probs[1][9][7]}).log_softmax(0);
  EXPECT_NEAR(commitment.item<double>(), -(pair.exp() * pair).sum().item<double>() / 2, 1e-5);
  EXPECT_EQ(nn::glom_loss(model, images, labels, options).commitment.item<double>(), 0.0);
  // An image without classes adds nothing rather than NaN.
  const auto no_classes = nn::glom_loss(model, images, torch::zeros({2, 10}), nn::GlomLossOptions(options).commitment(1.0));
  EXPECT_TRUE(std::isfinite(no_classes.total.item<double>()));
}

TEST_F(Glom, SameImageNegativesBeyondTheRadiusJoinTheContrast) {
  auto contrast = [](const nn::GlomOptions& model_options, const torch::Tensor& images, bool same_image) {
    torch::manual_seed(11);
    nn::Glom model(model_options);
    torch::manual_seed(12);  // the same sampled locations in every call
    const auto options = nn::GlomLossOptions().mask_fraction(0).samples(16).same_image_negatives(same_image);
    return nn::glom_loss(model, images, torch::zeros({images.size(0), 10}), options).contrast.item<double>();
  };
  const auto base = nn::GlomOptions().image_size(16).patch_size(4).levels(2).dim(8).hidden(8).iterations(2).betas({2, 4});
  torch::manual_seed(4);
  const auto images = torch::rand({2, 1, 16, 16});
  // More negatives in the softmax's denominator: a strictly larger InfoNCE loss.
  const auto local = nn::GlomOptions(base).radii({1, 1});
  EXPECT_GT(contrast(local, images, true), contrast(local, images, false) + 1e-3);
  // One image: no negatives without them (no term), a finite positive term with them.
  const auto one = images.narrow(0, 0, 1);
  EXPECT_EQ(contrast(local, one, false), 0.0);
  EXPECT_GT(contrast(local, one, true), 0.0);
  // A radius covering the whole 4 x 4 grid (or global attention) leaves no location beyond it.
  for (int64_t radius : {3, -1}) {
    const auto wide = nn::GlomOptions(base).radii({1, radius});
    EXPECT_DOUBLE_EQ(contrast(wide, images, true), contrast(wide, images, false)) << radius;
  }
}

TEST_F(Glom, MasksNeverReachTheLoss) {
  // The objective takes images and image-level labels only; scenes differing only in their masks
  // give the same loss under the same random state.
  static_assert(std::is_invocable_r_v<nn::GlomLoss, decltype(&nn::glom_loss), nn::Glom&, const torch::Tensor&,
                                      const torch::Tensor&, const nn::GlomLossOptions&>);
  auto scenes = data::make_scenes(toy_digits(), 4, data::SceneOptions().seed(3));
  nn::Glom model(nn::GlomOptions().levels(2).dim(8).hidden(8).iterations(2).radii({1, 2}).betas({2, 4}));
  torch::manual_seed(5);
  const auto first = nn::glom_loss(model, scenes.images, scenes.labels, nn::GlomLossOptions()).total.item<double>();
  scenes.masks = torch::randint(0, 3, scenes.masks.sizes(), torch::kInt64);
  torch::manual_seed(5);
  const auto second = nn::glom_loss(model, scenes.images, scenes.labels, nn::GlomLossOptions()).total.item<double>();
  EXPECT_EQ(first, second);
  EXPECT_TRUE(std::isfinite(first));
}

TEST_F(Glom, TrainingLowersTheLoss) {
  auto scenes = data::make_scenes(toy_digits(), 16, data::SceneOptions().min_digits(1).max_digits(2).seed(4));
  nn::Glom model(nn::GlomOptions().levels(2).dim(16).hidden(16).iterations(3).radii({1, 2}).betas({5, 10}));
  torch::optim::Adam opt(model->parameters(), torch::optim::AdamOptions(3e-3));
  const auto options = nn::GlomLossOptions().mask_fraction(0);
  const double start = nn::glom_loss(model, scenes.images, scenes.labels, options).total.item<double>();
  for (int step = 0; step < 30; ++step) {
    opt.zero_grad();
    auto loss = nn::glom_loss(model, scenes.images, scenes.labels, options);
    loss.total.backward();
    opt.step();
  }
  const double end = nn::glom_loss(model, scenes.images, scenes.labels, options).total.item<double>();
  EXPECT_LT(end, 0.8 * start) << "start " << start << " end " << end;
}

// The whole study on a tiny model: the results file, the report, and test-time settling scored
// beyond the trained iterations while the headline stays at the trained count.
// The whole GLOM study on a model small enough to train in seconds (2 levels, 2 iterations, 3 steps).
std::vector<std::string> tiny_study() {
  return {"glom.levels=2", "glom.radii=[1, 2]", "glom.dim=8", "glom.hidden=8", "glom.iterations=2", "glom.steps=3",
          "glom.batch=4", "glom.train_scenes=32", "glom.test_scenes=4", "glom.validation_scenes=4", "glom.mnist_test=20",
          "glom.train_ablation=false"};
}

TEST_F(Glom, StudyExperimentWritesSettlingScores) {
  DISTILLERY_REQUIRE_MNIST();
  testing::TempDir tmp;
  auto options = testing::experiment_options(tmp, "glom", "quick");
  options.overrides = tiny_study();
  options.overrides.push_back("glom.settle_iterations=4");
  options.overrides.push_back("glom.train_layout=touching");
  const auto results = experiments::run_glom_study(options);
  EXPECT_EQ(results.at("experiment"), "glom");
  EXPECT_THAT(results.at("notes")[0].get<std::string>(), ::testing::HasSubstr("the rest 2-3 digits laid out touching"));
  const auto& per_iteration = results.at("detail").at("touching").at("fg_ari_iteration_level");
  ASSERT_EQ(per_iteration.size(), 5u);  // start, 2 trained iterations, 2 more of settling
  bool settled = false;
  for (const auto& row : results.at("rows")) {
    if (row.at("id") == "fg_ari_settled_touching") {
      settled = true;
      EXPECT_DOUBLE_EQ(row.at("ours").get<double>(), per_iteration[4][1].get<double>());
    }
    if (row.at("id") == "fg_ari_touching") {
      EXPECT_DOUBLE_EQ(row.at("ours").get<double>(), per_iteration[2][1].get<double>());
    }
  }
  EXPECT_TRUE(settled);
  // The patch-majority reference is computed from the masks, so it scores well even for this
  // untrained model; overlapping digits share patches, which keeps it below 1 there.
  const auto& touching = results.at("detail").at("touching").at("baselines");
  const auto& overlapping = results.at("detail").at("overlapping").at("baselines");
  EXPECT_GT(touching.at("patch_reference").get<double>(), 0.8);
  EXPECT_LT(overlapping.at("patch_reference").get<double>(), touching.at("patch_reference").get<double>());
  // Read out per pixel, the same majority labels follow the digits' outlines inside the patches.
  EXPECT_GT(touching.at("patch_reference_per_pixel").get<double>(), touching.at("patch_reference").get<double>());
  // Every readout is reported per level, and the headline rows agree with the detail.
  const auto& detail = results.at("detail").at("touching");
  ASSERT_EQ(detail.at("fg_ari_per_pixel_level").size(), 2u);
  ASSERT_EQ(detail.at("fg_ari_spectral_level").size(), 2u);
  ASSERT_EQ(detail.at("fg_ari_imagined_level").size(), 2u);
  EXPECT_TRUE(detail.at("fg_ari_imagined_level")[0].is_null());  // level 0 has no top-down field to read
  bool classifier_row = false;
  int centred_rows = 0, imagined_rows = 0;
  for (const auto& row : results.at("rows")) {
    if (row.at("id") == "fg_ari_per_pixel_touching") {
      EXPECT_DOUBLE_EQ(row.at("ours").get<double>(), detail.at("fg_ari_per_pixel_level")[1].get<double>());
    }
    if (row.at("id") == "fg_ari_spectral_touching") {
      EXPECT_DOUBLE_EQ(row.at("ours").get<double>(), detail.at("fg_ari_spectral_level")[1].get<double>());
    }
    if (row.at("id") == "fg_ari_imagined_touching") {
      ++imagined_rows;
      EXPECT_DOUBLE_EQ(row.at("ours").get<double>(), detail.at("fg_ari_imagined_level")[1].get<double>());
    }
    if (row.at("id") == "imagined_reference_touching") {
      ++imagined_rows;
      EXPECT_GE(row.at("ours").get<double>(), -1.0);
      EXPECT_LE(row.at("ours").get<double>(), 1.0);
    }
    if (row.at("id") == "fg_ari_centred_touching" || row.at("id") == "fg_ari_centred_per_pixel_touching") {
      ++centred_rows;
      EXPECT_GE(row.at("ours").get<double>(), -1.0);
      EXPECT_LE(row.at("ours").get<double>(), 1.0);
    }
    if (row.at("id") == "fg_ari_classifier_touching") {
      classifier_row = true;
      EXPECT_GE(row.at("ours").get<double>(), -1.0);
      EXPECT_LE(row.at("ours").get<double>(), 1.0);
    }
    if (row.at("id") == "mnist_top_level_vote") {
      EXPECT_GE(row.at("ours").get<double>(), 0.0);
      EXPECT_LE(row.at("ours").get<double>(), 100.0);
    }
  }
  EXPECT_TRUE(classifier_row);
  EXPECT_EQ(centred_rows, 2);
  EXPECT_EQ(imagined_rows, 2);
  // The spread of the per-scene scores: every test scene counted, quantiles in order, the fraction
  // below 0.5 counted over the 4 scenes and consistent with the median.
  const auto& spread = detail.at("top_level_scenes").at("per_patch");
  EXPECT_EQ(spread.at("scenes").get<int64_t>(), 4);
  EXPECT_LE(spread.at("p10").get<double>(), spread.at("p25").get<double>());
  EXPECT_LE(spread.at("p25").get<double>(), spread.at("median").get<double>());
  EXPECT_LE(spread.at("median").get<double>(), spread.at("p75").get<double>());
  const double below = spread.at("fraction_below_0.5").get<double>();
  EXPECT_TRUE(below == 0.0 || below == 0.25 || below == 0.5 || below == 0.75 || below == 1.0) << below;
  // Of 4 sorted scores the median is the third: below 0.5 exactly when at least three are.
  EXPECT_EQ(spread.at("median").get<double>() < 0.5, below >= 0.75) << below;
  // The readout chosen on the validation scenes: the best of the ranking, and its row is that
  // readout's score on the test scenes, as the detail or its own row reports it.
  std::map<std::string, double> row_value;
  for (const auto& row : results.at("rows")) {
    if (row.at("ours").is_number()) row_value[row.at("id").get<std::string>()] = row.at("ours").get<double>();
  }
  EXPECT_THAT(results.at("notes").dump(), ::testing::HasSubstr("scored on 4 new two-digit scenes per layout of MNIST-train digits"));
  for (const std::string layout : {"touching", "overlapping"}) {
    const auto& chosen = results.at("detail").at(layout).at("validated_readout");
    EXPECT_EQ(chosen.at("scenes").get<int64_t>(), 4);
    const auto& ranking = chosen.at("best_on_validation");
    ASSERT_EQ(ranking.size(), 5u);
    EXPECT_EQ(ranking[0].at("readout"), chosen.at("readout"));
    for (size_t r = 1; r < ranking.size(); ++r) {
      EXPECT_GE(ranking[r - 1].at("validation").get<double>(), ranking[r].at("validation").get<double>());
    }
    const std::string name = chosen.at("readout").get<std::string>();
    const auto& d = results.at("detail").at(layout);
    int level = -1, iteration = -1;
    double expected = std::nan("");
    if (std::sscanf(name.c_str(), "k-means per patch, level %d, iteration %d", &level, &iteration) == 2) {
      expected = d.at("fg_ari_iteration_level")[iteration][level].get<double>();
    } else if (std::sscanf(name.c_str(), "k-means per pixel, level %d", &level) == 1) {
      expected = d.at("fg_ari_per_pixel_level")[level].get<double>();
    } else if (std::sscanf(name.c_str(), "normalised cut, level %d", &level) == 1) {
      expected = d.at("fg_ari_spectral_level")[level].get<double>();
    } else if (std::sscanf(name.c_str(), "k-means islands imagined per pixel, level %d", &level) == 1) {
      expected = d.at("fg_ari_imagined_level")[level].get<double>();
    } else if (name == "centred k-means per patch, top level") {
      expected = row_value.at("fg_ari_centred_" + layout);
    } else if (name == "centred k-means per pixel, top level") {
      expected = row_value.at("fg_ari_centred_per_pixel_" + layout);
    }
    ASSERT_TRUE(std::isfinite(expected)) << "unknown readout " << name;
    EXPECT_DOUBLE_EQ(row_value.at("fg_ari_validated_" + layout), expected) << name;
    EXPECT_DOUBLE_EQ(chosen.at("test").get<double>(), expected) << name;
  }
  EXPECT_TRUE(std::filesystem::exists(options.runs_dir + "/glom-quick/report.html"));
  EXPECT_TRUE(std::filesystem::exists(options.runs_dir + "/glom-quick/model-seed1.pt"));
  EXPECT_TRUE(std::filesystem::exists(options.results_path));
}

// A folder of trained models is reused only by a run that would train the same models: scoring
// keys may change, training keys may not (a 3-step model is never reported as a 4-step one).
TEST_F(Glom, StudyReusesModelsOnlyForTheirTrainingConfig) {
  DISTILLERY_REQUIRE_MNIST();
  testing::TempDir tmp;
  auto options = testing::experiment_options(tmp, "glom", "quick");
  auto tiny = tiny_study();
  tiny.push_back("glom.train_iterations=[1, 3]");
  options.overrides = tiny;
  experiments::run_glom_study(options);
  const std::string model = options.runs_dir + "/glom-quick/model-seed1.pt";
  ASSERT_TRUE(std::filesystem::exists(options.runs_dir + "/glom-quick/model-seed1.yaml"));
  const auto trained_at = std::filesystem::last_write_time(model);

  options.overrides = tiny;
  options.overrides.push_back("glom.settle_iterations=4");  // scoring only: the model is loaded
  const auto rescored = experiments::run_glom_study(options);
  EXPECT_EQ(rescored.at("detail").at("touching").at("fg_ari_iteration_level").size(), 5u);
  EXPECT_EQ(std::filesystem::last_write_time(model), trained_at);

  options.overrides = tiny;
  options.overrides.push_back("glom.steps=4");
  const auto message = testing::input_error_message([&] { experiments::run_glom_study(options); });
  EXPECT_THAT(message, ::testing::HasSubstr("model-seed1.pt was trained with glom.steps = 3, this run asks for 4"));
  EXPECT_EQ(std::filesystem::last_write_time(model), trained_at);

  // A damaged checkpoint in the folder is an input error naming it, and it is left as it was.
  options.overrides = tiny;
  const auto trained_bytes = std::filesystem::file_size(model);
  std::filesystem::resize_file(model, trained_bytes / 2);
  EXPECT_THAT(testing::input_error_message([&] { experiments::run_glom_study(options); }),
              ::testing::HasSubstr(model + " is damaged or does not fit this run's model"));
  EXPECT_EQ(std::filesystem::file_size(model), trained_bytes / 2);

  options.overrides = tiny;
  options.overrides.back() = "glom.train_iterations=[3, 1]";
  options.fresh = true;
  EXPECT_THAT(testing::input_error_message([&] { experiments::run_glom_study(options); }),
              ::testing::HasSubstr("glom.train_iterations: expected [min, max] with min <= max, got [3, 1]"));

  options.overrides = tiny;
  options.overrides.push_back("glom.seeds=[]");
  EXPECT_THAT(testing::input_error_message([&] { experiments::run_glom_study(options); }), ::testing::HasSubstr("glom.seeds: no seeds"));
}

// Every tensor of a saved module, by its dotted name (submodules are nested archives).
std::map<std::string, torch::Tensor> archive_tensors(const std::string& path) {
  std::map<std::string, torch::Tensor> tensors;
  std::function<void(torch::serialize::InputArchive&, const std::string&)> walk = [&](torch::serialize::InputArchive& archive,
                                                                                     const std::string& prefix) {
    for (const auto& key : archive.keys()) {
      torch::Tensor tensor;
      torch::serialize::InputArchive child;
      if (archive.try_read(key, tensor)) {
        tensors[prefix + key] = tensor;
      } else if (archive.try_read(key, child)) {
        walk(child, prefix + key + ".");
      }
    }
  };
  torch::serialize::InputArchive root;
  root.load_from(path);
  walk(root, "");
  return tensors;
}

// glom.init_from continues the same seed's model of an earlier run: at a learning rate too small to
// move it, the continued model is the earlier one; a folder without it is an input error.
TEST_F(Glom, StudyContinuesTrainingFromAnEarlierRun) {
  DISTILLERY_REQUIRE_MNIST();
  testing::TempDir first_dir, second_dir;
  auto first = testing::experiment_options(first_dir, "glom", "quick");
  first.overrides = tiny_study();
  experiments::run_glom_study(first);
  const std::string earlier = first.runs_dir + "/glom-quick";

  auto second = testing::experiment_options(second_dir, "glom", "quick");
  second.overrides = tiny_study();
  second.overrides.push_back("glom.lr=1e-9");
  second.overrides.push_back("glom.init_from=" + earlier);
  const auto results = experiments::run_glom_study(second);
  EXPECT_THAT(results.at("notes").dump(), ::testing::HasSubstr("Continued: each model started from the same seed's model in " + earlier));
  const auto before = archive_tensors(earlier + "/model-seed1.pt");
  const auto after = archive_tensors(second.runs_dir + "/glom-quick/model-seed1.pt");
  ASSERT_EQ(before.size(), after.size());
  ASSERT_FALSE(before.empty());
  for (const auto& [name, value] : before) {
    ASSERT_TRUE(after.count(name)) << name;
    EXPECT_TRUE(torch::allclose(value, after.at(name), 0, 1e-6)) << name;
  }

  auto missing = testing::experiment_options(second_dir, "glom", "quick");
  missing.overrides = tiny_study();
  missing.overrides.push_back("glom.init_from=" + second_dir.path().string() + "/nowhere");
  missing.fresh = true;
  EXPECT_THAT(testing::input_error_message([&] { experiments::run_glom_study(missing); }),
              ::testing::HasSubstr("glom.init_from: " + second_dir.path().string() + "/nowhere has no model-seed1.pt"));

  // A damaged model is an input error that names the key and the file, whichever exception LibTorch throws.
  const auto damaged = second_dir.path() / "damaged";
  std::filesystem::create_directories(damaged);
  for (const std::string& bytes : {std::string("not a zip archive"), std::string("PK\x03\x04 truncated")}) {
    std::ofstream(damaged / "model-seed1.pt", std::ios::binary) << bytes;
    missing.overrides.back() = "glom.init_from=" + damaged.string();
    EXPECT_THAT(testing::input_error_message([&] { experiments::run_glom_study(missing); }),
                ::testing::HasSubstr("glom.init_from: " + (damaged / "model-seed1.pt").string()));
  }
}

// `distillery islands`: a trained study model parses an image file. Every ink pixel lands in one
// island at every level, k-means gives at most the islands asked for, and the picture shows the
// input and each level side by side.
TEST_F(Glom, IslandsOfAnImageFileFromAStudyModel) {
  DISTILLERY_REQUIRE_MNIST();
  testing::TempDir tmp;
  auto options = testing::experiment_options(tmp, "glom", "quick");
  options.overrides = tiny_study();
  experiments::run_glom_study(options);
  const std::string model = options.runs_dir + "/glom-quick/model-seed1.pt";

  // A two-digit scene saved the way a user would have it: dark ink on a light 112 x 112 page.
  const auto scene = data::make_scenes(toy_digits(), 1, data::SceneOptions().max_digits(2).seed(9)).images[0][0];
  const auto page = 1.0 - torch::nn::functional::interpolate(scene.view({1, 1, 56, 56}),
                                                              torch::nn::functional::InterpolateFuncOptions()
                                                                  .size(std::vector<int64_t>{112, 112})
                                                                  .mode(torch::kNearest))
                              .view({112, 112});
  const std::string image = (tmp.path() / "scene.png").string();
  report::write_png(image, page);
  const auto prepared = data::prepare_scene(report::read_grey_image(image));
  ASSERT_EQ(prepared.sizes(), (std::vector<int64_t>{56, 56}));
  EXPECT_LT((prepared - scene).abs().max().item<double>(), 0.01);  // polarity restored, size halved by area averaging
  const int64_t ink_pixels = prepared.gt(0.3).sum().item<int64_t>();
  ASSERT_GT(ink_pixels, 0);

  for (const int64_t objects : {2, 0}) {
    const auto out = (tmp.path() / ("pictures" + std::to_string(objects))).string();
    const auto parsed = experiments::parse_image_files(model, {image}, objects, 0.9, out);
    ASSERT_EQ(parsed.size(), 1u);
    const auto& levels = parsed[0].at("levels");
    ASSERT_EQ(levels.size(), 2u);  // tiny_study: 2 levels
    for (const auto& level : levels) {
      int64_t total = 0;
      for (const auto& n : level.at("ink_pixels")) total += n.get<int64_t>();
      EXPECT_EQ(total, ink_pixels) << level.dump();
      EXPECT_EQ(level.at("islands").get<size_t>(), level.at("ink_pixels").size());
      if (objects > 0) {
        EXPECT_LE(level.at("islands").get<int64_t>(), objects);
      }
    }
    EXPECT_GE(parsed[0].at("digits").size(), 1u);
    const auto picture = report::read_grey_image(parsed[0].at("picture").get<std::string>());
    EXPECT_EQ(picture.size(1), 3 * (4 * 56 + 2) + 2);  // input + 2 levels, each pixel 4 x 4
  }

  const std::string broken = options.runs_dir + "/glom-quick/broken.pt";
  std::ofstream(broken, std::ios::binary) << "not a model";
  std::filesystem::copy_file(options.runs_dir + "/glom-quick/model-seed1.yaml", options.runs_dir + "/glom-quick/broken.yaml");
  EXPECT_THAT(testing::input_error_message([&] { experiments::parse_image_files(broken, {image}, 2, 0.9, tmp.path().string()); }),
              ::testing::HasSubstr("broken.pt: not a GLOM model of the options in"));
  std::filesystem::remove(options.runs_dir + "/glom-quick/model-seed1.yaml");
  EXPECT_THAT(testing::input_error_message([&] { experiments::parse_image_files(model, {image}, 2, 0.9, tmp.path().string()); }),
              ::testing::HasSubstr("model-seed1.yaml is not beside it"));
}

}  // namespace
}  // namespace distillery
