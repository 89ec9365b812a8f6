// The locality study (issue 6): location networks that share no weights, retina scenes and
// foveation, the consensus teacher, the schemes' use of labels, and a small end-to-end run on
// MNIST where saccade distillation moves the fovea's knowledge to the periphery.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "distillery/config.h"
#include "distillery/data/dataset.h"
#include "distillery/data/retina_scenes.h"
#include "distillery/distill/locality.h"
#include "distillery/experiments/locality.h"
#include "distillery/nn/retina.h"
#include "test_support.h"

#ifndef DISTILLERY_SOURCE_DIR
#error "tests/CMakeLists.txt must define DISTILLERY_SOURCE_DIR"
#endif

namespace distillery {
namespace {

using distill::LocalityOptions;
using distill::LocalityScheme;
using testing::SeededTest;

class LocalityTest : public SeededTest {};

// Random images and labels: enough to run every scheme, not to learn anything.
data::Dataset noise_dataset(int64_t n, uint64_t seed) {
  torch::manual_seed(seed);
  return {torch::rand({n, 1, 28, 28}), torch::randint(0, 10, {n}, torch::kInt64)};
}

LocalityOptions tiny_options(LocalityScheme scheme, bool foveate) {
  return LocalityOptions()
      .retina(data::RetinaOptions().jitter(2).foveate(foveate))
      .scheme(scheme)
      .hidden({16})
      .epochs(1)
      .batch_per_location(4)
      .seed(7);
}

std::vector<torch::Tensor> parameters_of(const distill::RetinaNets& nets) {
  std::vector<torch::Tensor> out;
  for (const auto& p : nets->parameters()) out.push_back(p.detach().clone());
  return out;
}

bool same_tensors(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!torch::equal(a[i], b[i])) return false;
  }
  return true;
}

TEST_F(LocalityTest, LocationMLPShapesAndChecks) {
  nn::LocationMLP net(nn::LocationMLPOptions().locations(4).in_features(20).hidden({8, 6}).num_classes(10));
  EXPECT_EQ(net->forward(torch::randn({4, 5, 20})).sizes(), (std::vector<int64_t>{4, 5, 10}));
  EXPECT_EQ(net->forward(torch::randn({4, 3, 4, 5})).sizes(), (std::vector<int64_t>{4, 3, 10}));  // flattened views
  EXPECT_EQ(net->parameters_per_location(), 20 * 8 + 8 + 8 * 6 + 6 + 6 * 10 + 10);
  EXPECT_THROW(net->forward(torch::randn({3, 5, 20})), c10::Error);  // wrong number of locations
  EXPECT_THROW(net->forward(torch::randn({4, 5, 21})), c10::Error);  // wrong features
}

TEST_F(LocalityTest, LocationNetworksShareNoWeights) {
  const int64_t locations = 5;
  nn::LocationMLP net(nn::LocationMLPOptions().locations(locations).in_features(12).hidden({7}).num_classes(3));
  auto views = torch::randn({locations, 6, 12});
  const int64_t i = 2;
  auto logits = net->forward(views);
  // A loss at location i reaches only location i's weights.
  torch::nn::functional::cross_entropy(logits[i], torch::randint(0, 3, {6}, torch::kInt64)).backward();
  for (const auto& p : net->parameters()) {
    ASSERT_TRUE(p.grad().defined());
    for (int64_t j = 0; j < locations; ++j) {
      const double norm = p.grad()[j].abs().sum().item<double>();
      if (j == i) EXPECT_GT(norm, 0.0) << "location " << j;
      else EXPECT_EQ(norm, 0.0) << "location " << j << " received gradient from location " << i << "'s loss";
    }
  }
  // Changing location i's input changes no other location's output.
  torch::NoGradGuard no_grad;
  auto changed = views.clone();
  changed[i].normal_();
  auto after = net->forward(changed);
  for (int64_t j = 0; j < locations; ++j) {
    if (j != i) {
      EXPECT_TRUE(torch::equal(after[j], logits[j].detach()));
    }
  }
  EXPECT_FALSE(torch::allclose(after[i], logits[i].detach()));
  // Locations start from different weights (independent draws, not copies).
  for (const auto& p : net->parameters()) EXPECT_FALSE(torch::equal(p[0], p[1]));
}

