// Models, checkpoints and the trainer: shapes, max-norm, save/load, exact stop/resume, an end-to-end
// MNIST run, and a loss that goes NaN.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <dlfcn.h>

#include <atomic>
#include <cmath>
#include <functional>
#include <stdexcept>
#include <filesystem>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "distillery/config.h"
#include "distillery/data/dataset.h"
#include "distillery/error.h"
#include "distillery/fault_point.h"
#include "distillery/nn/convnet.h"
#include "distillery/nn/fused_dropout.h"
#include "distillery/nn/mlp.h"
#include "distillery/nn/model_spec.h"
#include "distillery/report/metrics.h"
#include "distillery/system.h"
#include "distillery/train/autocast.h"
#include "distillery/train/checkpoint.h"
#include "distillery/train/evaluate.h"
#include "distillery/train/fused_sgd.h"
#include "distillery/train/model_cost.h"
#include "distillery/train/run.h"
#include "distillery/train/trainer.h"
#include "test_support.h"

namespace distillery::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::HasSubstr;

class ModelTest : public SeededTest {};
class CheckpointTest : public SeededTest {
 protected:
  TempDir dir_;
};
class TrainerTest : public SeededTest {};

torch::Tensor parameter(torch::nn::Module& module, const std::string& name) {
  auto params = module.named_parameters();
  EXPECT_TRUE(params.contains(name)) << name;
  return params[name];
}

/// Whether every parameter and buffer of `a` equals (bit for bit) the one of the same name in `b`.
::testing::AssertionResult same_tensors(torch::nn::Module& a, torch::nn::Module& b) {
  auto pa = a.named_parameters(), pb = b.named_parameters();
  if (pa.size() != pb.size()) return ::testing::AssertionFailure() << pa.size() << " vs " << pb.size() << " parameters";
  for (const auto& item : pa) {
    if (!pb.contains(item.key())) return ::testing::AssertionFailure() << "missing " << item.key();
    if (!torch::equal(item.value(), pb[item.key()])) {
      return ::testing::AssertionFailure() << item.key() << " differs (max abs difference "
                                           << (item.value() - pb[item.key()]).abs().max().item<double>() << ")";
    }
  }
  auto ba = a.named_buffers(), bb = b.named_buffers();
  for (const auto& item : ba) {
    if (!bb.contains(item.key()) || !torch::equal(item.value(), bb[item.key()])) {
      return ::testing::AssertionFailure() << "buffer " << item.key() << " differs";
    }
  }
  return ::testing::AssertionSuccess();
}

nn::ModelSpec mlp_spec(std::vector<int64_t> hidden) {
  nn::ModelSpec spec;
  spec.kind = "mlp";
  spec.hidden = std::move(hidden);
  return spec;
}

// ---------------------------------------------------------------------------------------------
// Models

TEST_F(ModelTest, MlpShapesAndParameterNames) {
  nn::MLP mlp(nn::MLPOptions().hidden({32, 16}));
  auto logits = mlp->forward(torch::rand({5, 1, 28, 28}));
  EXPECT_EQ(logits.sizes(), (std::vector<int64_t>{5, 10}));
  EXPECT_EQ(parameter(*mlp, "fc1.weight").sizes(), (std::vector<int64_t>{32, 784}));
  EXPECT_EQ(parameter(*mlp, "fc1.bias").sizes(), (std::vector<int64_t>{32}));
  EXPECT_EQ(parameter(*mlp, "fc2.weight").sizes(), (std::vector<int64_t>{16, 32}));
  EXPECT_EQ(parameter(*mlp, "fc3.weight").sizes(), (std::vector<int64_t>{10, 16}));
  EXPECT_EQ(mlp->named_parameters().size(), 6u);
  EXPECT_EQ(nn::count_parameters(*mlp), 784 * 32 + 32 + 32 * 16 + 16 + 16 * 10 + 10);
  EXPECT_EQ(mlp->num_classes(), 10);
  EXPECT_TRUE(mlp->output_bias().is_same(parameter(*mlp, "fc3.bias")));
  // Flat inputs work too; a wrong size is reported.
  EXPECT_EQ(mlp->forward(torch::rand({3, 784})).sizes(), (std::vector<int64_t>{3, 10}));
  EXPECT_THROW(mlp->forward(torch::rand({5, 1, 27, 27})), c10::Error);
}

TEST_F(ModelTest, MlpDropoutOnlyWhileTraining) {
  nn::MLP mlp(nn::MLPOptions().hidden({64}).dropout_input(0.2).dropout_hidden(0.5));
  auto x = torch::rand({4, 784});
  mlp->eval();
  EXPECT_TRUE(torch::equal(mlp->forward(x), mlp->forward(x)));
  mlp->train();
  EXPECT_FALSE(torch::equal(mlp->forward(x), mlp->forward(x)));
}

TEST_F(ModelTest, FusedDropoutKeepsTheRightFractionAndScalesIt) {
  const auto x = torch::rand({200, 1000}, torch::kDouble) + 0.5;  // positive: ReLU changes nothing
  for (double p : {0.2, 0.5}) {
    const auto y = nn::fused_dropout(x, p, /*training=*/true);
    const auto kept = y.ne(0);
    // 200,000 draws: the kept fraction's standard deviation is about 0.001.
    EXPECT_NEAR(kept.to(torch::kDouble).mean().item<double>(), 1.0 - p, 0.005) << "p = " << p;
    EXPECT_TRUE(torch::allclose(y.masked_select(kept), x.masked_select(kept) / (1.0 - p)));
    // Neighbouring elements (which share a hash) are independent: P(both kept) = (1 - p)^2.
    const auto pairs = kept.reshape({-1, 2});
    EXPECT_NEAR(pairs.all(1).to(torch::kDouble).mean().item<double>(), (1 - p) * (1 - p), 0.006) << "p = " << p;
  }
  EXPECT_TRUE(torch::equal(nn::fused_dropout(x, 0.5, /*training=*/false), x));
  EXPECT_THROW(nn::fused_dropout(x, 1.0, true), c10::Error);
}

