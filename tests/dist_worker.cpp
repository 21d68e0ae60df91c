// One rank of the data-parallel tests (tests/distributed_test.cpp spawns it
// with RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT set). Modes:
//   collectives OUT        all-reduce, broadcast, bucketed mean, barrier;
//                          saves the results to OUT.rank<r>.pt
//   kill VICTIM STEP       all-reduces every step; rank VICTIM kills itself
//                          (SIGKILL) before STEP
//   throw VICTIM STEP      rank VICTIM throws at STEP, reports it, exits 1
//   hang VICTIM STEP       rank VICTIM sleeps 60 s at STEP
// Options after the mode: --timeout-ms N (default 5000).
// Exits 0 on success, 1 with "rank R error: ..." on stderr on a failure.

#include <torch/torch.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "sbgm/distributed.h"

namespace {

namespace dist = sbgm::dist;

int collectives(dist::ProcessGroup& g, const std::string& out) {
  const double r = static_cast<double>(g.rank());
  const double w = static_cast<double>(g.world_size());
  auto sum = torch::full({5}, r + 1, torch::kDouble);
  g.allreduce_sum_(sum, "test sum");
  auto mean = torch::arange(6, torch::kFloat) * (r + 1);
  g.allreduce_mean_(mean, "test mean");
  // Rank-dependent tensors of two dtypes, broadcast from the last rank.
  auto b1 = torch::full({2, 3}, r, torch::kDouble);
  auto b2 = torch::full({4}, r * 10, torch::kFloat);
  g.broadcast_({b1, b2}, g.world_size() - 1, "test broadcast");
  // Buckets of at most 16 bytes: several all-reduces.
  std::vector<torch::Tensor> parts{
      torch::full({3}, r, torch::kDouble),
      torch::full({2, 2}, 2 * r, torch::kDouble),
      torch::full({1}, r + w, torch::kDouble)};
  g.allreduce_mean_bucketed_(parts, /*bucket_bytes=*/16, "test buckets");
  g.barrier("test barrier");
  torch::save(
      std::vector<torch::Tensor>{
          sum, mean, b1, b2, parts[0], parts[1], parts[2]},
      out + ".rank" + std::to_string(g.rank()) + ".pt");
  g.shutdown();
  return 0;
}

int faults(
    dist::ProcessGroup& g,
    const std::string& mode,
    int64_t victim,
    int64_t at) {
  auto x = torch::ones({1000}, torch::kFloat);
  for (int64_t step = 0; step < 1000; ++step) {
    if (g.rank() == victim && step == at) {
      if (mode == "kill") {
        std::raise(SIGKILL);
      } else if (mode == "throw") {
        TORCH_CHECK(false, "the loss closure failed at step ", step);
      } else if (mode == "hang") {
        std::this_thread::sleep_for(std::chrono::seconds(60));
      }
    }
    g.allreduce_sum_(x, "allreduce of step " + std::to_string(step));
    x.fill_(1.0);
  }
  g.shutdown();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) {
    std::cerr << "usage: sbgm_dist_worker MODE ...\n";
    return 2;
  }
  int64_t timeout_ms = 5000;
  for (size_t i = 0; i + 1 < args.size(); ++i) {
    if (args[i] == "--timeout-ms") {
      timeout_ms = std::stoll(args[i + 1]);
    }
  }
  torch::set_num_threads(1);
  std::shared_ptr<dist::ProcessGroup> group;
  try {
    group = dist::ProcessGroup::create(
        dist::launch_info(),
        dist::ProcessGroupOptions().timeout(
            std::chrono::milliseconds(timeout_ms)));
    const std::string& mode = args[0];
    if (mode == "collectives") {
      return collectives(*group, args.at(1));
    }
    if (mode == "kill" || mode == "throw" || mode == "hang") {
      return faults(
          *group, mode, std::stoll(args.at(1)), std::stoll(args.at(2)));
    }
    std::cerr << "unknown mode " << mode << "\n";
    return 2;
  } catch (const c10::Error& e) {
    const std::string msg = e.what_without_backtrace();
    if (group) {
      group->report_failure(msg);
    }
    std::cerr << "rank " << (group ? group->rank() : -1) << " error: " << msg
              << std::endl;
    return 1;
  }
}
