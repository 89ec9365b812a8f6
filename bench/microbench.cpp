// Micro-benchmarks of distillery's hot paths, and the machine's GEMM speed (its compute limit for
// the MLP workloads that bench/run.py compares with plain PyTorch).
//   build/bench/distillery_microbench [--benchmark_filter=...] [--benchmark_format=json]
// MNIST is read from $DISTILLERY_DATA/mnist, else from the source tree's data/mnist.
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/CPUAllocator.h>

#include <atomic>
#include <mutex>
#include <unordered_map>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>

#include "distillery/data/augment.h"
#include "distillery/data/idx.h"
#include "distillery/distill/loss.h"
#include "distillery/distill/teacher.h"
#include "distillery/distill/codistill.h"
#include "distillery/distill/teacher_cache.h"
#include "distillery/nn/capsules.h"
#include "distillery/nn/fused_dropout.h"
#include "distillery/system.h"
#include "distillery/nn/glom.h"
#include "distillery/nn/model_spec.h"

namespace {

namespace dd = distillery::data;
namespace ds = distillery::distill;

std::string mnist_dir() {
  const char* env = std::getenv("DISTILLERY_DATA");
  return std::string(env && *env ? env : DISTILLERY_SOURCE_DIR "/data") + "/mnist";
}

// soft_target_loss forward + backward: B = 100 students logits against teacher logits, K = 10, T = 20.
void BM_SoftTargetLoss(benchmark::State& state) {
  torch::manual_seed(0);
  const int64_t batch = state.range(0), classes = 10;
  auto student = torch::randn({batch, classes}).requires_grad_(true);
  auto teacher = torch::randn({batch, classes});
  const auto options = ds::SoftTargetLossOptions().temperature(20.0);
  for (auto _ : state) {
    auto loss = ds::soft_target_loss(student, teacher, torch::Tensor(), options);
    loss.backward();
    student.mutable_grad().zero_();
    benchmark::DoNotOptimize(loss.data_ptr());
  }
  state.SetItemsProcessed(state.iterations() * batch);
}
BENCHMARK(BM_SoftTargetLoss)->Arg(100)->UseRealTime();

// Batched jitter: B = 100 images 1x28x28, shifts of up to 2 pixels.
void BM_ShiftImages(benchmark::State& state) {
  torch::manual_seed(0);
  const int64_t batch = state.range(0), max_shift = 2;
  auto images = torch::rand({batch, 1, 28, 28});
  auto generator = at::make_generator<at::CPUGeneratorImpl>(1);
  for (auto _ : state) {
    auto shifts = dd::random_shifts(batch, max_shift, generator);
    auto out = dd::shift_images(images, shifts, max_shift);
    benchmark::DoNotOptimize(out.data_ptr());
  }
  state.SetItemsProcessed(state.iterations() * batch);
}
BENCHMARK(BM_ShiftImages)->Arg(100)->UseRealTime();

// IDX loading of the MNIST test images (10000 x 28 x 28 uint8, 7.8 MB).
void BM_ReadIdxMnistTest(benchmark::State& state) {
  const std::string path = mnist_dir() + "/t10k-images-idx3-ubyte";
  if (!std::filesystem::exists(path)) {
    state.SkipWithError(("missing " + path + " (run make setup)").c_str());
    return;
  }
  int64_t bytes = 0;
  for (auto _ : state) {
    auto images = dd::read_idx(path);
    bytes = images.numel();
    benchmark::DoNotOptimize(images.data_ptr());
  }
  state.SetBytesProcessed(state.iterations() * bytes);
  state.SetItemsProcessed(state.iterations() * 10000);
}
BENCHMARK(BM_ReadIdxMnistTest)->Unit(benchmark::kMillisecond)->UseRealTime();

// TeacherCache lookup when every row of the batch is already cached (B = 100, jitter 2, 60000 images):
// what later epochs of a distillation pay instead of the teacher's forward pass.
void BM_TeacherCacheHit(benchmark::State& state) {
  torch::manual_seed(0);
  const int64_t batch = state.range(0), max_shift = 2, dataset_size = 60000;
  distillery::nn::ModelSpec spec;
  spec.hidden = {1200, 1200};
  ds::ModelTeacher teacher(distillery::nn::make_model(spec), "random 1200-1200 MLP");
  ds::TeacherCache cache(teacher, /*temperature=*/20.0, dataset_size, dd::Augmentation{max_shift}.view_count());
  auto images = torch::rand({batch, 1, 28, 28});
  auto indices = torch::randperm(dataset_size, torch::kInt64).slice(0, 0, batch);
  auto generator = at::make_generator<at::CPUGeneratorImpl>(1);
  auto views = dd::shift_ids(dd::random_shifts(batch, max_shift, generator), max_shift);
  cache.soft_targets(images, indices, views);  // fill: the teacher runs once
  for (auto _ : state) {
    auto targets = cache.soft_targets(images, indices, views);
    benchmark::DoNotOptimize(targets.data_ptr());
  }
  if (cache.teacher_rows() != batch) state.SkipWithError("the teacher ran again on cached rows");
  state.SetItemsProcessed(state.iterations() * batch);
}
BENCHMARK(BM_TeacherCacheHit)->Arg(100)->UseRealTime();

// For comparison: the teacher's forward pass on the same batch (what a cache hit saves), and on
// the rows of 10 batches at once (distill.teacher_batches = 10): compare the items per second.
void BM_TeacherForward(benchmark::State& state) {
  torch::manual_seed(0);
  const int64_t batch = state.range(0);
  distillery::nn::ModelSpec spec;
  spec.hidden = {1200, 1200};
  ds::ModelTeacher teacher(distillery::nn::make_model(spec), "random 1200-1200 MLP");
  auto images = torch::rand({batch, 1, 28, 28});
  for (auto _ : state) {
    auto targets = teacher.soft_targets(images, 20.0);
    benchmark::DoNotOptimize(targets.data_ptr());
  }
  state.SetItemsProcessed(state.iterations() * batch);
}
BENCHMARK(BM_TeacherForward)->Arg(100)->Arg(1000)->UseRealTime();

// ReLU + dropout (p = 0.5) forward and backward on a hidden layer of the 1200-1200 teacher (B = 100):
// arg 0: nn::fused_relu_dropout; 1: torch::dropout(torch::relu(x)), as the Python script does.
void BM_ReluDropout(benchmark::State& state) {
  torch::manual_seed(0);
  const bool fused = state.range(0) == 0;
  auto x = torch::randn({100, 1200}).requires_grad_(true);
  auto upstream = torch::randn({100, 1200});
  for (auto _ : state) {
    auto y = fused ? distillery::nn::fused_relu_dropout(x, 0.5, /*training=*/true)
                   : torch::dropout(torch::relu(x), 0.5, /*train=*/true);
    y.backward(upstream);
    x.mutable_grad() = torch::Tensor();
    benchmark::DoNotOptimize(y.data_ptr());
  }
  state.SetItemsProcessed(state.iterations() * 100);
}
BENCHMARK(BM_ReluDropout)->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond)->UseRealTime();