TEST_F(ModelTest, FusedDropoutRepeatsUnderTheSameSeed) {
  const auto x = torch::randn({64, 300});
  torch::manual_seed(7);
  const auto a = nn::fused_relu_dropout(x, 0.5, true);
  const auto a2 = nn::fused_relu_dropout(x, 0.5, true);
  torch::manual_seed(7);
  EXPECT_TRUE(torch::equal(a, nn::fused_relu_dropout(x, 0.5, true)));
  EXPECT_FALSE(torch::equal(a, a2));  // each call draws a new seed
}

TEST_F(ModelTest, FusedReluDropoutMatchesReluThenDropoutInValueAndGradient) {
  const auto x = torch::randn({50, 120}, torch::kDouble).requires_grad_(true);
  const auto y = nn::fused_relu_dropout(x, 0.3, /*training=*/true);
  const auto kept = y.ne(0).detach();
  // The same mask applied by hand to relu(x) gives the same values and, through autograd, the
  // same gradient: relu'(x) * mask / (1 - p).
  const auto x2 = x.detach().clone().requires_grad_(true);
  const auto y2 = torch::relu(x2) * kept.to(torch::kDouble) / 0.7;
  EXPECT_TRUE(torch::allclose(y, y2));
  const auto upstream = torch::randn_like(y);
  (y * upstream).sum().backward();
  (y2 * upstream).sum().backward();
  EXPECT_TRUE(torch::allclose(x.grad(), x2.grad()));
  // Not training: plain relu, and a NaN input stays NaN while training (the run can catch it).
  EXPECT_TRUE(torch::equal(nn::fused_relu_dropout(x.detach(), 0.3, false), torch::relu(x.detach())));
  const auto nan = torch::full({4, 4}, std::numeric_limits<float>::quiet_NaN());
  EXPECT_TRUE(nn::fused_relu_dropout(nan, 0.5, true).isnan().all().item<bool>());
  // bf16 (the autocast path) gives values on the kept elements only.
  const auto xb = torch::rand({32, 64}).add(0.5).to(torch::kBFloat16);
  const auto yb = nn::fused_relu_dropout(xb, 0.5, true);
  EXPECT_EQ(yb.scalar_type(), torch::kBFloat16);
  EXPECT_TRUE(torch::equal(yb.masked_select(yb.ne(0)), (xb * 2).masked_select(yb.ne(0))));
}

// Both dropouts have a hand-written backward. Under one seed the forward is a fixed linear map
// (mask / (1 - p)), times relu'(x) for the fused ReLU: central differences of sum(upstream * y),
// reseeding before every call, must give the gradient backward computes.
TEST_F(ModelTest, FusedDropoutGradientsMatchFiniteDifferences) {
  using Dropout = torch::Tensor (*)(const torch::Tensor&, double, bool);
  for (const auto& named : {std::pair<const char*, Dropout>{"fused_dropout", nn::fused_dropout},
                            std::pair<const char*, Dropout>{"fused_relu_dropout", nn::fused_relu_dropout}}) {
    const char* name = named.first;
    const Dropout dropout = named.second;  // (a structured binding cannot be captured in C++17)
    // Away from ReLU's kink: |x| >= 0.1, both signs.
    auto x = torch::rand({20, 30}, torch::kDouble).add(0.1).mul(torch::randint(0, 2, {20, 30}, torch::kDouble).mul(2).sub(1));
    const auto upstream = torch::randn({20, 30}, torch::kDouble);
    const auto loss = [&](const torch::Tensor& input) {
      torch::manual_seed(11);
      return (dropout(input, 0.4, /*training=*/true) * upstream).sum();
    };
    const auto leaf = x.clone().requires_grad_(true);
    loss(leaf).backward();
    const auto grad = leaf.grad();
    EXPECT_GT(grad.ne(0).sum().item<int64_t>(), 0) << name;
    EXPECT_GT(grad.eq(0).sum().item<int64_t>(), 0) << name;  // dropped (or negative) elements get none
    const double h = 1e-6;
    for (int64_t i = 0; i < x.numel(); ++i) {
      auto plus = x.clone(), minus = x.clone();
      plus.view(-1)[i] += h;
      minus.view(-1)[i] -= h;
      const double numeric = (loss(plus).item<double>() - loss(minus).item<double>()) / (2 * h);
      ASSERT_NEAR(grad.view(-1)[i].item<double>(), numeric, 1e-6) << name << ", element " << i;
    }
  }
}

TEST_F(ModelTest, ConvNetShapes) {
  auto model = nn::make_model([] {
    nn::ModelSpec spec;
    spec.kind = "convnet";
    spec.hidden = {32};
    spec.channels = {4, 8};
    return spec;
  }());
  EXPECT_EQ(model->forward(torch::rand({3, 1, 28, 28})).sizes(), (std::vector<int64_t>{3, 10}));
  EXPECT_EQ(model->output_bias().sizes(), (std::vector<int64_t>{10}));
}

TEST_F(ModelTest, MaxNormConstrainsEveryHiddenRow) {
  const double max_norm = 1.5;
  nn::MLP mlp(nn::MLPOptions().hidden({32, 16}).max_norm(max_norm));
  auto w1 = parameter(*mlp, "fc1.weight"), w2 = parameter(*mlp, "fc2.weight"), w3 = parameter(*mlp, "fc3.weight");
  {
    torch::NoGradGuard no_grad;
    w1.mul_(20.0);
    w2.mul_(20.0);
    w3.mul_(20.0);
    w1[0].mul_(1e-4);  // one row well inside the ball
  }
  ASSERT_GT(w1.norm(2, {1}).max().item<double>(), 2 * max_norm);
  ASSERT_GT(w2.norm(2, {1}).max().item<double>(), 2 * max_norm);
  const auto w1_before = w1.clone(), w3_before = w3.clone();
  mlp->after_step();
  for (const auto& w : {w1, w2}) EXPECT_LE(w.norm(2, {1}).max().item<double>(), max_norm + 1e-5);
  // Rows that were too long keep their direction and end on the sphere; short rows are untouched.
  auto long_rows = w1.slice(0, 1);
  EXPECT_TRUE(torch::allclose(long_rows.norm(2, {1}), torch::full({31}, max_norm), 1e-5, 1e-5));
  auto direction_before = w1_before.slice(0, 1) / w1_before.slice(0, 1).norm(2, {1}, true);
  EXPECT_TRUE(torch::allclose(long_rows / max_norm, direction_before, 1e-5, 1e-6));
  EXPECT_TRUE(torch::equal(w1[0], w1_before[0]));
  // The output layer is not constrained.
  EXPECT_TRUE(torch::equal(w3, w3_before));

  // max_norm 0 disables the constraint.
  nn::MLP free(nn::MLPOptions().hidden({8}));
  auto w = parameter(*free, "fc1.weight");
  {
    torch::NoGradGuard no_grad;
    w.mul_(100.0);
  }
  const auto before = w.clone();
  free->after_step();
  EXPECT_TRUE(torch::equal(w, before));
}

