#pragma once

/// \file
/// Data-parallel process groups on PyTorch's c10d (Gloo for CPU tensors,
/// NCCL for CUDA tensors where LibTorch was built with it), joined from the
/// environment that torchrun, Slurm or a shell sets.
///
/// A group is created through a c10d TCPStore at MASTER_ADDR:MASTER_PORT
/// (rank 0 serves it, or torchrun's agent does when it set
/// TORCHELASTIC_USE_AGENT_STORE). Every collective waits at most the group's
/// timeout; a failed or timed-out one throws a c10::Error that names this
/// rank, the operation and, when the rank at fault said so before it
/// exited, that rank and its error (see ProcessGroup::report_failure).
///
/// Example:
/// ```
/// auto group = sbgm::dist::init_from_env();   // null when not launched
/// if (group) {                                  // by torchrun / Slurm
///   trainer.process_group(group);
/// }
/// ```
///
/// This header does not include the c10d headers (they need the build's
/// USE_C10D_* definitions); the library does.

#include <torch/arg.h>
#include <torch/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace sbgm {
namespace dist {

/// Where a process stands in a launch, read from the environment.
struct LaunchInfo {
  /// "torchrun" (RANK / WORLD_SIZE), "slurm" (SLURM_PROCID / SLURM_NTASKS)
  /// or "none" (a single process).
  std::string launcher = "none";
  int64_t rank = 0;
  int64_t world_size = 1;
  int64_t local_rank = 0;
  std::string master_addr = "127.0.0.1";
  int64_t master_port = 29500;
  /// torchrun's agent serves the store (TORCHELASTIC_USE_AGENT_STORE=True);
  /// rank 0 then connects as a client under the prefix
  /// /worker/attempt_<TORCHELASTIC_RESTART_COUNT>, as PyTorch's env://.
  bool agent_store = false;
  int64_t restart_count = 0;
};

/// Reads the launch from `env` (name -> value): RANK, WORLD_SIZE,
/// LOCAL_RANK (default 0), MASTER_ADDR (default 127.0.0.1), MASTER_PORT
/// (default 29500) when RANK or WORLD_SIZE is set; else SLURM_PROCID,
/// SLURM_NTASKS, SLURM_LOCALID with MASTER_ADDR required; else a single
/// process. Throws on values that do not parse or do not fit (a rank
/// outside [0, world size), a port outside [1, 65535], ...), naming them.
LaunchInfo launch_info(const std::map<std::string, std::string>& env);
/// The same from this process's environment.
LaunchInfo launch_info();

/// Which c10d backend carries the collectives.
enum class Backend {
  /// NCCL for a CUDA device when LibTorch has it, else Gloo.
  Auto,
  Gloo,
  NCCL,
};

/// True when this build of sbgm can create NCCL groups (LibTorch with CUDA
/// and NCCL, found at configure time).
bool nccl_available();

/// Options of ProcessGroup::create.
///
/// Example: `ProcessGroupOptions().timeout(std::chrono::seconds(30))`
struct ProcessGroupOptions {
  /// Longest wait of any collective. Default: 300 s.
  TORCH_ARG(std::chrono::milliseconds, timeout) = std::chrono::seconds(300);
  /// Longest wait for every rank to reach the store and join (processes
  /// may start far apart); the collectives' timeout starts counting only
  /// once all have joined. Default: 300 s.
  TORCH_ARG(std::chrono::milliseconds, init_timeout) =
      std::chrono::seconds(300);
  /// Default: Auto.
  TORCH_ARG(Backend, backend) = Backend::Auto;
  /// The device of the tensors the group reduces (CUDA picks NCCL under
  /// Auto; its index defaults to LOCAL_RANK). Default: CPU.
  TORCH_ARG(torch::Device, device) = torch::Device(torch::kCPU);
  /// Gloo's network interface (as GLOO_SOCKET_IFNAME, which is read when
  /// this is empty); without either, Gloo binds to the loopback address when
  /// MASTER_ADDR is a loopback address and to this host's name otherwise.
  /// Default: "".
  TORCH_ARG(std::string, interface) = "";
};

class ProcessGroup;

/// A collective in flight (from the *_async calls).
class PendingOp {
 public:
  PendingOp() = default;
  /// Waits for it (at most the group's timeout); throws as the blocking
  /// call would. A default-constructed or finished op returns at once.
  /// The group must outlive the op.
  void wait();
  bool defined() const {
    return static_cast<bool>(impl_);
  }

 private:
  friend class ProcessGroup;
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

/// A c10d process group with the few collectives data-parallel training
/// needs. Every rank must call the collectives in the same order.
class ProcessGroup {
 public:
  /// Creates the store and the group (blocks until all ranks joined, at
  /// most options.timeout). `info.world_size` may be 1.
  static std::shared_ptr<ProcessGroup> create(
      const LaunchInfo& info,
      ProcessGroupOptions options = ProcessGroupOptions());
  ~ProcessGroup();
  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;

  int64_t rank() const;
  int64_t world_size() const;
  int64_t local_rank() const;
  /// rank() == 0: the rank that logs and writes files.
  bool is_main() const {
    return rank() == 0;
  }
  /// "gloo" or "nccl".
  std::string backend_name() const;
  std::chrono::milliseconds timeout() const;
  const LaunchInfo& info() const;

  /// Blocks until every rank got here. `what` names the call in errors.
  void barrier(const std::string& what = "barrier");
  /// Copies rank `root`'s tensors into every rank's (in place; the same
  /// shapes and dtypes on every rank).
  void broadcast_(
      std::vector<torch::Tensor> tensors,
      int64_t root = 0,
      const std::string& what = "broadcast");
  /// Sums `tensor` over the ranks, in place.
  void allreduce_sum_(
      torch::Tensor tensor, const std::string& what = "allreduce");
  /// Sums in place, then divides by world_size().
  void allreduce_mean_(
      torch::Tensor tensor, const std::string& what = "allreduce");
  /// Starts a sum in place and returns at once; wait() on the result before
  /// reading `tensor`.
  PendingOp allreduce_sum_async_(
      torch::Tensor tensor, const std::string& what = "allreduce");
  /// Every rank's `tensor` (the same shape and dtype on every rank), in
  /// rank order.
  std::vector<torch::Tensor> allgather(
      const torch::Tensor& tensor, const std::string& what = "allgather");
  /// Several tensors summed in place, in buckets of about `bucket_bytes`
  /// (one flat copy and one all-reduce per bucket).
  void allreduce_mean_bucketed_(
      const std::vector<torch::Tensor>& tensors,
      int64_t bucket_bytes = 25 << 20,
      const std::string& what = "allreduce");

  /// Tells the other ranks (through the store) why this rank is about to
  /// fail, so that their errors name it; best effort, never throws.
  void report_failure(const std::string& message) noexcept;
  /// Finishes: a barrier (unless `barrier` is false) and the release of the
  /// group and store. Idempotent; later collectives throw.
  void shutdown(bool barrier = true);

 private:
  struct Impl;
  explicit ProcessGroup(std::unique_ptr<Impl> impl);
  [[noreturn]] void fail(
      const std::string& what, const std::string& error) const;
  std::unique_ptr<Impl> impl_;
  friend class PendingOp;
};

/// Joins the group the environment describes (launch_info()) when it has
/// more than one process; returns null otherwise.
std::shared_ptr<ProcessGroup> init_from_env(
    ProcessGroupOptions options = ProcessGroupOptions());

}  // namespace dist
}  // namespace sbgm