// GEMM: torch::mm of two n x n fp32 matrices, 2 n^3 FLOP each: the machine's compute limit.
void BM_Gemm(benchmark::State& state) {
  torch::NoGradGuard no_grad;
  torch::manual_seed(0);
  const int64_t n = state.range(0);
  auto a = torch::randn({n, n}), b = torch::randn({n, n}), c = torch::empty({n, n});
  torch::mm_out(c, a, b);  // warm-up
  for (auto _ : state) {
    torch::mm_out(c, a, b);
    benchmark::DoNotOptimize(c.data_ptr());
  }
  state.counters["FLOPS"] =
      benchmark::Counter(2.0 * double(n) * double(n) * double(n), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["threads"] = torch::get_num_threads();
}
BENCHMARK(BM_Gemm)->Arg(512)->Arg(1024)->Unit(benchmark::kMillisecond)->UseRealTime();

// The same product in bfloat16 on every core: the limit of train.precision=bf16, whose matrix
// products run in oneDNN's bf16 kernels on LibTorch's intra-op pool (all cores under bf16).
void BM_GemmBf16(benchmark::State& state) {
  torch::NoGradGuard no_grad;
  torch::manual_seed(0);
  const int before = torch::get_num_threads();
  torch::set_num_threads(static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  const int64_t n = state.range(0);
  auto a = torch::randn({n, n}).to(torch::kBFloat16), b = torch::randn({n, n}).to(torch::kBFloat16);
  auto c = torch::mm(a, b);  // warm-up
  for (auto _ : state) {
    c = torch::mm(a, b);
    benchmark::DoNotOptimize(c.data_ptr());
  }
  state.counters["FLOPS"] =
      benchmark::Counter(2.0 * double(n) * double(n) * double(n), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["threads"] = torch::get_num_threads();
  torch::set_num_threads(before);
}
BENCHMARK(BM_GemmBf16)->Arg(1024)->Unit(benchmark::kMillisecond)->UseRealTime();

// Memory bandwidth: copying n MiB of floats reads n and writes n MiB (the limit of the
// element-wise passes: dropout, ReLU, jitter gathers, optimizer updates).
void BM_MemoryCopy(benchmark::State& state) {
  torch::NoGradGuard no_grad;
  const int64_t floats = state.range(0) * (1 << 20) / 4;
  auto source = torch::rand({floats}), target = torch::empty({floats});
  target.copy_(source);  // warm-up: touch every page
  for (auto _ : state) {
    target.copy_(source);
    benchmark::DoNotOptimize(target.data_ptr());
  }
  state.SetBytesProcessed(state.iterations() * 2 * floats * 4);
}
BENCHMARK(BM_MemoryCopy)->Arg(256)->Unit(benchmark::kMillisecond)->UseRealTime();

// Dynamic routing forward + backward, the quick CapsNet's shape: B = 64 images, 576 primary
// capsules, 10 class capsules of 16 dimensions, 3 iterations; arg 1: 0 the fused kernel, 1 the
// op-by-op reference differentiated by autograd.
void BM_DynamicRouting(benchmark::State& state) {
  torch::manual_seed(0);
  const int64_t batch = 64;
  // Laid out [B, N_out, N_in, D] in memory, as RoutingCaps::predictions produces them.
  auto stored = (0.05 * torch::randn({batch, 10, 576, 16})).requires_grad_(true);
  for (auto _ : state) {
    auto predictions = stored.transpose(1, 2);
    auto out = state.range(1) == 0 ? distillery::nn::dynamic_routing(predictions, state.range(0))
                                   : distillery::nn::dynamic_routing_reference(predictions, state.range(0));
    out.poses.sum().backward();
    stored.mutable_grad().zero_();
    benchmark::DoNotOptimize(out.poses.data_ptr());
  }
  state.SetItemsProcessed(state.iterations() * batch);
}
BENCHMARK(BM_DynamicRouting)->Args({3, 0})->Args({3, 1})->Unit(benchmark::kMillisecond)->UseRealTime();

// A CapsNet training step without the optimizer: forward, margin + reconstruction loss, backward;
// the quick CapsNet (Conv 128, 16 primary types, 3 iterations) on B = 32 images.
void BM_CapsNetStep(benchmark::State& state) {
  torch::manual_seed(0);
  distillery::nn::CapsNet net(distillery::nn::CapsNetOptions().conv_channels(128).primary_types(16));
  auto images = torch::rand({32, 1, 28, 28});
  auto labels = torch::randint(10, {32});
  for (auto _ : state) {
    net->zero_grad();
    distillery::nn::capsnet_loss(*net, images, labels, distillery::nn::CapsNetLossOptions()).backward();
  }
  state.SetItemsProcessed(state.iterations() * 32);
}
BENCHMARK(BM_CapsNetStep)->Unit(benchmark::kMillisecond)->UseRealTime();

// GLOM consensus attention forward + backward on the quick GLOM's level shape: B = 32 scenes, a
// 14 x 14 grid, D = 32, window radius 2; arg 0: the linear-cost windowed path (the fused kernel),
// 1: the dense path, 2: the windowed path written op by op (consensus_attention_reference).
void BM_ConsensusAttention(benchmark::State& state) {
  torch::manual_seed(0);
  auto x = torch::randn({32, 196, 32}).requires_grad_(true);
  const auto options = distillery::nn::ConsensusOptions().radius(2).beta(10.0).dense(state.range(0) == 1);
  for (auto _ : state) {
    auto out = state.range(0) == 2 ? distillery::nn::consensus_attention_reference(x, 14, 14, options)
                                   : distillery::nn::consensus_attention(x, 14, 14, options);
    out.consensus.sum().backward();
    x.mutable_grad().zero_();
    benchmark::DoNotOptimize(out.consensus.data_ptr());
  }
  state.SetItemsProcessed(state.iterations() * 32);
}
BENCHMARK(BM_ConsensusAttention)->Arg(0)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();

// One GLOM training step (forward, the full objective, backward) on B = 8 images of side arg
// (4 x 4 patches: N = (side / 4)^2 locations) with the linear-cost windowed attention.
struct GlomStepWorkload {
  explicit GlomStepWorkload(int64_t side)
      : model(distillery::nn::GlomOptions().image_size(side).patch_size(4).levels(3).dim(32).hidden(64).iterations(5)
                  .radii({1, 2, 3}).betas({5, 10, 20}).context(4).bottom_up_window(1)),
        images(torch::rand({kBatch, 1, side, side})),
        labels(torch::zeros({kBatch, 10})) {
    labels.select(1, 3).fill_(1.0);
  }
  void step() {
    auto loss = distillery::nn::glom_loss(model, images, labels, distillery::nn::GlomLossOptions());
    loss.total.backward();
    model->zero_grad();
  }
  static constexpr int64_t kBatch = 8;
  distillery::nn::Glom model;
  torch::Tensor images, labels;
};

void BM_GlomStep(benchmark::State& state) {
  torch::manual_seed(0);
  const int64_t side = state.range(0);
  GlomStepWorkload work(side);
  for (auto _ : state) work.step();
  state.counters["locations"] = double((side / 4) * (side / 4));
  state.counters["parameters"] = double(distillery::nn::count_parameters(*work.model));
  state.SetItemsProcessed(state.iterations() * GlomStepWorkload::kBatch);
}
BENCHMARK(BM_GlomStep)->Arg(28)->Arg(56)->Arg(112)->Unit(benchmark::kMillisecond)->UseRealTime();

// Counts the bytes of CPU tensors alive while it is installed, and their peak: a measure of a
// workload's memory that, unlike a process's peak RSS, is blind to the allocator's caching and to
// the library's own footprint. It wraps the allocator it replaces. One instance lives for the whole
// process, so that a tensor it allocated may outlive its installation.
class PeakTensorBytes final : public c10::Allocator {
 public:
  static PeakTensorBytes& instance() {
    static auto* counter = new PeakTensorBytes();  // never destroyed: deleters may run at exit
    return *counter;
  }
  void install() {
    if (c10::GetCPUAllocator() != this) inner_ = c10::GetCPUAllocator();
    peak_.store(live_.load());
    c10::SetCPUAllocator(this, kPriority);
  }
  void uninstall() { c10::SetCPUAllocator(inner_, kPriority); }
  int64_t live() const { return live_.load(); }
  int64_t peak() const { return peak_.load(); }

  // The context is the data pointer itself, as LibTorch's raw_allocate users require; the inner
  // allocation and its size wait in a table until release.
  c10::DataPtr allocate(size_t bytes) const override {
    c10::DataPtr inner = inner_->allocate(bytes);
    void* data = inner.get();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      records_.emplace(data, Record{std::move(inner), static_cast<int64_t>(bytes)});
    }
    const int64_t now = live_.fetch_add(static_cast<int64_t>(bytes)) + static_cast<int64_t>(bytes);
    int64_t seen = peak_.load();
    while (now > seen && !peak_.compare_exchange_weak(seen, now)) {
    }
    return {data, data, &release, c10::Device(c10::DeviceType::CPU)};
  }
  c10::DeleterFnPtr raw_deleter() const override { return &release; }

 private:
  static constexpr uint8_t kPriority = 100;
  struct Record {
    c10::DataPtr inner;
    int64_t bytes;
  };
  static void release(void* data) {
    auto& self = instance();
    Record record;
    {
      std::lock_guard<std::mutex> lock(self.mutex_);
      auto found = self.records_.find(data);
      if (found == self.records_.end()) return;
      record = std::move(found->second);
      self.records_.erase(found);
    }
    self.live_.fetch_sub(record.bytes);
  }  // the inner allocation is freed here, outside the lock
  c10::Allocator* inner_ = nullptr;
  mutable std::mutex mutex_;
  mutable std::unordered_map<void*, Record> records_;
  mutable std::atomic<int64_t> live_{0}, peak_{0};
};

// Peak tensor memory of one GLOM training step (the same step as BM_GlomStep) against the number of
// locations N = (side / 4)^2: windowed consensus attention should make it grow linearly in N.
void BM_GlomStepMemory(benchmark::State& state) {
  torch::manual_seed(0);
  const int64_t side = state.range(0);
  GlomStepWorkload work(side);
  auto& counter = PeakTensorBytes::instance();
  int64_t peak = 0;
  for (auto _ : state) {
    counter.install();
    const int64_t before = counter.live();
    work.step();
    counter.uninstall();
    peak = std::max(peak, counter.peak() - before);
  }
  state.counters["locations"] = double((side / 4) * (side / 4));
  state.counters["peak_tensor_mib"] = double(peak) / (1024.0 * 1024.0);
}
BENCHMARK(BM_GlomStepMemory)->Arg(28)->Arg(56)->Arg(112)->Arg(224)->Iterations(1)->Unit(benchmark::kMillisecond)->UseRealTime();

// The in-process co-distillation exchange of an 800-800 MLP peer: flatten its weights, and load
// them into another peer's stale copy (what every exchange does per pair of peers).
void BM_CodistillExchange(benchmark::State& state) {
  torch::manual_seed(0);
  distillery::nn::ModelSpec spec;
  spec.hidden = {800, 800};
  dd::Dataset shard{torch::rand({100, 1, 28, 28}), torch::randint(10, {100}, torch::kInt64)};
  ds::CodistillOptions options;
  distillery::train::TrainOptions train;
  ds::Peer a(0, spec, shard, train, options, 10), b(1, spec, shard, train, options, 10);
  for (auto _ : state) {
    auto flat = a.weights();
    b.receive(0, flat);
    benchmark::DoNotOptimize(flat.data_ptr());
  }
  state.SetBytesProcessed(state.iterations() * distillery::nn::count_parameters(a.model()) * 4);
}
BENCHMARK(BM_CodistillExchange)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

// As the distillery command does: freed blocks stay in the process for the next step.
int main(int argc, char** argv) {
  distillery::keep_freed_memory_for_reuse();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
