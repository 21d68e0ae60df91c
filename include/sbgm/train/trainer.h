#pragma once

/// \file
/// A small training loop: any module, optimizer and loss closure, with
/// gradient-norm clipping, learning-rate warm-up, an EMA of the weights,
/// a terminal progress bar, a CSV log and atomic checkpoints with resume.

#include <ATen/core/Generator.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>
#include <torch/optim/optimizer.h>
#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "sbgm/distributed.h"
#include "sbgm/train/ema.h"

namespace sbgm {

class FlatAdam;

/// When to draw the progress bar.
enum class ProgressMode {
  /// Only when stderr is a terminal.
  Auto,
  On,
  Off,
};

/// How the learning rate changes over the run (after the warm-up).
enum class LRSchedule {
  /// lr throughout.
  Constant,
  /// lr (1 + cos(pi step / steps)) / 2, down to 0 at the last step.
  Cosine,
};

/// What the trainer does when a step's loss or gradient norm is not finite.
enum class NonFinitePolicy {
  /// Throw a c10::Error that names the first bad step and the last good
  /// checkpoint (left untouched). The check reads the loss back only every
  /// log_every steps, so no step waits for the device; the steps after the
  /// bad one until that check are not saved.
  Stop,
  /// Skip the bad step: no optimizer or EMA update, a warning on stderr, and
  /// training goes on (skipped_steps() counts them). Reads the loss and the
  /// gradient norm back at every step (one host sync per step).
  Skip,
};

/// Options of Trainer.
///
/// Example:
/// ```
/// sbgm::Trainer trainer(net.ptr(), loss_fn, sbgm::TrainerOptions(5000)
///                           .checkpoint_path("run/ckpt.pt")
///                           .csv_path("run/loss.csv"));
/// trainer.run();
/// ```
struct TrainerOptions {
  explicit TrainerOptions(int64_t steps);
  /// Total optimizer steps (a resumed run stops at the same total).
  TORCH_ARG(int64_t, steps);
  /// Learning rate of the default optimizer, sbgm::FlatAdam (Adam over one
  /// flat buffer; used only when no optimizer is given). Default: 1e-3.
  TORCH_ARG(double, lr) = 1e-3;
  /// Clip the global L2 norm of the gradients to this value (computed on
  /// the device, no host sync); <= 0 disables. With a FlatAdam optimizer
  /// the trainer sets its max_grad_norm to this value (> 0 only) and the
  /// clipping is fused into the optimizer step. Default: 1.0.
  TORCH_ARG(double, grad_clip) = 1.0;
  /// Linear learning-rate warm-up: lr * min(1, (step + 1) / lr_warmup)
  /// on every parameter group; 0 disables. Default: 0.
  TORCH_ARG(int64_t, lr_warmup) = 0;
  /// The decay that multiplies the warm-up factor. Default: Constant.
  TORCH_ARG(LRSchedule, lr_schedule) = LRSchedule::Constant;
  /// EMA decay; 0 disables the EMA. Default: 0.999.
  TORCH_ARG(double, ema_decay) = 0.999;
  /// EMA warm-up d = min(decay, (1 + n) / (10 + n)). Default: true.
  TORCH_ARG(bool, ema_warmup) = true;
  /// Read the loss back (a device sync), check it and log it every so many
  /// steps. Default: 100.
  TORCH_ARG(int64_t, log_every) = 100;
  /// CSV log "step,loss,grad_norm,lr,it_per_s,elapsed_s" with the mean loss
  /// and pre-clipping gradient norm over each logging window; empty: none.
  /// A resumed run appends to it. Default: "".
  TORCH_ARG(std::string, csv_path) = "";
  /// Checkpoint file; empty: no checkpoints. Default: "".
  TORCH_ARG(std::string, checkpoint_path) = "";
  /// Save every so many steps (and always at the end); 0: only at the end.
  /// Default: 0.
  TORCH_ARG(int64_t, checkpoint_every) = 0;
  /// Continue from checkpoint_path when that file exists. Default: true.
  TORCH_ARG(bool, resume) = true;
  /// The loss function accumulates the gradients into the parameters'
  /// grad() itself (e.g. with FusedMLPStep) and returns a loss that does not
  /// require grad; the trainer then does not call backward(). Default: false.
  TORCH_ARG(bool, loss_fn_computes_grads) = false;
  /// Progress bar on stderr: step, loss, it/s, time left. Default: Auto.
  TORCH_ARG(ProgressMode, progress) = ProgressMode::Auto;
  /// See NonFinitePolicy. Default: Stop.
  TORCH_ARG(NonFinitePolicy, nonfinite) = NonFinitePolicy::Stop;
  /// While run() trains, SIGINT and SIGTERM end it after the current step:
  /// it writes the checkpoint (when checkpoint_path is set), restores the
  /// previous handlers and returns with interrupted() true; a second signal
  /// during that save acts as it would have without the trainer. Off by
  /// default: a library does not take the process's signals unasked.
  /// Default: false.
  TORCH_ARG(bool, stop_on_signal) = false;
  /// Data-parallel training on this group (see sbgm/distributed.h; null:
  /// one process). Every rank builds the same module and optimizer and
  /// runs the same options; rank 0's parameters and buffers are broadcast
  /// at the start of run() (after a resume too); gradients are averaged
  /// over the ranks before clipping and the optimizer step (one all-reduce
  /// of FlatAdam's flat gradient buffer, else buckets of 25 MiB); logged
  /// losses are the ranks' mean. Only rank 0 draws the progress bar, writes
  /// the CSV, calls on_log and writes checkpoints (after gathering every
  /// rank's generators and add_state states, so that each rank resumes its
  /// own streams; a barrier follows each write). Each rank's loss closure
  /// should draw its own data (data::ShardSampler) and noise (a seed offset
  /// by the rank). Default: null.
  TORCH_ARG(std::shared_ptr<dist::ProcessGroup>, process_group) = nullptr;
};

/// One row of the log.
struct TrainLogEntry {
  int64_t step;
  /// Mean loss over the steps since the previous entry.
  double loss;
  /// Mean global gradient norm (before clipping) over the same steps.
  double grad_norm;
  double lr;
  double it_per_s;
  double elapsed_s;
};

/// Returns the loss of one training step (a 0-dim or one-element tensor that
/// requires grad); gets the 0-based index of the step.
using LossFn = std::function<torch::Tensor(int64_t step)>;

/// The loop. Each step: lr warm-up, zero_grad, loss = loss_fn(step),
/// backward, clip, optimizer step, EMA update. The loss is accumulated on
/// its device and read back only every log_every steps and before each
/// checkpoint; if it is not finite there, run() throws a c10::Error naming
/// the step window and the last good checkpoint, which is left untouched.
///
/// Checkpoints hold the model, optimizer, EMA, step, the global default
/// generators and every state given to add_state / add_generator: a run of
/// N steps equals, bit for bit on the CPU, one of N/2 steps resumed to N,
/// when everything the loss closure draws from is among those.
class Trainer {
 public:
  /// Trains `module` with `optimizer` (shared; null: FlatAdam(lr) on the
  /// module's parameters; build the module on its device first).
  Trainer(
      std::shared_ptr<torch::nn::Module> module,
      LossFn loss,
      TrainerOptions options,
      std::shared_ptr<torch::optim::Optimizer> optimizer = nullptr);
  /// The same for a module holder (e.g. sbgm::MLP).
  template <class Impl>
  Trainer(
      const torch::nn::ModuleHolder<Impl>& module,
      LossFn loss,
      TrainerOptions options,
      std::shared_ptr<torch::optim::Optimizer> optimizer = nullptr)
      : Trainer(
            std::static_pointer_cast<torch::nn::Module>(module.ptr()),
            std::move(loss),
            std::move(options),
            std::move(optimizer)) {}