TEST_F(LocalityTest, ScenesPlaceDigitsInCellsAndWindowsCutThem) {
  const data::RetinaOptions retina = data::RetinaOptions().jitter(3);
  EXPECT_EQ(data::retina_locations(retina), 9);
  EXPECT_EQ(data::fovea_location(retina), 4);
  auto digits = torch::rand({6, 1, 28, 28});
  auto cells = torch::tensor({0, 4, 8, 3, 1, 7}, torch::kInt64);
  auto no_shift = torch::zeros({6, 2}, torch::kInt64);
  auto canvas = data::compose_scenes(digits, cells, no_shift, retina);
  ASSERT_EQ(canvas.sizes(), (std::vector<int64_t>{6, 1, 84, 84}));
  auto windows = data::retina_windows(canvas, retina);
  ASSERT_EQ(windows.sizes(), (std::vector<int64_t>{6, 9, 28, 28}));
  for (int64_t b = 0; b < 6; ++b) {
    const int64_t c = cells[b].item<int64_t>();
    EXPECT_TRUE(torch::equal(windows[b][c], digits[b][0]));
    EXPECT_TRUE(torch::equal(canvas[b][0].slice(0, 28 * (c / 3), 28 * (c / 3) + 28).slice(1, 28 * (c % 3), 28 * (c % 3) + 28),
                             digits[b][0]));
    auto elsewhere = windows[b].clone();
    elsewhere[c].zero_();
    EXPECT_EQ(elsewhere.abs().sum().item<double>(), 0.0);  // nothing in the other windows
  }
  // With shifts, a location sees what own_window says, and the part pushed out of the cell lands in
  // the neighbouring window.
  auto shifts = torch::tensor({{3, -2}, {-3, 3}, {0, 1}, {2, 2}, {-1, -3}, {3, 0}}, torch::kInt64);
  auto shifted = data::retina_windows(data::compose_scenes(digits, cells, shifts, retina), retina);
  auto own = data::own_window(digits, shifts, retina);
  for (int64_t b = 0; b < 6; ++b) EXPECT_TRUE(torch::equal(shifted[b][cells[b].item<int64_t>()], own[b]));
  // digit 1 sits in the fovea shifted right by 3: its right 3 columns reach location 5.
  EXPECT_TRUE(torch::equal(shifted[1][5].slice(1, 0, 3).slice(0, 0, 25), digits[1][0].slice(1, 25, 28).slice(0, 3, 28)));
  EXPECT_THROW(data::compose_scenes(digits, cells.slice(0, 0, 5), shifts, retina), c10::Error);
}