TEST_F(ModelTest, ModelSpecJsonRoundTrip) {
  auto spec = mlp_spec({300, 100});
  spec.dropout_input = 0.2;
  spec.max_norm = 3.5;
  const auto again = nn::ModelSpec::from_json(spec.to_json(), "test");
  EXPECT_EQ(again.to_json(), spec.to_json());
  EXPECT_THAT(input_error_message([] { nn::ModelSpec::from_json({{"kind", "mlp"}}, "spec.json"); }),
              HasSubstr("spec.json"));
  spec.kind = "transformer";
  EXPECT_THAT(input_error_message([&] { nn::make_model(spec); }), HasSubstr("transformer"));
}

// A damaged checkpoint's description must fail before a model is built from it (fuzzing found
// sizes that made a layer's initialisation bounds infinite).
TEST_F(ModelTest, ImplausibleSizesInADescriptionAreRejected) {
  const auto good = mlp_spec({300, 100}).to_json();
  for (const auto& [field, value] : std::vector<std::pair<std::string, nlohmann::json>>{
           {"image_size", -5}, {"hidden", {300, 0}}, {"num_classes", 0}, {"dropout_hidden", 1.5}, {"in_channels", 100000}}) {
    auto bad = good;
    bad[field] = value;
    EXPECT_THAT(input_error_message([&] { nn::ModelSpec::from_json(bad, "damaged.pt"); }),
                AllOf(HasSubstr("damaged.pt"), HasSubstr(field)))
        << field;
  }
}

// ---------------------------------------------------------------------------------------------
// Checkpoints

TEST_F(CheckpointTest, SaveAndLoadRoundTripExactly) {
  auto spec = mlp_spec({32, 16});
  spec.dropout_hidden = 0.3;
  spec.max_norm = 2.0;
  auto model = nn::make_model(spec);
  torch::optim::SGD optimizer(model->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
  // One step, so that the optimizer has state worth saving.
  optimizer.zero_grad();
  model->forward(torch::rand({4, 1, 28, 28})).sum().backward();
  optimizer.step();

  const auto path = dir_.file("sub/folder/checkpoint.pt");  // missing folders are created
  train::save_checkpoint(path, *model, train::CheckpointMeta{spec, 7, {{"note", "hello"}}}, &optimizer);
  ASSERT_TRUE(fs::exists(path));
  EXPECT_FALSE(fs::exists(path + ".tmp"));

  const auto loaded = train::load_model(path);
  EXPECT_EQ(loaded.meta.step, 7);
  EXPECT_EQ(loaded.meta.extra.value("note", ""), "hello");
  EXPECT_EQ(loaded.meta.spec.to_json(), spec.to_json());
  EXPECT_FALSE(loaded.model->is_training());
  EXPECT_TRUE(same_tensors(*loaded.model, *model));
  auto x = torch::rand({3, 1, 28, 28});
  model->eval();
  EXPECT_TRUE(torch::equal(loaded.model->forward(x), model->forward(x)));

  const auto meta = train::read_checkpoint_meta(path);
  EXPECT_EQ(meta.step, 7);
  EXPECT_EQ(meta.spec.hidden, (std::vector<int64_t>{32, 16}));

  // Saving again replaces the file, and still leaves no temporary file behind.
  train::save_checkpoint(path, *model, train::CheckpointMeta{spec, 8, {}}, nullptr);
  EXPECT_EQ(train::read_checkpoint_meta(path).step, 8);
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(fs::path(path).parent_path())) {
    names.push_back(entry.path().filename().string());
  }
  EXPECT_EQ(names, std::vector<std::string>{"checkpoint.pt"});
}

TEST_F(CheckpointTest, ConvNetRoundTrip) {
  nn::ModelSpec spec;
  spec.kind = "convnet";
  spec.hidden = {32};
  spec.channels = {4, 8};
  auto model = nn::make_model(spec);
  const auto path = dir_.file("convnet.pt");
  train::save_checkpoint(path, *model, train::CheckpointMeta{spec, 1, {}}, nullptr);
  const auto loaded = train::load_model(path);
  EXPECT_EQ(loaded.meta.spec.kind, "convnet");
  EXPECT_TRUE(same_tensors(*loaded.model, *model));
}

