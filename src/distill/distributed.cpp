// c10d's Gloo process group is only declared when USE_C10D_GLOO is defined; LibTorch's CPU library
// is built with it.
#define USE_C10D_GLOO 1
#include "distillery/distill/distributed.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "distillery/error.h"
#include "distillery/report/metrics.h"
#include "distillery/train/run.h"

namespace distillery::distill {
namespace {

int64_t env_int(const char* name, const char* value) {
  try {
    size_t used = 0;
    const long long v = std::stoll(value, &used);
    if (used != std::string(value).size()) throw std::invalid_argument(value);
    return v;
  } catch (const std::exception&) {
    throw InputError(fmt::format("environment variable {}='{}' is not an integer", name, value));
  }
}

// The store's server (rank 0) must own MASTER_PORT; a port held by another process is a set-up
// mistake the user can fix, so it is reported as bad input rather than as a failed rendezvous.
void check_port_free(int64_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return;
  const int yes = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_ANY);
  address.sin_port = htons(static_cast<uint16_t>(port));
  const bool in_use = ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 && errno == EADDRINUSE;
  ::close(fd);
  if (in_use) throw InputError(fmt::format("MASTER_PORT={} is already in use on this machine: choose a free port", port));
}

class GlooExchange : public PeerExchange {
 public:
  GlooExchange(const DistributedEnv& env, double timeout_seconds)
      : world_size_(env.world_size), timeout_(static_cast<int64_t>(timeout_seconds * 1000)) {
    c10d::TCPStoreOptions store_options;
    store_options.port = static_cast<uint16_t>(env.port);
    store_options.isServer = env.rank == 0;
    store_options.numWorkers = static_cast<size_t>(env.world_size);
    store_options.waitWorkers = true;
    store_options.timeout = timeout_;
    if (env.rank == 0) check_port_free(env.port);
    try {
      store_ = c10::make_intrusive<c10d::TCPStore>(env.master_addr, store_options);
      auto options = c10d::ProcessGroupGloo::Options::create(timeout_);
      // On one machine everything stays on loopback; across machines each worker binds to its
      // own interface (GLOO_SOCKET_IFNAME, else the address its hostname resolves to).
      const bool local = env.master_addr == "localhost" || env.master_addr.rfind("127.", 0) == 0;
      const char* interface = std::getenv("GLOO_SOCKET_IFNAME");
      options->devices.push_back(local ? c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1")
                                 : interface && *interface ? c10d::ProcessGroupGloo::createDeviceForInterface(interface)
                                                           : c10d::ProcessGroupGloo::createDefaultDevice());
      group_ = c10::make_intrusive<c10d::ProcessGroupGloo>(store_, env.rank, env.world_size, options);
    } catch (const std::exception& e) {
      throw std::runtime_error(fmt::format("rank {}: rendezvous with {} workers at {}:{} did not complete within {:.0f} s: {}",
                                           env.rank, env.world_size, env.master_addr, env.port, timeout_seconds,
                                           std::string(e.what()).substr(0, 300)));
    }
  }

  std::vector<torch::Tensor> allgather(const torch::Tensor& own_weights) override {
    if (broken_) return {};
    std::vector<std::vector<torch::Tensor>> outputs(1);
    for (int64_t r = 0; r < world_size_; ++r) outputs[0].push_back(torch::empty_like(own_weights));
    std::vector<torch::Tensor> inputs = {own_weights.contiguous()};
    try {
      auto work = group_->allgather(outputs, inputs);
      if (!work->wait(timeout_)) throw std::runtime_error("timed out");
    } catch (const std::exception& e) {
      broken_ = true;
      failure_ = std::string(e.what()).substr(0, 300);
      return {};
    }
    return outputs[0];
  }

  bool broken() const override { return broken_; }
  std::string failure() const override { return failure_; }

 private:
  int64_t world_size_;
  std::chrono::milliseconds timeout_;
  c10::intrusive_ptr<c10d::TCPStore> store_;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group_;
  bool broken_ = false;
  std::string failure_;
};

int free_local_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  socklen_t length = sizeof(address);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    if (fd >= 0) ::close(fd);
    throw std::runtime_error("cannot find a free port on 127.0.0.1");
  }
  const int port = ntohs(address.sin_port);
  ::close(fd);
  return port;
}

}  // namespace

std::optional<DistributedEnv> DistributedEnv::from_environment() {
  const char* world = std::getenv("WORLD_SIZE");
  if (!world || !*world) return std::nullopt;
  DistributedEnv env;
  env.world_size = env_int("WORLD_SIZE", world);
  const char* rank = std::getenv("RANK");
  if (!rank) throw InputError("WORLD_SIZE is set but RANK is not");
  env.rank = env_int("RANK", rank);
  if (env.world_size < 1 || env.rank < 0 || env.rank >= env.world_size) {
    throw InputError(fmt::format("RANK={} must lie in [0, WORLD_SIZE={})", env.rank, env.world_size));
  }
  if (const char* addr = std::getenv("MASTER_ADDR"); addr && *addr) env.master_addr = addr;
  if (const char* port = std::getenv("MASTER_PORT"); port && *port) {
    env.port = static_cast<int>(env_int("MASTER_PORT", port));
    if (env.port <= 0 || env.port > 65535) throw InputError(fmt::format("MASTER_PORT={} is not a valid port", env.port));
  }
  return env;
}