TEST_F(LocalityTest, FoveationBlursAndSubsamples) {
  const auto retina = data::RetinaOptions().foveate(true).blur_sigma(1.0).subsample(2);
  EXPECT_EQ(data::peripheral_side(retina), 14);
  auto windows = torch::rand({2, 3, 28, 28});
  auto views = data::peripheral_view(windows, retina);
  ASSERT_EQ(views.sizes(), (std::vector<int64_t>{2, 3, 14, 14}));
  // Not foveated: the window itself.
  EXPECT_TRUE(torch::equal(data::peripheral_view(windows, data::RetinaOptions()), windows));
  // A single bright pixel is spread over several view pixels, its mass kept (away from the border).
  auto impulse = torch::zeros({1, 28, 28});
  impulse[0][14][14] = 1.0;
  auto blurred = data::peripheral_view(impulse, retina);
  EXPECT_NEAR(blurred.sum().item<double>() * 4.0, 1.0, 1e-4);
  EXPECT_LT(blurred.max().item<double>(), 0.25 * 0.5);  // without the blur one view pixel would hold 1/4
  EXPECT_GT((blurred > 1e-3).sum().item<int64_t>(), 4);
  // A constant image stays constant in the interior.
  auto flat = data::peripheral_view(torch::full({1, 28, 28}, 0.5), retina);
  EXPECT_NEAR(flat[0][7][7].item<double>(), 0.5, 1e-5);
  // Resampled back to window size for a network trained on full-resolution windows.
  EXPECT_EQ(data::upsample_view(views, retina).sizes(), (std::vector<int64_t>{2, 3, 28, 28}));
  EXPECT_TRUE(torch::allclose(data::upsample_view(torch::full({1, 14, 14}, 0.3), retina), torch::full({1, 28, 28}, 0.3)));
  // Peripheral networks take 14x14 views; the shared network resamples them.
  distill::RetinaNets nets(tiny_options(LocalityScheme::Saccade, true));
  EXPECT_EQ(nets->periphery->options_.in_features(), 196);
  EXPECT_EQ(nets->periphery_logits(torch::rand({8, 5, 14, 14})).sizes(), (std::vector<int64_t>{8, 5, 10}));
  EXPECT_THROW(nets->periphery_logits(torch::rand({8, 5, 28, 28})), c10::Error);
  distill::RetinaNets shared(tiny_options(LocalityScheme::Shared, true));
  EXPECT_TRUE(shared->shared());
  EXPECT_EQ(shared->periphery_logits(torch::rand({8, 5, 14, 14})).sizes(), (std::vector<int64_t>{8, 5, 10}));
}