TEST_F(CheckpointTest, LoadingIntoADifferentArchitectureNamesTheTensor) {
  const auto spec = mlp_spec({32});
  auto model = nn::make_model(spec);
  const auto path = dir_.file("checkpoint.pt");
  train::save_checkpoint(path, *model, train::CheckpointMeta{spec, 0, {}}, nullptr);

  auto narrower = nn::make_model(mlp_spec({16}));
  const auto message = input_error_message([&] { train::load_checkpoint_into(path, *narrower, nullptr); });
  EXPECT_THAT(message, HasSubstr(path));
  EXPECT_THAT(message, HasSubstr("fc1.weight"));
  EXPECT_THAT(message, HasSubstr("[32, 784]"));
  EXPECT_THAT(message, HasSubstr("[16, 784]"));

  // A deeper model: its extra layer has no tensor in the checkpoint.
  auto deeper = nn::make_model(mlp_spec({32, 10}));
  EXPECT_THAT(input_error_message([&] { train::load_checkpoint_into(path, *deeper, nullptr); }),
              HasSubstr("fc3.weight"));

  // A shallower model: the checkpoint's last layer has no place in it, even though every tensor of
  // the model has a match of the same name and shape.
  const auto deep_spec = mlp_spec({32, 10});
  auto deep = nn::make_model(deep_spec);
  const auto deep_path = dir_.file("deep.pt");
  train::save_checkpoint(deep_path, *deep, train::CheckpointMeta{deep_spec, 0, {}}, nullptr);
  auto shallow = nn::make_model(mlp_spec({32}));
  const auto shallow_before = parameter(*shallow, "fc1.weight").clone();
  EXPECT_THAT(input_error_message([&] { train::load_checkpoint_into(deep_path, *shallow, nullptr); }),
              HasSubstr("fc3."));
  EXPECT_TRUE(torch::equal(parameter(*shallow, "fc1.weight"), shallow_before));  // left untouched

  // Resuming needs optimizer state, which this checkpoint does not hold.
  auto same = nn::make_model(spec);
  torch::optim::SGD optimizer(same->parameters(), torch::optim::SGDOptions(0.1));
  EXPECT_THAT(input_error_message([&] { train::load_checkpoint_into(path, *same, &optimizer); }),
              HasSubstr("optimizer"));
}

TEST_F(CheckpointTest, DamagedFilesThrowInputError) {
  const auto spec = mlp_spec({32});
  auto model = nn::make_model(spec);
  const auto good = dir_.file("good.pt");
  train::save_checkpoint(good, *model, train::CheckpointMeta{spec, 0, {}}, nullptr);
  const std::string bytes = read_bytes(good);
  ASSERT_GT(bytes.size(), 1000u);

  const auto truncated = dir_.file("truncated.pt");
  write_bytes(truncated, bytes.substr(0, bytes.size() / 2));
  EXPECT_THAT(input_error_message([&] { train::load_model(truncated); }), HasSubstr(truncated));
  EXPECT_THAT(input_error_message([&] { train::read_checkpoint_meta(truncated); }), HasSubstr(truncated));

  const auto empty = dir_.file("empty.pt");
  write_bytes(empty, "");
  EXPECT_THAT(input_error_message([&] { train::load_model(empty); }), HasSubstr(empty));

  const auto garbage = dir_.file("garbage.pt");
  write_bytes(garbage, std::string(4096, 'x'));
  EXPECT_THAT(input_error_message([&] { train::load_model(garbage); }), HasSubstr(garbage));

  const auto missing = dir_.file("missing.pt");
  EXPECT_THAT(input_error_message([&] { train::load_model(missing); }), HasSubstr(missing));

  // A readable torch archive that is not a distillery checkpoint.
  const auto foreign = dir_.file("foreign.pt");
  torch::serialize::OutputArchive archive;
  archive.write("weights", torch::ones({3}));
  archive.save_to(foreign);
  EXPECT_THAT(input_error_message([&] { train::load_model(foreign); }), HasSubstr("not a distillery checkpoint"));
}

// LibTorch's zip reader skips CRC checks, so a flipped bit used to reach its unpickler and parser
// (fuzz/fuzz_checkpoint crashed it); distillery checks every record's CRC-32 first.
TEST_F(CheckpointTest, AFlippedByteFailsItsRecordsChecksum) {
  const auto spec = mlp_spec({32});
  auto model = nn::make_model(spec);
  const auto good = dir_.file("good.pt");
  train::save_checkpoint(good, *model, train::CheckpointMeta{spec, 0, {}}, nullptr);
  std::string bytes = read_bytes(good);
  bytes[bytes.size() / 3] ^= 0x10;  // inside the first layer's weights, the bulk of the file
  const auto flipped = dir_.file("flipped.pt");
  write_bytes(flipped, bytes);
  const auto message = input_error_message([&] { train::load_model(flipped); });
  EXPECT_THAT(message, HasSubstr(flipped));
  EXPECT_THAT(message, HasSubstr("CRC-32"));
  EXPECT_NO_THROW(train::load_model(good));
}

// ---------------------------------------------------------------------------------------------
// Trainer

TEST_F(TrainerTest, ScheduledLearningRates) {
  train::TrainOptions options;
  options.lr = 0.2;
  options.schedule = "cosine";
  EXPECT_DOUBLE_EQ(train::scheduled_lr(options, 0, 10, 100), 0.2);
  EXPECT_NEAR(train::scheduled_lr(options, 50, 10, 100), 0.1, 1e-12);
  EXPECT_NEAR(train::scheduled_lr(options, 100, 10, 100), 0.0, 1e-12);
  options.schedule = "exponential";
  options.lr_decay = 0.5;
  EXPECT_DOUBLE_EQ(train::scheduled_lr(options, 9, 10, 100), 0.2);
  EXPECT_DOUBLE_EQ(train::scheduled_lr(options, 25, 10, 100), 0.05);
  options.schedule = "constant";
  EXPECT_DOUBLE_EQ(train::scheduled_lr(options, 77, 10, 100), 0.2);
}

// train.threads reaches OpenBLAS's pool too: torch::set_num_threads alone leaves one spinning
// OpenBLAS worker per core.
TEST_F(TrainerTest, ThreadConfigSetsTorchAndOpenBlasThreads) {
  using GetThreads = int (*)();
  const auto blas_threads = reinterpret_cast<GetThreads>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
  const int torch_before = torch::get_num_threads(), blas_before = blas_threads ? blas_threads() : 0;
  Config config;
  config.set("train.threads=1");
  train::apply_thread_config(config);
  EXPECT_EQ(torch::get_num_threads(), 1);
  if (blas_threads) {
    EXPECT_EQ(blas_threads(), 1);
  } else {
    GTEST_LOG_(INFO) << "LibTorch's BLAS is not OpenBLAS: only torch's pool checked";
  }
  set_compute_threads(blas_threads ? blas_before : torch_before);
  torch::set_num_threads(torch_before);
}

