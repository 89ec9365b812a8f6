#pragma once
// Points where a fault-injection test can stop the process at a known moment.
//
// With DISTILLERY_STOP_AT=POINT:N (or POINT:N:RANK, matched against the RANK variable of a
// distributed worker), the process stops itself with SIGSTOP when it reaches POINT at step N, and
// says so on stderr. A test waits for the stopped state and then kills it with SIGKILL from
// outside: a real kill that lands where the test asked, however fast or slow the machine is.
// Without the variable a fault point costs one getenv.
#include <cstdint>
#include <string_view>

namespace distillery {

/// Stops the process (SIGSTOP) if DISTILLERY_STOP_AT names this point and step.
/// Points: "train_step" (before a training step), "checkpoint_renaming" (a new checkpoint is
/// written to its temporary file, not yet renamed into place), "codistill_step" (before a peer's
/// step). A malformed DISTILLERY_STOP_AT is an InputError.
void fault_point(std::string_view point, int64_t step);

}  // namespace distillery