TEST_F(LocalityTest, ConsensusTargetsAreTheOthersAttentionWeighted) {
  auto logits = torch::randn({2, 4, 10}, torch::requires_grad());
  // Two views: each one's teacher is the other's softened output.
  auto two = distill::consensus_targets(logits, 2.0, 5.0);
  EXPECT_FALSE(two.requires_grad());
  EXPECT_TRUE(torch::allclose(two[0], torch::softmax(logits[1].detach() / 2.0, -1), 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(two[1], torch::softmax(logits[0].detach() / 2.0, -1), 1e-5, 1e-6));
  // beta = 0: the plain mean of the others.
  auto z = torch::randn({3, 4, 10});
  auto p = torch::softmax(z, -1);
  auto flat = distill::consensus_targets(z, 1.0, 0.0);
  EXPECT_TRUE(torch::allclose(flat[0], (p[1] + p[2]) / 2, 1e-5, 1e-6));
  // beta > 0: view 0 leans towards the view that agrees with it.
  auto agree = torch::zeros({3, 1, 3});
  agree[0][0][0] = 5;  // view 0 says class 0
  agree[1][0][0] = 5;  // view 1 agrees
  agree[2][0][2] = 5;  // view 2 says class 2
  auto leaning = distill::consensus_targets(agree, 1.0, 10.0);
  EXPECT_GT(leaning[0][0][0].item<double>(), 0.8);
  EXPECT_TRUE(torch::allclose(leaning.sum(-1), torch::ones({3, 1}), 1e-5, 1e-6));
  EXPECT_THROW(distill::consensus_targets(torch::randn({1, 4, 10}), 1.0, 1.0), c10::Error);
}

TEST_F(LocalityTest, PeripheralLabelsAreNeverReadBySaccadeOrConsensus) {
  const auto train = noise_dataset(96, 1), test = noise_dataset(20, 2);
  auto garbage = (train.labels + 1 + torch::randint(0, 9, {train.size()}, torch::kInt64)) % 10;  // every label wrong
  for (bool foveate : {false, true}) {
    for (auto scheme : {LocalityScheme::Saccade, LocalityScheme::Consensus, LocalityScheme::Supervised}) {
      const auto options = tiny_options(scheme, foveate).epochs(2);
      distill::RetinaNets with_true(nullptr), with_garbage(nullptr);
      const auto a = distill::train_locality(train, test, options, train.labels, &with_true);
      const auto b = distill::train_locality(train, test, options, garbage, &with_garbage);
      const bool same = same_tensors(parameters_of(with_true), parameters_of(with_garbage));
      const std::string what = distill::locality_scheme_name(scheme) + (foveate ? " foveated" : " uniform");
      EXPECT_EQ(a.steps, 2 * (96 / 32)) << what;
      EXPECT_EQ(a.fovea_labels_used, a.steps * 32) << what;
      if (scheme == LocalityScheme::Supervised) {
        EXPECT_FALSE(same) << what << ": peripheral labels should matter for the supervised upper bound";
        EXPECT_EQ(a.periphery_labels_used, a.steps * 32) << what;
      } else {
        EXPECT_TRUE(same) << what << ": training changed when only peripheral labels changed";
        EXPECT_EQ(a.periphery_labels_used, 0) << what;
        EXPECT_EQ(a.accuracy, b.accuracy) << what;
      }
    }
  }
}

TEST_F(LocalityTest, FoveaLearnsTheSameUnderEverySchemeAndUntrainedPeripheryStaysPut) {
  const auto train = noise_dataset(64, 3), test = noise_dataset(20, 4);
  distill::RetinaNets none(nullptr), saccade(nullptr), shared(nullptr);
  distill::train_locality(train, test, tiny_options(LocalityScheme::None, true), {}, &none);
  distill::train_locality(train, test, tiny_options(LocalityScheme::Saccade, true), {}, &saccade);
  distill::train_locality(train, test, tiny_options(LocalityScheme::Shared, true), {}, &shared);
  // Same fovea: the schemes differ only in what the periphery learns.
  for (const auto& item : none->fovea->named_parameters()) {
    EXPECT_TRUE(torch::equal(item.value(), saccade->fovea->named_parameters()[item.key()])) << item.key();
    EXPECT_TRUE(torch::equal(item.value(), shared->fovea->named_parameters()[item.key()])) << item.key();
  }
  // (a): the peripheral networks keep their initial weights; (b) changes them.
  torch::manual_seed(7);
  distill::RetinaNets fresh(tiny_options(LocalityScheme::None, true));
  for (const auto& item : none->periphery->named_parameters()) {
    EXPECT_TRUE(torch::equal(item.value(), fresh->periphery->named_parameters()[item.key()])) << item.key();
    EXPECT_FALSE(torch::equal(item.value(), saccade->periphery->named_parameters()[item.key()])) << item.key();
  }
  EXPECT_LT(distill::train_locality(train, test, tiny_options(LocalityScheme::Shared, false)).num_parameters,
            distill::train_locality(train, test, tiny_options(LocalityScheme::None, false)).num_parameters);
}

TEST_F(LocalityTest, ConfigKeysAndBadValues) {
  Config config;
  config.set("locality.scheme", "consensus");
  config.set("locality.foveate", "true");
  config.set("model.hidden", "[64]");
  const auto options = distill::locality_options_from_config(config);
  EXPECT_EQ(options.scheme(), LocalityScheme::Consensus);
  EXPECT_TRUE(options.retina().foveate());
  EXPECT_EQ(options.hidden(), std::vector<int64_t>{64});
  EXPECT_EQ(distill::locality_scheme_letter(LocalityScheme::Supervised), 'e');
  config.set("locality.grid", "4");
  EXPECT_THAT(testing::input_error_message([&] { distill::locality_options_from_config(config); }),
              ::testing::HasSubstr("locality.grid = 4"));
  config.set("locality.grid", "3");
  config.set("locality.consensus_views", "9");
  EXPECT_THAT(testing::input_error_message([&] { distill::locality_options_from_config(config); }),
              ::testing::HasSubstr("locality.consensus_views = 9"));
  EXPECT_THAT(testing::input_error_message([&] { config.set("locality.scheme", "mirror"); }),
              ::testing::HasSubstr("locality.scheme"));
  const auto tiny = noise_dataset(10, 5);
  EXPECT_THAT(testing::input_error_message([&] { distill::train_locality(tiny, tiny, LocalityOptions()); }),
              ::testing::HasSubstr("locality.batch_per_location"));
}

// The headline at small scale: on 3,840 MNIST images (300 steps), saccade distillation
// lifts the periphery from chance to most of the label-trained upper bound, with no peripheral
// label, with and without foveation.
TEST_F(LocalityTest, SaccadeDistillationTeachesThePeripheryOnMnist) {
  DISTILLERY_REQUIRE_MNIST();
  const std::string dir = data::resolve_data_dir();
  const auto train = data::load_dataset("mnist", "train", dir).head(3840);
  const auto test = data::load_dataset("mnist", "test", dir).head(1000);
  for (bool foveate : {false, true}) {
    auto options = [&](LocalityScheme scheme) {
      return LocalityOptions().retina(data::RetinaOptions().foveate(foveate)).scheme(scheme).hidden({64}).epochs(5)
          .batch_per_location(8).lr(2e-3).seed(1);
    };
    const std::string what = foveate ? "foveated" : "uniform";
    const auto a = distill::train_locality(train, test, options(LocalityScheme::None));
    const auto b = distill::train_locality(train, test, options(LocalityScheme::Saccade));
    EXPECT_LT(a.periphery_accuracy, 0.3) << what;
    EXPECT_GT(a.fovea_accuracy, 0.75) << what;
    EXPECT_GT(b.periphery_accuracy, a.periphery_accuracy + 0.4) << what << ": a " << a.periphery_accuracy << " b "
                                                                  << b.periphery_accuracy;
    EXPECT_EQ(b.periphery_labels_used, 0) << what;
    if (!foveate) {
      const auto e = distill::train_locality(train, test, options(LocalityScheme::Supervised));
      const double transfer = (b.periphery_accuracy - a.periphery_accuracy) / (e.periphery_accuracy - a.periphery_accuracy);
      EXPECT_GT(transfer, 0.8) << what << ": a " << a.periphery_accuracy << " b " << b.periphery_accuracy << " e "
                               << e.periphery_accuracy;
    }
  }
}

TEST_F(LocalityTest, ExperimentWritesResultsPictureAndReport) {
  DISTILLERY_REQUIRE_MNIST();
  testing::TempDir tmp;
  const auto options = testing::experiment_options(tmp, "locality", "test");
  const auto results = experiments::run_locality_study(options);
  EXPECT_EQ(results.at("experiment"), "locality");
  EXPECT_EQ(results.at("variants").size(), 10u);
  bool has_transfer = false;
  for (const auto& row : results.at("rows")) {
    if (row.at("id") == "transfer_b_foveated") has_transfer = row.at("ours").is_number();
    if (row.at("id") == "labels_b_uniform" || row.at("id") == "labels_c_foveated") {
      EXPECT_EQ(row.at("ours"), 0);
    }
    if (row.at("id") == "labels_e_uniform") {
      EXPECT_GT(row.at("ours").get<int64_t>(), 0);
    }
  }
  EXPECT_TRUE(has_transfer);
  const std::string root = options.runs_dir + "/locality-test";
  EXPECT_TRUE(std::filesystem::exists(root + "/retina_accuracy.png"));
  EXPECT_TRUE(std::filesystem::exists(root + "/report.html"));
  EXPECT_TRUE(std::filesystem::exists(root + "/b-saccade-foveated-seed1/config.yaml"));
  EXPECT_TRUE(std::filesystem::exists(options.results_path));
}

}  // namespace
}  // namespace distillery
