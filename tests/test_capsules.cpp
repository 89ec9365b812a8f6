// Capsule networks (Sabour, Frosst & Hinton 2017): shapes, squash and routing gradients by finite
// differences in double, margin loss on known values, 1-iteration routing = uniform coupling,
// MultiMNIST and affine-MNIST generators, a checkpoint round trip and a small MNIST run.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <functional>

#include "distillery/data/capsule_sets.h"
#include "distillery/data/dataset.h"
#include "distillery/nn/capsules.h"
#include "distillery/nn/model_spec.h"
#include "distillery/train/checkpoint.h"
#include "distillery/train/evaluate.h"
#include "distillery/train/trainer.h"
#include "test_support.h"

namespace distillery::testing {
namespace {

using ::testing::HasSubstr;

class CapsTest : public SeededTest {};

/// Largest |analytic - numeric| gradient of the scalar f at x (double), by central differences.
double max_gradient_error(const std::function<torch::Tensor(const torch::Tensor&)>& f, torch::Tensor x, double h = 1e-6) {
  x = x.detach().clone().set_requires_grad(true);
  auto analytic = torch::autograd::grad({f(x)}, {x})[0];
  auto flat = x.detach().clone().flatten();
  double worst = 0.0;
  for (int64_t k = 0; k < flat.numel(); ++k) {
    auto plus = flat.clone(), minus = flat.clone();
    plus[k] += h;
    minus[k] -= h;
    const double numeric = (f(plus.view(x.sizes())).item<double>() - f(minus.view(x.sizes())).item<double>()) / (2 * h);
    worst = std::max(worst, std::abs(numeric - analytic.flatten()[k].item<double>()));
  }
  return worst;
}

nn::CapsNetOptions tiny_capsnet() {
  return nn::CapsNetOptions().conv_channels(16).primary_types(4).primary_dim(4).class_dim(8).decoder_hidden({32, 64});
}

TEST_F(CapsTest, SquashKnownValuesAndLengths) {
  auto v = nn::squash(torch::tensor({{3.0, 4.0}, {0.0, 0.0}}, torch::kDouble));
  // |s| = 5: v = 25/26 * s/5.
  EXPECT_NEAR(v[0][0].item<double>(), 25.0 / 26.0 * 0.6, 1e-9);
  EXPECT_NEAR(v[0][1].item<double>(), 25.0 / 26.0 * 0.8, 1e-9);
  EXPECT_EQ(v[1].abs().sum().item<double>(), 0.0);
  auto lengths = nn::squash(torch::randn({100, 16}) * 10).norm(2, /*dim=*/1);
  EXPECT_LT(lengths.max().item<double>(), 1.0);
  EXPECT_GT(lengths.min().item<double>(), 0.0);
}

TEST_F(CapsTest, SquashGradientMatchesFiniteDifferences) {
  auto weights = torch::randn({3, 5, 4}, torch::kDouble);
  auto f = [&](const torch::Tensor& s) { return (nn::squash(s, /*dim=*/1) * weights).sum(); };
  EXPECT_LT(max_gradient_error(f, torch::randn({3, 5, 4}, torch::kDouble)), 1e-7);
}

TEST_F(CapsTest, RoutingGradientMatchesFiniteDifferences) {
  auto weights = torch::randn({2, 3, 4}, torch::kDouble);
  for (int64_t iterations : {1, 3}) {
    auto f = [&](const torch::Tensor& u_hat) {
      auto out = nn::dynamic_routing(u_hat, iterations);
      return (out.poses * weights).sum() + out.coupling.pow(2).sum();
    };
    EXPECT_LT(max_gradient_error(f, torch::randn({2, 5, 3, 4}, torch::kDouble)), 1e-7) << iterations << " iterations";
  }
}

TEST_F(CapsTest, FusedRoutingMatchesTheOpByOpReference) {
  // The fused kernel's values and hand-written gradients against autograd through the op-by-op
  // formulation, in double and in float, with gradients reaching both the poses and the coupling.
  for (auto dtype : {torch::kDouble, torch::kFloat}) {
    for (int64_t iterations : {1, 2, 3}) {
      auto u_hat = (0.3 * torch::randn({4, 7, 5, 6}, dtype)).set_requires_grad(true);
      auto pose_weights = torch::randn({4, 5, 6}, dtype), coupling_weights = torch::randn({4, 7, 5}, dtype);
      auto fused = nn::dynamic_routing(u_hat, iterations);
      auto reference = nn::dynamic_routing_reference(u_hat, iterations);
      const double tolerance = dtype == torch::kDouble ? 1e-12 : 1e-5;
      EXPECT_TRUE(torch::allclose(fused.poses, reference.poses, tolerance, tolerance)) << iterations;
      EXPECT_TRUE(torch::allclose(fused.coupling, reference.coupling, tolerance, tolerance)) << iterations;
      auto objective = [&](const nn::RoutingOutput& out) {
        return (out.poses * pose_weights).sum() + (out.coupling * coupling_weights).sum();
      };
      auto fused_grad = torch::autograd::grad({objective(fused)}, {u_hat})[0];
      auto reference_grad = torch::autograd::grad({objective(reference)}, {u_hat})[0];
      EXPECT_TRUE(torch::allclose(fused_grad, reference_grad, tolerance, tolerance))
          << iterations << " iterations, largest difference " << (fused_grad - reference_grad).abs().max().item<double>();
      // A gradient on the poses alone (the usual case: the coupling is only looked at).
      auto poses_only = torch::autograd::grad({(nn::dynamic_routing(u_hat, iterations).poses * pose_weights).sum()}, {u_hat})[0];
      auto poses_only_reference =
          torch::autograd::grad({(nn::dynamic_routing_reference(u_hat, iterations).poses * pose_weights).sum()}, {u_hat})[0];
      EXPECT_TRUE(torch::allclose(poses_only, poses_only_reference, tolerance, tolerance)) << iterations;
    }
  }
}

TEST_F(CapsTest, FusedRoutingHandlesZeroPredictionsAndBf16) {
  // All-zero predictions: squash at s = 0, where the eps keeps the gradient finite.
  auto zeros = torch::zeros({2, 3, 4, 5}, torch::kDouble).set_requires_grad(true);
  auto out = nn::dynamic_routing(zeros, 3);
  auto grad = torch::autograd::grad({out.poses.sum()}, {zeros})[0];
  EXPECT_TRUE(torch::isfinite(grad).all().item<bool>());
  // bf16 predictions (bf16 autocast) are routed in float.
  auto u_hat = torch::randn({2, 6, 3, 4});
  auto routed = nn::dynamic_routing(u_hat.to(torch::kBFloat16), 3);
  EXPECT_EQ(routed.poses.scalar_type(), torch::kFloat);
  EXPECT_TRUE(torch::allclose(routed.poses, nn::dynamic_routing(u_hat.to(torch::kBFloat16).to(torch::kFloat), 3).poses));
}

TEST_F(CapsTest, OneRoutingIterationIsUniformCoupling) {
  auto u_hat = torch::randn({2, 6, 3, 4}, torch::kDouble);
  auto out = nn::dynamic_routing(u_hat, 1);
  EXPECT_TRUE(torch::allclose(out.coupling, torch::full({2, 6, 3}, 1.0 / 3.0, torch::kDouble)));
  EXPECT_TRUE(torch::allclose(out.poses, nn::squash(u_hat.sum(/*dim=*/1) / 3.0)));
}

TEST_F(CapsTest, RoutingSendsAgreeingInputsToTheirOutput) {
  // Four inputs predict the same pose for output 0 and random, disagreeing poses for output 1:
  // routing by agreement raises their coupling to output 0 above the uniform 1/2.
  auto u_hat = torch::randn({1, 4, 2, 8}, torch::kDouble) * 0.3;
  u_hat.select(2, 0).copy_(torch::ones({1, 4, 8}, torch::kDouble) * 0.3);
  auto out = nn::dynamic_routing(u_hat, 3);
  EXPECT_GT(out.coupling.select(2, 0).min().item<double>(), 0.5);
  EXPECT_TRUE(torch::allclose(out.coupling.sum(2), torch::ones({1, 4}, torch::kDouble)));
}

TEST_F(CapsTest, MarginLossKnownValues) {
  auto lengths = torch::tensor({{0.95, 0.2, 0.05}, {0.5, 0.05, 0.85}}, torch::kDouble);
  // Row 0, class 0: 0 + 0.5 * 0.1^2 + 0 = 0.005. Row 1, class 2: 0.5 * 0.4^2 + 0 + 0.05^2 = 0.0825.
  auto loss = nn::margin_loss(lengths, torch::tensor({0, 2}));
  EXPECT_NEAR(loss.item<double>(), (0.005 + 0.0825) / 2, 1e-12);
  // Two-hot targets (MultiMNIST): row 0 has classes 0 and 1: 0 + 0.7^2 + 0 = 0.49.
  auto two_hot = torch::tensor({{1.0, 1.0, 0.0}}, torch::kDouble);
  EXPECT_NEAR(nn::margin_loss(lengths.slice(0, 0, 1), two_hot).item<double>(), 0.49, 1e-12);
  EXPECT_NEAR(nn::margin_loss(lengths, torch::tensor({0, 2}), nn::MarginLossOptions().lambda(0.0)).item<double>(),
              (0.0 + 0.0025) / 2, 1e-12);  // lambda 0: only the present classes count
}

TEST_F(CapsTest, ShapesOfEveryModule) {
  nn::PrimaryCaps primary(nn::PrimaryCapsOptions(16, 4, 8));
  EXPECT_EQ(primary->forward(torch::randn({3, 16, 20, 20})).sizes(), (std::vector<int64_t>{3, 4 * 6 * 6, 8}));
  nn::RoutingCaps digits(nn::RoutingCapsOptions(144, 8, 10, 16).iterations(2));
  auto routed = digits->forward(torch::randn({3, 144, 8}));
  EXPECT_EQ(routed.poses.sizes(), (std::vector<int64_t>{3, 10, 16}));
  EXPECT_EQ(routed.coupling.sizes(), (std::vector<int64_t>{3, 144, 10}));

  nn::CapsNet net(tiny_capsnet());
  EXPECT_EQ(net->num_primary_caps(), 4 * 6 * 6);
  auto out = net->run(torch::rand({5, 1, 28, 28}), torch::tensor({0, 1, 2, 3, 4}));
  EXPECT_EQ(out.lengths.sizes(), (std::vector<int64_t>{5, 10}));
  EXPECT_EQ(out.poses.sizes(), (std::vector<int64_t>{5, 10, 8}));
  EXPECT_EQ(out.reconstruction.sizes(), (std::vector<int64_t>{5, 1, 28, 28}));
  EXPECT_FALSE(net->run(torch::rand({2, 1, 28, 28})).reconstruction.defined());
  EXPECT_EQ(net->forward(torch::rand({2, 1, 28, 28})).argmax(1).sizes(), (std::vector<int64_t>{2}));
  try {
    net->forward(torch::rand({2, 1, 32, 32}));
    FAIL() << "a wrong image size must be refused";
  } catch (const c10::Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("[2, 1, 32, 32]"));
  }
  nn::CapsCnnBaseline cnn(nn::CapsCnnBaselineOptions().channels({4, 4, 2}).hidden({8, 6}));
  EXPECT_EQ(cnn->forward(torch::rand({3, 1, 28, 28})).sizes(), (std::vector<int64_t>{3, 10}));
}

TEST_F(CapsTest, LogitsAreLogOddsOfLengthsAndTheLossBackpropagates) {
  nn::CapsNet net(tiny_capsnet());
  auto images = torch::rand({4, 1, 28, 28});
  auto lengths = net->run(images).lengths;
  auto logits = net->forward(images);
  EXPECT_TRUE(torch::allclose(torch::sigmoid(logits), lengths, 1e-4, 1e-5));
  auto loss = nn::capsnet_loss(*net, images, torch::tensor({1, 2, 3, 4}));
  loss.backward();
  for (const auto& p : net->named_parameters()) {
    ASSERT_TRUE(p.value().grad().defined()) << p.key();
    EXPECT_GT(p.value().grad().abs().sum().item<double>(), 0.0) << p.key();
  }
}

// The reconstruction term (Sabour et al. 2017, section 4.1): weight * mean over images of the
// summed squared pixel differences, of the decoder's image of the true class's pose alone.
TEST_F(CapsTest, ReconstructionTermFollowsItsFormula) {
  // Known values: image 0 differs by 0.5 in one pixel (0.25), image 1 by 1 and 0.5 (1.25).
  const auto r = torch::tensor({0.5, 1.0, 0.0, 0.25}, torch::kDouble).view({2, 1, 1, 2});
  const auto x = torch::tensor({0.0, 1.0, 1.0, 0.75}, torch::kDouble).view({2, 1, 1, 2});
  EXPECT_NEAR(nn::reconstruction_loss(r, x, 0.1).item<double>(), 0.1 * (0.25 + 1.25) / 2, 1e-15);
  const auto r_grad = r.clone().requires_grad_(true);
  nn::reconstruction_loss(r_grad, x, 0.1).backward();
  EXPECT_TRUE(torch::allclose(r_grad.grad(), 2 * 0.1 * (r - x) / 2, 0, 1e-15));  // 2 w (r - x) / B

  nn::CapsNet net(tiny_capsnet());
  net->to(torch::kDouble);
  const auto images = torch::rand({3, 1, 28, 28}, torch::kDouble);
  const auto labels = torch::tensor({1, 4, 7});
  const double weight = 0.01;
  const auto total = nn::capsnet_loss(*net, images, labels, nn::CapsNetLossOptions().reconstruction_weight(weight));
  const auto out = net->run(images);
  const auto by_hand = nn::margin_loss(out.lengths, labels) +
                       weight * (net->reconstruct(out.poses, labels) - images).pow(2).sum({1, 2, 3}).mean();
  EXPECT_NEAR(total.item<double>(), by_hand.item<double>(), 1e-12);

  // Only the true class's pose reaches the decoder: the term's gradient is zero on every other
  // pose, and on that pose it matches central differences.
  const auto poses = out.poses.detach().clone().requires_grad_(true);
  const auto term = [&](const torch::Tensor& p) { return nn::reconstruction_loss(net->reconstruct(p, labels), images, weight); };
  term(poses).backward();
  const auto grad = poses.grad();
  const double h = 1e-6;
  for (int64_t b = 0; b < 3; ++b) {
    const int64_t label = labels[b].item<int64_t>();
    for (int64_t k = 0; k < 10; ++k) {
      if (k != label) EXPECT_EQ(grad[b][k].abs().max().item<double>(), 0.0) << "image " << b << ", capsule " << k;
    }
    for (int64_t d = 0; d < grad.size(2); ++d) {
      auto plus = poses.detach().clone(), minus = poses.detach().clone();
      plus[b][label][d] += h;
      minus[b][label][d] -= h;
      const double numeric = (term(plus).item<double>() - term(minus).item<double>()) / (2 * h);
      EXPECT_NEAR(grad[b][label][d].item<double>(), numeric, 1e-7 + 1e-5 * std::abs(numeric)) << "image " << b << ", dim " << d;
    }
  }
}

TEST_F(CapsTest, CheckpointRoundTripRebuildsTheCapsNet) {
  TempDir dir;
  nn::ModelSpec spec;
  spec.kind = "capsnet";
  spec.channels = {16, 4};
  spec.capsule_dims = {4, 8};
  spec.hidden = {32, 64};
  spec.routing_iterations = 2;
  auto model = nn::make_model(spec);
  const std::string path = dir.file("caps.pt");
  train::save_checkpoint(path, *model, train::CheckpointMeta{spec, 7, nlohmann::json::object()}, nullptr);
  auto loaded = train::load_model(path);
  EXPECT_EQ(loaded.meta.spec.routing_iterations, 2);
  EXPECT_EQ(loaded.meta.spec.capsule_dims, (std::vector<int64_t>{4, 8}));
  auto images = torch::rand({3, 1, 28, 28});
  model->eval();
  EXPECT_TRUE(torch::equal(loaded.model->forward(images), model->forward(images)));
  spec.channels = {16};
  EXPECT_THAT(input_error_message([&] { nn::make_model(spec); }), HasSubstr("model.channels"));
}

TEST_F(CapsTest, MultiMnistPairsDifferentClassesDeterministically) {
  data::Dataset source;
  source.images = torch::rand({20, 1, 28, 28});
  source.labels = torch::arange(20) % 10;
  auto a = data::make_multi_mnist(source, 50, data::MultiMnistOptions().seed(3));
  auto b = data::make_multi_mnist(source, 50, data::MultiMnistOptions().seed(3));
  auto c = data::make_multi_mnist(source, 50, data::MultiMnistOptions().seed(4));
  EXPECT_EQ(a.images.sizes(), (std::vector<int64_t>{50, 1, 36, 36}));
  EXPECT_EQ(a.components.sizes(), (std::vector<int64_t>{50, 2, 1, 36, 36}));
  EXPECT_TRUE((a.labels.select(1, 0) != a.labels.select(1, 1)).all().item<bool>());
  EXPECT_TRUE(torch::equal(a.images, b.images));
  EXPECT_FALSE(torch::equal(a.images, c.images));
  EXPECT_TRUE(torch::allclose(a.images, a.components.sum(1).clamp_max(1.0)));
  // Each digit keeps all its ink: shifts of up to 4 px on a 36 px canvas never cut a 28 px image.
  auto source_ink = source.images.sum({1, 2, 3});                       // [20]
  auto component_ink = a.components.sum({2, 3, 4}).unsqueeze(-1);      // [50, 2, 1]
  EXPECT_LT((component_ink - source_ink).abs().amin(-1).max().item<double>(), 1e-3);
  EXPECT_TRUE(torch::equal(a.targets().sum(1), torch::full({50}, 2.0)));

  auto scores = torch::tensor({{0.9, 0.8, 0.1}, {0.9, 0.1, 0.8}, {0.1, 0.9, 0.8}});
  auto labels = torch::tensor({{1, 0}, {0, 1}, {2, 1}});
  EXPECT_EQ(data::multi_mnist_errors(scores, labels), 1);
}

TEST_F(CapsTest, AffineMnistIsSeededAndTheIdentityKeepsImages) {
  data::Dataset source;
  source.images = torch::zeros({8, 1, 28, 28});
  source.images.slice(2, 8, 20).slice(3, 10, 18).fill_(1.0);
  source.labels = torch::arange(8);
  auto identity = data::make_affine_mnist(
      source, data::AffineMnistOptions().max_rotation_degrees(0).max_shear(0).min_scale(1).max_scale(1).max_translation(0));
  EXPECT_TRUE(torch::allclose(identity.images, source.images, 1e-4, 1e-5));
  auto a = data::make_affine_mnist(source, data::AffineMnistOptions().seed(5));
  auto b = data::make_affine_mnist(source, data::AffineMnistOptions().seed(5));
  EXPECT_TRUE(torch::equal(a.images, b.images));
  EXPECT_FALSE(torch::allclose(a.images, source.images, 1e-2, 1e-2));
  EXPECT_TRUE(torch::equal(a.labels, source.labels));
}

TEST_F(CapsTest, SmallCapsNetLearnsMnist) {
  DISTILLERY_REQUIRE_MNIST();
  torch::set_num_threads(std::max(1, torch::get_num_threads()));
  const auto data_dir = data::resolve_data_dir();
  auto train_set = data::load_dataset("mnist", "train", data_dir).head(2000);
  auto test_set = data::load_dataset("mnist", "test", data_dir).head(1000);
  nn::ModelSpec spec;
  spec.kind = "capsnet";
  spec.channels = {32, 8};
  spec.capsule_dims = {8, 16};
  spec.hidden = {128, 256};
  auto model = nn::make_model(spec);
  auto* capsnet = dynamic_cast<nn::CapsNetImpl*>(model.get());
  ASSERT_NE(capsnet, nullptr);
  train::TrainOptions options;
  options.epochs = 2;
  options.batch_size = 25;
  options.optimizer = "adam";
  options.lr = 3e-3;
  options.schedule = "cosine";
  const train::StepLoss step_loss = [capsnet](nn::ClassifierImpl&, const train::Batch& batch) {
    return nn::capsnet_loss(*capsnet, batch.images, batch.labels);
  };
  const auto result = train::fit_with_step_loss(*model, spec, train_set, &test_set, step_loss, options);
  ASSERT_TRUE(result.final_eval.has_value());
  // Trained on 2,000 images for 2 epochs, a small CapsNet gets most of 1,000 test images right
  // (chance: 10%).
  EXPECT_GT(result.final_eval->accuracy, 0.88) << result.final_eval->errors << " errors";
}

}  // namespace
}  // namespace distillery::testing
