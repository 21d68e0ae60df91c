#pragma once

// The benchmark workloads of sbgm-bench (definitions in main.cpp's header
// comment and bench/README.md; bench/peer.py has the Python side).

#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace sbgm::bench {

struct Workload {
  /// One timed call.
  std::function<void()> step;
  /// Waits for queued device work (CUDA); no-op on CPU.
  std::function<void()> sync;
  /// Model FLOPs of one step (multiply-adds count 2).
  int64_t flops = 0;
  /// Steps one call of `step` performs (the time is divided by it).
  int64_t steps_per_call = 1;
  /// Timed iterations when --iters is not given.
  int64_t default_iters = 100;
};

/// The names make_workload knows, in the order "all" runs them.
std::vector<std::string> workload_names();

/// Builds a workload on `device`. Names with the suffix "_naive" time the
/// straightforward version (autograd + torch::optim::Adam +
/// clip_grad_norm_, or a sampling loop with temporaries), "_flat" the
/// autograd step with FlatAdam, for the table of what each change bought.
Workload make_workload(const std::string& name, torch::Device device);

/// FLOPs of the convolutions and matrix products `fn` runs, counted from
/// their input shapes by a RecordFunction observer (forward ops only).
int64_t count_flops(const std::function<void()>& fn);

}  // namespace sbgm::bench