// Side by side: every task runs once, each on a thread whose LibTorch and OpenBLAS work stays
// on that thread; OpenBLAS's count comes back, and a task's exception reaches the caller.
TEST_F(TrainerTest, SideBySideRunsEachTaskOnceOnItsOwnThread) {
  using GetThreads = int (*)();
  const auto blas_threads = reinterpret_cast<GetThreads>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
  const int torch_before = torch::get_num_threads(), blas_before = blas_threads ? blas_threads() : 0;
  set_compute_threads(2);
  std::vector<int> runs(5, 0), torch_threads(5, 0), blas_inside(5, -1);
  std::vector<std::function<void()>> tasks;
  for (int i = 0; i < 5; ++i) {
    tasks.emplace_back([&, i] {
      ++runs[i];
      torch_threads[i] = torch::get_num_threads();
      if (blas_threads) blas_inside[i] = blas_threads();
      torch::mm(torch::randn({64, 64}), torch::randn({64, 64}));
    });
  }
  run_side_by_side(tasks, 2);
  EXPECT_EQ(runs, std::vector<int>(5, 1));
  EXPECT_EQ(torch_threads, std::vector<int>(5, 1));
  if (blas_threads) {
    EXPECT_EQ(blas_inside, std::vector<int>(5, 1));
    EXPECT_EQ(blas_threads(), 2);
  }
  EXPECT_EQ(torch::get_num_threads(), 2);  // the caller's own pool is untouched
  std::atomic<int> finished{0};
  std::vector<std::function<void()>> failing = {[] { throw std::runtime_error("peer 0 broke"); }, [&] { ++finished; }};
  std::string message;
  try {
    run_side_by_side(failing, 2);
  } catch (const std::runtime_error& e) {
    message = e.what();
  }
  EXPECT_EQ(message, "peer 0 broke");
  EXPECT_EQ(finished.load(), 1);  // the other task still ran to its end
  set_compute_threads(blas_threads ? blas_before : torch_before);
  torch::set_num_threads(torch_before);
}

TEST_F(TrainerTest, TrainOptionsFromConfig) {
  Config config;
  for (const char* s : {"train.epochs=3", "train.batch_size=25", "train.optimizer=adam", "train.lr=0.002",
                        "data.jitter=2", "train.seed=9", "run.resume=false", "train.schedule=constant"}) {
    config.set(s);
  }
  const auto options = train::train_options_from_config(config);
  EXPECT_EQ(options.epochs, 3);
  EXPECT_EQ(options.batch_size, 25);
  EXPECT_EQ(options.optimizer, "adam");
  EXPECT_DOUBLE_EQ(options.lr, 0.002);
  EXPECT_EQ(options.jitter, 2);
  EXPECT_EQ(options.seed, 9u);
  EXPECT_FALSE(options.resume);
  EXPECT_EQ(options.schedule, "constant");
}

TEST_F(TrainerTest, FusedSgdFollowsTorchSgdAndSharesItsState) {
  // Two copies of the same weights, one updated by torch::optim::SGD, one by train::FusedSGD, on the
  // same gradients: with momentum, weight decay and either momentum rule, they stay together.
  for (bool nesterov : {false, true}) {
    const auto options = torch::optim::SGDOptions(0.05).momentum(0.9).weight_decay(nesterov ? 0.0 : 1e-3).nesterov(nesterov);
    auto a = torch::randn({300, 70}, torch::kDouble).requires_grad_(true);
    auto b = a.detach().clone().requires_grad_(true);
    torch::optim::SGD reference({a}, options);
    train::FusedSGD fused({b}, options);
    for (int step = 0; step < 5; ++step) {
      const auto target = torch::randn({300, 70}, torch::kDouble);
      reference.zero_grad();
      train::clear_gradients(fused);
      EXPECT_FALSE(b.grad().defined());
      (a - target).pow(2).sum().backward();
      (b - target).pow(2).sum().backward();
      reference.step();
      fused.step();
      ASSERT_TRUE(torch::allclose(a, b, /*rtol=*/1e-12, /*atol=*/1e-12)) << "nesterov " << nesterov << ", step " << step;
    }
    // The momentum buffers are SGD's own state: saved from one, loaded into the other.
    std::stringstream stream;
    torch::serialize::OutputArchive out;
    fused.save(out);
    out.save_to(stream);
    torch::serialize::InputArchive in;
    in.load_from(stream);
    torch::optim::SGD loaded({b}, options);
    loaded.load(in);
    const auto& state = static_cast<torch::optim::SGDParamState&>(*loaded.state().begin()->second);
    const auto& mine = static_cast<torch::optim::SGDParamState&>(*reference.state().begin()->second);
    EXPECT_TRUE(torch::allclose(state.momentum_buffer(), mine.momentum_buffer(), 1e-12, 1e-12));
  }
}

// Every update rule FusedSGD has (momentum 0, dampening, Nesterov with weight decay), in float
// and double, on a parameter of 4 x 2^16 + 7 elements with 4 threads, so that parallel_for hands
// the update out in several chunks (a chunk boundary off by one would show here).
TEST_F(TrainerTest, FusedSgdFollowsTorchSgdInEveryModeAndChunked) {
  struct Threads {  // restored however the test ends
    int previous = at::get_num_threads();
    Threads() { at::set_num_threads(4); }
    ~Threads() { at::set_num_threads(previous); }
  } threads;
  const std::vector<std::pair<const char*, torch::optim::SGDOptions>> modes = {
      {"plain", torch::optim::SGDOptions(0.05)},
      {"plain with weight decay", torch::optim::SGDOptions(0.05).weight_decay(1e-2)},
      {"momentum with dampening", torch::optim::SGDOptions(0.05).momentum(0.8).dampening(0.3)},
      {"momentum, dampening, weight decay", torch::optim::SGDOptions(0.05).momentum(0.5).dampening(0.5).weight_decay(1e-3)},
      {"nesterov with weight decay", torch::optim::SGDOptions(0.05).momentum(0.9).nesterov(true).weight_decay(1e-3)}};
  for (const auto dtype : {torch::kFloat, torch::kDouble}) {
    const double tolerance = dtype == torch::kFloat ? 1e-5 : 1e-12;
    for (const auto& [name, options] : modes) {
      auto a = torch::randn({4 * (1 << 16) + 7}, dtype).requires_grad_(true);
      auto b = a.detach().clone().requires_grad_(true);
      torch::optim::SGD reference({a}, options);
      train::FusedSGD fused({b}, options);
      for (int step = 0; step < 4; ++step) {
        const auto target = torch::randn_like(a);
        reference.zero_grad();
        train::clear_gradients(fused);
        (a - target).pow(2).sum().backward();
        (b - target).pow(2).sum().backward();
        reference.step();
        fused.step();
        ASSERT_TRUE(torch::allclose(a, b, tolerance, tolerance))
            << name << " (" << dtype << "), step " << step << ": largest difference " << (a - b).abs().max().item<double>();
      }
    }
  }
}

