#pragma once
// Co-distillation across processes and machines: one peer per worker, weights exchanged with an
// allgather on torch's c10d ProcessGroupGloo after a TCPStore rendezvous. Workers are started the
// torchrun way (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT), so any cluster launcher works; a
// local launcher starts N workers on this machine.
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "distillery/config.h"
#include "distillery/distill/codistill.h"

namespace distillery::distill {

struct DistributedEnv {
  int64_t rank = 0;
  int64_t world_size = 1;
  std::string master_addr = "127.0.0.1";
  int port = 29500;
  /// From RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT; nullopt when WORLD_SIZE is unset.
  /// Throws InputError naming the variable when a value is malformed.
  static std::optional<DistributedEnv> from_environment();
};

/// Joins the group: rendezvous through a TCPStore served by rank 0, then a Gloo process group.
/// Throws std::runtime_error when the rendezvous does not complete within the timeout.
std::unique_ptr<PeerExchange> connect_gloo_exchange(const DistributedEnv& env, double timeout_seconds);

/// One worker: trains peer env.rank on its shard and exchanges weights with the others. Writes
/// run_dir/peer-<rank>/result.json and test_probs.pt; write_group_report then combines them.
CodistillOutcome run_codistill_worker(const Config& config, const DistributedEnv& env);

struct WorkerExit {
  int64_t rank = 0;
  int exit_code = 0;  // -signal when killed by a signal
};

/// Starts `procs` copies of `executable` with `args` on this machine (RANK etc. set, a free port
/// on 127.0.0.1) and waits for all of them.
std::vector<WorkerExit> launch_local_workers(const std::string& executable, const std::vector<std::string>& args,
                                             int64_t procs);

/// After a multi-process run: reads every worker's results, names the lost peers, and writes
/// run_dir/result.json for the group. Returns it.
nlohmann::json write_group_report(const std::string& run_dir, int64_t world_size, const torch::Tensor& test_labels,
                                  const std::vector<WorkerExit>& exits);

}  // namespace distillery::distill