  /// Resumes from the checkpoint when asked and present, then trains until
  /// options.steps; saves the final checkpoint. Returns the last log entry.
  TrainLogEntry run();

  /// Saves `save()` under `name` in every checkpoint and hands the saved
  /// tensor to `load` when run() resumes (e.g. a data sampler's epoch and
  /// position). A resumed checkpoint must hold every registered name.
  void add_state(
      std::string name,
      std::function<torch::Tensor()> save,
      std::function<void(const torch::Tensor&)> load);
  /// add_state for a generator the loss closure draws from (a handle: the
  /// caller's generator is restored in place).
  void add_generator(std::string name, at::Generator generator);

  /// Called with every log entry (after the CSV row is written); on rank 0
  /// only in a data-parallel run.
  void on_log(std::function<void(const TrainLogEntry&)> callback) {
    on_log_ = std::move(callback);
  }

  /// Steps taken so far (restored by resume).
  int64_t step() const {
    return step_;
  }
  const TrainerOptions& options() const {
    return options_;
  }
  torch::nn::Module& module() {
    return *module_;
  }
  torch::optim::Optimizer& optimizer() {
    return *optimizer_;
  }
  /// True when the last run() stopped early on SIGINT/SIGTERM
  /// (options.stop_on_signal).
  bool interrupted() const {
    return stop_signal_ != 0;
  }
  /// The signal that stopped the last run() (SIGINT, SIGTERM), or 0.
  int stop_signal() const {
    return stop_signal_;
  }
  /// Steps skipped for a non-finite loss (NonFinitePolicy::Skip), over all
  /// run() calls of this trainer.
  int64_t skipped_steps() const {
    return skipped_;
  }
  /// The EMA, or null when ema_decay is 0.
  EMA* ema() {
    return ema_ ? ema_.get() : nullptr;
  }

  /// Saves / restores everything (model, optimizer, EMA, step, generators,
  /// the states of add_state). Data-parallel: call save() on every rank
  /// (it gathers their states; rank 0 writes), load() on every rank.
  void save(const std::string& path) const;
  void load(const std::string& path);

 private:
  double lr_factor(int64_t step) const;
  // Data-parallel: every rank starts at the same step from rank 0's weights.
  void sync_start();
  TrainLogEntry run_impl();

  std::shared_ptr<torch::nn::Module> module_;
  LossFn loss_;
  TrainerOptions options_;
  std::shared_ptr<torch::optim::Optimizer> optimizer_;
  std::shared_ptr<FlatAdam> flat_;  // optimizer_ when it is a FlatAdam
  std::unique_ptr<EMA> ema_;
  std::vector<double> base_lr_;
  struct State {
    std::string name;
    std::function<torch::Tensor()> save;
    std::function<void(const torch::Tensor&)> load;
  };
  std::vector<State> states_;
  int64_t step_ = 0;
  int64_t skipped_ = 0;
  int stop_signal_ = 0;
  std::function<void(const TrainLogEntry&)> on_log_;
};

}  // namespace sbgm