// DISTILLERY_STOP_AT (the fault tests' kill points): a malformed value is an input error naming
// it; a point, step or rank that does not match leaves the process running. (That a matching one
// stops the process is seen by tests/reliability_test.sh, which kills it there.)
TEST_F(TrainerTest, FaultPointsStopOnlyWhereAsked) {
  struct Environment {  // restored however the test ends
    ~Environment() { ::unsetenv("DISTILLERY_STOP_AT"); ::unsetenv("RANK"); }
  } environment;
  for (const char* malformed : {"train_step", "train_step:", "train_step:x", "train_step:-1", ":5", "train_step:5x"}) {
    ::setenv("DISTILLERY_STOP_AT", malformed, 1);
    EXPECT_THAT(input_error_message([] { fault_point("train_step", 5); }), HasSubstr(malformed)) << malformed;
  }
  // A wrong match would stop this process: the test would hang until CTest's timeout.
  ::setenv("DISTILLERY_STOP_AT", "train_step:5:1", 1);
  ::setenv("RANK", "0", 1);
  fault_point("train_step", 5);  // another rank's point
  ::setenv("DISTILLERY_STOP_AT", "train_step:5", 1);
  fault_point("train_step", 4);             // another step
  fault_point("checkpoint_renaming", 5);    // another point
  ::unsetenv("DISTILLERY_STOP_AT");
  fault_point("train_step", 5);  // no variable: nothing to do
}

TEST_F(TrainerTest, ScoreLogitsCountsErrorsAndConfusion) {
  // Predictions (argmax): 0, 2, 1, 1; labels: 0, 1, 1, 2.
  auto logits = torch::tensor({{3.0, 1.0, 0.0}, {0.0, 1.0, 2.0}, {0.0, 5.0, 1.0}, {1.0, 2.0, 0.0}});
  auto labels = torch::tensor({0, 1, 1, 2}, torch::kInt64);
  const auto result = train::score_logits(logits, labels, 3);
  EXPECT_EQ(result.count, 4);
  EXPECT_EQ(result.errors, 2);
  EXPECT_DOUBLE_EQ(result.accuracy, 0.5);
  auto expected = torch::tensor({1, 0, 0, 0, 1, 1, 0, 1, 0}, torch::kInt64).view({3, 3});
  EXPECT_TRUE(torch::equal(result.confusion, expected)) << result.confusion;
  EXPECT_EQ(result.class_count(1), 2);
  EXPECT_EQ(result.class_errors(1), 1);
  EXPECT_EQ(result.class_errors(2), 1);
  EXPECT_EQ(result.class_errors(0), 0);
}

/// Random images with random labels: enough to exercise the training loop without MNIST.
data::Dataset noise_dataset(int64_t n) {
  return {torch::rand({n, 1, 28, 28}), torch::randint(0, 10, {n}, torch::kInt64)};
}

TEST_F(TrainerTest, NanLossStopsTrainingNamingTheStep) {
  TempDir dir;
  const auto spec = mlp_spec({16});
  auto model = nn::make_model(spec);
  const auto train_set = noise_dataset(200);
  train::TrainOptions options;
  options.epochs = 3;
  options.batch_size = 50;  // 4 steps per epoch: a checkpoint after step 4
  options.run_dir = dir.path().string();
  options.log_every_seconds = 1e9;
  int64_t calls = 0;
  const train::Objective objective = [&](const train::Batch& batch, const torch::Tensor& logits) {
    auto loss = train::cross_entropy_objective(batch, logits);
    if (calls++ == 5) return loss * std::numeric_limits<double>::quiet_NaN();
    return loss;
  };
  try {
    train::fit(*model, spec, train_set, nullptr, objective, options);
    FAIL() << "a NaN loss must stop training";
  } catch (const InputError& e) {
    FAIL() << "a NaN loss is a run failure, not an input error: " << e.what();
  } catch (const std::runtime_error& e) {
    const std::string message = e.what();
    EXPECT_THAT(message, HasSubstr("step 5"));
    EXPECT_THAT(message, HasSubstr("nan"));
  }
  EXPECT_EQ(calls, 6);
  // The last good checkpoint (end of epoch 1) is kept.
  EXPECT_EQ(train::read_checkpoint_meta(dir.file("checkpoint.pt")).step, 4);
  // The weights were not touched by the NaN step.
  for (const auto& p : model->parameters()) EXPECT_TRUE(torch::isfinite(p).all().item<bool>());
}