std::unique_ptr<PeerExchange> connect_gloo_exchange(const DistributedEnv& env, double timeout_seconds) {
  return std::make_unique<GlooExchange>(env, timeout_seconds);
}

CodistillOutcome run_codistill_worker(const Config& config, const DistributedEnv& env) {
  train::apply_thread_config(config);
  auto options = codistill_options_from_config(config);
  options.peers = env.world_size;
  const auto run_data = train::load_run_data(config);
  auto train_options = train::train_options_from_config(config);
  const auto spec = train::model_spec_from_config(config, run_data.train);
  const std::string run_dir = train::prepare_run_dir(config);
  const int64_t total_steps = codistill_total_steps(run_data.train.size(), options, train_options);
  std::vector<std::unique_ptr<Peer>> peers;
  peers.push_back(std::make_unique<Peer>(
      env.rank, spec, peer_shard(run_data.train, env.rank, options.peers, options.disjoint_shards, train_options.seed),
      train_options, options, total_steps));
  spdlog::info("codistill worker {}/{}: joining {}:{}", env.rank, env.world_size, env.master_addr, env.port);
  auto exchange = connect_gloo_exchange(env, options.exchange_timeout_seconds);
  const int64_t fault_step = config.get_int("codistill.fault_rank") == env.rank ? config.get_int("codistill.fault_exit_step") : 0;
  auto outcome = train_peer_group(peers, exchange.get(), run_data.test, options, train_options, total_steps, env.world_size,
                                  run_dir, fault_step);
  const std::string peer_dir = fmt::format("{}/peer-{}", run_dir, env.rank);
  std::filesystem::create_directories(peer_dir);
  torch::save(outcome.peers.front().test_probs, peer_dir + "/test_probs.pt");
  report::write_file_atomic(peer_dir + "/result.json", outcome.to_json().dump(2));
  return outcome;
}

std::vector<WorkerExit> launch_local_workers(const std::string& executable, const std::vector<std::string>& args,
                                             int64_t procs) {
  const int port = free_local_port();
  std::vector<pid_t> children;
  for (int64_t rank = 0; rank < procs; ++rank) {
    const pid_t pid = ::fork();
    if (pid < 0) throw std::runtime_error("cannot start a worker process (fork failed)");
    if (pid == 0) {
      ::setenv("RANK", std::to_string(rank).c_str(), 1);
      ::setenv("WORLD_SIZE", std::to_string(procs).c_str(), 1);
      ::setenv("MASTER_ADDR", "127.0.0.1", 1);
      ::setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
      std::vector<char*> argv;
      argv.push_back(const_cast<char*>(executable.c_str()));
      for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      ::execv(executable.c_str(), argv.data());
      std::_Exit(127);
    }
    children.push_back(pid);
  }
  std::vector<WorkerExit> exits;
  for (int64_t rank = 0; rank < procs; ++rank) {
    int status = 0;
    ::waitpid(children[rank], &status, 0);
    exits.push_back({rank, WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status)});
  }
  return exits;
}

nlohmann::json write_group_report(const std::string& run_dir, int64_t world_size, const torch::Tensor& test_labels,
                                  const std::vector<WorkerExit>& exits) {
  std::vector<PeerReport> finished;
  nlohmann::json peers = nlohmann::json::array();
  std::vector<int64_t> lost;
  double bytes_per_step = 0, allreduce_bytes_per_step = 0;
  for (int64_t rank = 0; rank < world_size; ++rank) {
    const std::string peer_dir = fmt::format("{}/peer-{}", run_dir, rank);
    const bool exited_cleanly = rank < int64_t(exits.size()) && exits[rank].exit_code == 0;
    if (!exited_cleanly || !std::filesystem::exists(peer_dir + "/result.json")) {
      lost.push_back(rank);
      continue;
    }
    std::ifstream in(peer_dir + "/result.json");
    auto result = nlohmann::json::parse(in);
    PeerReport report;
    report.rank = rank;
    torch::load(report.test_probs, peer_dir + "/test_probs.pt");
    report.test = train::score_logits(report.test_probs, test_labels, report.test_probs.size(1));
    finished.push_back(report);
    peers.push_back(result.at("peers").at(0));
    bytes_per_step = result.value("bytes_per_step", 0.0);
    allreduce_bytes_per_step = result.value("allreduce_bytes_per_step", 0.0);
  }
  nlohmann::json group = {{"world_size", world_size},
                          {"lost_peers", lost},
                          {"peers", peers},
                          {"bytes_per_step", bytes_per_step},
                          {"allreduce_bytes_per_step", allreduce_bytes_per_step},
                          {"group", summarize_peers(finished, test_labels)}};
  nlohmann::json exit_codes = nlohmann::json::array();
  for (const auto& e : exits) exit_codes.push_back({{"rank", e.rank}, {"exit_code", e.exit_code}});
  group["exits"] = exit_codes;
  report::write_file_atomic(run_dir + "/result.json", group.dump(2));
  return group;
}

}  // namespace distillery::distill