// train.precision: bf16 runs the step's matrix products in bfloat16 and nothing else: weights
// stay fp32, the autocast state is restored, and the model still learns.
TEST_F(TrainerTest, Bf16MixedPrecisionLearnsWithFp32Weights) {
  {
    train::CpuAutocast autocast("bf16");
    EXPECT_EQ(torch::nn::Linear(4, 3)->forward(torch::rand({2, 4})).scalar_type(), torch::kBFloat16);
  }
  EXPECT_FALSE(at::autocast::is_cpu_enabled());
  EXPECT_EQ(torch::nn::Linear(4, 3)->forward(torch::rand({2, 4})).scalar_type(), torch::kFloat32);
  EXPECT_THROW(train::CpuAutocast("fp16"), InputError);

  // A learnable task: is the top half of the image brighter than the bottom half? Scored on
  // images the models never trained on.
  torch::manual_seed(5);
  const auto brighter_half = [](int64_t n) {
    auto images = torch::rand({n, 1, 28, 28});
    images.narrow(2, 0, 14).mul_(torch::rand({n, 1, 1, 1}) + 0.5);
    const auto labels = (images.narrow(2, 0, 14).mean({1, 2, 3}) > images.narrow(2, 14, 14).mean({1, 2, 3})).to(torch::kInt64);
    return data::Dataset{images, labels};
  };
  const data::Dataset train_set = brighter_half(600), held_out = brighter_half(1000);
  const auto spec = mlp_spec({64});
  train::TrainOptions options;
  options.epochs = 8;
  options.batch_size = 50;
  options.log_every_seconds = 1e9;
  auto run = [&](const std::string& precision) {
    torch::manual_seed(3);
    auto model = nn::make_model(spec);
    options.precision = precision;
    train::fit(*model, spec, train_set, nullptr, train::cross_entropy_objective, options);
    return model;
  };
  auto full = run("fp32"), mixed = run("bf16");
  EXPECT_FALSE(at::autocast::is_cpu_enabled());
  for (const auto& p : mixed->parameters()) EXPECT_EQ(p.scalar_type(), torch::kFloat32);
  EXPECT_FALSE(same_tensors(*full, *mixed));  // bf16 products took a different path
  const auto accuracy = [&](nn::ClassifierImpl& m) { return train::evaluate(m, held_out).accuracy; };
  EXPECT_GT(accuracy(*full), 0.9);
  EXPECT_GT(accuracy(*mixed), 0.9);
}

TEST_F(TrainerTest, TrainingIsDeterministicGivenTheSeed) {
  const auto spec = mlp_spec({32});
  const auto train_set = noise_dataset(300);
  train::TrainOptions options;
  options.epochs = 2;
  options.batch_size = 30;
  options.jitter = 2;
  options.log_every_seconds = 1e9;
  auto run = [&](uint64_t seed) {
    torch::manual_seed(3);
    auto model = nn::make_model(spec);
    options.seed = seed;
    const auto result = train::fit(*model, spec, train_set, nullptr, train::cross_entropy_objective, options);
    EXPECT_TRUE(result.completed);
    EXPECT_EQ(result.steps, 20);
    return model;
  };
  auto a = run(1), b = run(1), c = run(2);
  EXPECT_TRUE(same_tensors(*a, *b));
  EXPECT_FALSE(same_tensors(*a, *c));
}

TEST_F(TrainerTest, StoppedAndResumedRunEndsWithExactlyTheSameWeights) {
  DISTILLERY_REQUIRE_MNIST();
  const auto train_set = data::load_dataset("mnist", "train", data::resolve_data_dir()).head(2000);
  auto spec = mlp_spec({64});
  spec.dropout_hidden = 0.2;
  train::TrainOptions options;
  options.epochs = 2;
  options.batch_size = 50;  // 40 steps per epoch, 80 in all
  options.jitter = 1;
  options.optimizer = "sgd";
  options.lr = 0.05;
  options.momentum = 0.9;
  options.seed = 5;
  options.log_every_seconds = 1e9;

  // A: uninterrupted.
  TempDir dir_a, dir_b;
  torch::manual_seed(21);
  auto model_a = nn::make_model(spec);
  options.run_dir = dir_a.path().string();
  const auto result_a = train::fit(*model_a, spec, train_set, nullptr, train::cross_entropy_objective, options);
  EXPECT_TRUE(result_a.completed);
  EXPECT_EQ(result_a.steps, 80);

  // B: stopped mid-epoch at step 30, then resumed by a fresh model and optimizer.
  torch::manual_seed(21);
  auto model_b = nn::make_model(spec);
  options.run_dir = dir_b.path().string();
  options.stop_after_step = 30;
  const auto stopped = train::fit(*model_b, spec, train_set, nullptr, train::cross_entropy_objective, options);
  EXPECT_FALSE(stopped.completed);
  EXPECT_EQ(stopped.steps, 30);
  const auto checkpoint = dir_b.file("checkpoint.pt");
  ASSERT_TRUE(fs::exists(checkpoint));
  EXPECT_EQ(train::read_checkpoint_meta(checkpoint).step, 30);
  EXPECT_FALSE(same_tensors(*model_a, *model_b));

  torch::rand({1000});  // a new process would not share the global RNG state: the checkpoint restores it
  torch::manual_seed(21);
  auto model_c = nn::make_model(spec);
  options.stop_after_step = 0;
  options.resume = true;
  const auto resumed = train::fit(*model_c, spec, train_set, nullptr, train::cross_entropy_objective, options);
  EXPECT_TRUE(resumed.completed);
  EXPECT_EQ(resumed.steps, 80);
  EXPECT_TRUE(same_tensors(*model_a, *model_c));
  EXPECT_EQ(train::read_checkpoint_meta(checkpoint).step, 80);

  // Both runs wrote one metrics record per epoch.
  for (const auto* dir : {&dir_a, &dir_b}) {
    const auto records = report::read_metrics(dir->file("metrics.jsonl"));
    ASSERT_EQ(records.size(), 2u);
    EXPECT_EQ(records[1].value("step", 0), 80);
  }

  // Without resume the same run folder starts over: different from continuing a finished run.
  torch::manual_seed(21);
  auto model_d = nn::make_model(spec);
  options.resume = false;
  options.epochs = 1;
  const auto restarted = train::fit(*model_d, spec, train_set, nullptr, train::cross_entropy_objective, options);
  EXPECT_EQ(restarted.steps, 40);
}

TEST_F(TrainerTest, MlpReaches97PercentOnMnistEndToEnd) {
  DISTILLERY_REQUIRE_MNIST();
  TempDir dir;
  // 30000 training images, 784-256-256-10, Adam with cosine decay and 1-pixel jitter: about 98.2%
  // test accuracy in about 10 s on 2 cores.
  auto config = Config::parse(R"(
name: e2e
run:
  resume: false
  log_every_seconds: 1000
data:
  train_limit: 30000
  jitter: 1
model:
  kind: mlp
  hidden: [256, 256]
train:
  optimizer: adam
  lr: 0.001
  schedule: cosine
  epochs: 10
  batch_size: 100
  seed: 1
)",
                              "e2e.yaml");
  config.set("run.dir", dir.path().string());
  const auto outcome = train::run_training(config);
  EXPECT_TRUE(outcome.train.completed);
  EXPECT_EQ(outcome.train.steps, 3000);
  EXPECT_EQ(outcome.test.count, 10000);  // the full test set
  EXPECT_GE(outcome.test.accuracy, 0.97) << outcome.test.errors << " errors";
  EXPECT_EQ(outcome.num_parameters, 784 * 256 + 256 + 256 * 256 + 256 + 256 * 10 + 10);

  // The run folder holds everything, and the checkpoint alone reproduces the result.
  EXPECT_EQ(outcome.run_dir, dir.file("e2e"));
  for (const char* name : {"config.yaml", "metrics.jsonl", "checkpoint.pt", "result.json"}) {
    EXPECT_TRUE(fs::exists(fs::path(outcome.run_dir) / name)) << name;
  }
  EXPECT_EQ(report::read_metrics(outcome.run_dir + "/metrics.jsonl").size(), 10u);
  EXPECT_EQ(Config::load(outcome.run_dir + "/config.yaml").to_yaml(), config.to_yaml());
  const auto loaded = train::load_model(outcome.run_dir + "/checkpoint.pt");
  const auto test = data::load_dataset("mnist", "test", data::resolve_data_dir());
  EXPECT_EQ(train::evaluate(*loaded.model, test).errors, outcome.test.errors);
}

TEST(RunFolderTest, FinishedRunsAreReusedOnlyWithTheSameConfig) {
  TempDir dir;
  Config config;
  config.set("run.dir", dir.path().string());
  config.set("name", "r");
  config.set("train.lr", "0.01");
  EXPECT_FALSE(train::finished_run(config).has_value());  // no folder yet
  const std::string run_dir = train::prepare_run_dir(config);
  EXPECT_FALSE(train::finished_run(config).has_value());  // a folder, but no result.json
  report::write_file_atomic(run_dir + "/result.json", R"({"test": {"errors": 7}})");
  ASSERT_TRUE(train::finished_run(config).has_value());
  EXPECT_EQ(train::finished_run(config)->at("test").at("errors"), 7);

  Config faster = config;  // keys that do not change results are not compared
  faster.set("train.threads", "2");
  faster.set("run.log_every_seconds", "1");
  EXPECT_TRUE(train::finished_run(faster).has_value());

  Config other = config;
  other.set("train.lr", "0.02");
  try {
    train::finished_run(other);
    FAIL() << "a finished run made with another learning rate was reused";
  } catch (const InputError& e) {
    EXPECT_THAT(e.what(), HasSubstr("train.lr = 0.01"));
    EXPECT_THAT(e.what(), HasSubstr("asks for 0.02"));
    EXPECT_THAT(e.what(), HasSubstr("--fresh"));
  }
}

TEST(RunFolderTest, ResumingACheckpointNeedsTheSameConfig) {
  TempDir dir;
  Config config;
  config.set("run.dir", dir.path().string());
  config.set("name", "r");
  const std::string run_dir = train::prepare_run_dir(config);
  report::write_file_atomic(run_dir + "/checkpoint.pt", "stands for a checkpoint");
  Config longer = config;  // more epochs extend the run
  longer.set("train.epochs", "20");
  EXPECT_NO_THROW(train::prepare_run_dir(longer));
  Config shorter = longer;  // the folder's config now says 20 epochs
  shorter.set("train.epochs", "5");
  EXPECT_THROW(train::prepare_run_dir(shorter), InputError);
  Config other = config;
  other.set("model.hidden", "[100]");
  EXPECT_THROW(train::prepare_run_dir(other), InputError);
  other.set("run.resume", "false");  // starting over is the user's choice
  EXPECT_NO_THROW(train::prepare_run_dir(other));
}

}  // namespace
}  // namespace distillery::testing

namespace distillery::testing {
namespace {

// Multiply-adds counted by LibTorch's profiler are the architecture's, exactly; the timings are
// measured (positive), not asserted.
TEST(ModelCostTest, CountsTheMultiplyAddsOfMlpAndConvNetExactly) {
  nn::ModelSpec mlp;
  mlp.hidden = {32, 16};
  auto model = nn::make_model(mlp);
  model->train();
  const auto cost = train::measure_classifier_cost(*model, {1, 28, 28}, "");
  EXPECT_EQ(cost.multiply_adds, 784 * 32 + 32 * 16 + 16 * 10);
  EXPECT_EQ(cost.parameters, nn::count_parameters(*model));
  EXPECT_GT(cost.latency_ms, 0.0);
  EXPECT_GT(cost.images_per_second, 0.0);
  EXPECT_EQ(cost.file_bytes, 0);
  EXPECT_TRUE(model->is_training()) << "the measurement restores the model's mode";

  nn::ModelSpec convnet;
  convnet.kind = "convnet";
  convnet.channels = {4, 6};
  convnet.hidden = {24};
  auto conv = nn::make_model(convnet);
  // 5x5 convolutions with padding 2, each followed by 2x2 pooling: 28x28x4, then 14x14x6.
  const double expected = 28 * 28 * 4 * (1 * 25) + 14 * 14 * 6 * (4 * 25) + (6 * 7 * 7) * 24 + 24 * 10;
  EXPECT_EQ(train::measure_classifier_cost(*conv, {1, 28, 28}, "").multiply_adds, expected);
}

}  // namespace
}  // namespace distillery::testing
