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
#include "sbgm/optim/optimizer.h"
#include "sbgm/train/ema.h"

namespace sbgm {

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
  /// the device, no host sync); <= 0 disables. An optimizer that can fuse
  /// the clipping into its step (Optimizer::fuse_grad_clip, e.g. FlatAdam)
  /// is handed this value (> 0 only) and clips itself. Default: 1.0.
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
  /// Print "step N  loss L  R it/s  S s" to stdout at each log entry whose
  /// step is a multiple of this, and at the last step (rank 0 only; a
  /// record that stays in a log file, unlike the progress bar); 0: never.
  /// Default: 0.
  TORCH_ARG(int64_t, print_every) = 0;
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
  /// of Optimizer::flat_grad() where the optimizer has one, as FlatAdam
  /// does, else buckets of 25 MiB); logged
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
/// run() is begin(), then step() until options.steps, with log() and
/// checkpoint() when they are due, then end(). The pieces are public, so a
/// program can write the loop out and do what it likes between steps; this
/// loop trains exactly as run() does (bit for bit, resume included):
/// ```
/// trainer.begin();  // resumes from the checkpoint when there is one
/// while (trainer.step_count() < trainer.options().steps()) {
///   trainer.step();
///   if (trainer.log_due()) {
///     trainer.log();
///   }
///   if (trainer.checkpoint_due()) {
///     trainer.checkpoint();
///   }
/// }
/// trainer.end();
/// ```
/// (run() also stops on a signal when options.stop_on_signal is set.)
///
/// The optimizer is any sbgm::Optimizer (sbgm/optim/optimizer.h); a
/// torch::optim::Optimizer is wrapped by make_optimizer().
///
/// Checkpoints hold the model, optimizer, EMA, step, the global default
/// generators and every state given to add_state / add_generator: a run of
/// N steps equals, bit for bit on the CPU, one of N/2 steps resumed to N,
/// when everything the loss closure draws from is among those.
class Trainer {
 public:
  /// Trains `module` with `optimizer` (shared; null: FlatAdam(lr) on the
  /// module's parameters; build the module on its device first). A torch
  /// optimizer goes through make_optimizer(): a FlatAdam keeps its flat
  /// all-reduce and fused clipping.
  Trainer(
      std::shared_ptr<torch::nn::Module> module,
      LossFn loss,
      TrainerOptions options,
      std::shared_ptr<torch::optim::Optimizer> optimizer = nullptr);
  /// Trains `module` with any sbgm::Optimizer (not null).
  Trainer(
      std::shared_ptr<torch::nn::Module> module,
      LossFn loss,
      TrainerOptions options,
      std::shared_ptr<Optimizer> optimizer);
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
  /// The same for a module holder and an sbgm::Optimizer.
  template <class Impl>
  Trainer(
      const torch::nn::ModuleHolder<Impl>& module,
      LossFn loss,
      TrainerOptions options,
      std::shared_ptr<Optimizer> optimizer)
      : Trainer(
            std::static_pointer_cast<torch::nn::Module>(module.ptr()),
            std::move(loss),
            std::move(options),
            std::move(optimizer)) {}
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  /// Resumes from the checkpoint when asked and present, then trains until
  /// options.steps; saves the final checkpoint. Returns the last log entry.
  TrainLogEntry run();

  /// Starts a run (the first thing run() does): resumes from
  /// options.checkpoint_path when options.resume is set and the file exists,
  /// agrees on the start with the other ranks (data-parallel), opens the CSV
  /// log (appending to it after a resume), puts the module in training mode
  /// and starts the clock of it/s. Returns true when it resumed. Calling it
  /// again starts a new run (from the checkpoint, when there is one).
  bool begin();
  /// One optimizer step (needs begin()): lr warm-up and schedule, zero_grad,
  /// loss = loss_fn(step_count()), backward, the gradient all-reduce
  /// (data-parallel), the global gradient norm and clipping, the optimizer
  /// step and the EMA update; then step_count() grows by one. Returns the
  /// loss, detached, on its device (reading it is a host sync, which step()
  /// itself avoids unless options.nonfinite is Skip). A step skipped under
  /// NonFinitePolicy::Skip updates nothing but still counts.
  torch::Tensor step();
  /// Logs the steps since the last log() (needs begin()): reads their mean
  /// loss and gradient norm back (one host sync; data-parallel: the ranks'
  /// mean, so every rank must call it), throws under NonFinitePolicy::Stop
  /// when one was not finite, writes the CSV row, calls on_log and redraws
  /// the progress bar. Returns the entry.
  TrainLogEntry log();
  /// Writes the checkpoint to options.checkpoint_path (needs begin() and
  /// the path), after checking that the steps since the last log() were
  /// finite (else it throws as log() does and the file stays as it was).
  /// Data-parallel: every rank calls it (see save()).
  void checkpoint();
  /// Ends the run begun by begin(): finishes the progress bar's line and
  /// closes the CSV log. Returns the last log entry.
  TrainLogEntry end();
  /// True when run() logs after the current step: every options.log_every
  /// steps and at options.steps.
  bool log_due() const;
  /// True when run() checkpoints after the current step: with a
  /// checkpoint_path, every options.checkpoint_every steps (when > 0) and
  /// at options.steps.
  bool checkpoint_due() const;

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
  int64_t step_count() const {
    return step_;
  }
  const TrainerOptions& options() const {
    return options_;
  }
  torch::nn::Module& module() {
    return *module_;
  }
  /// The optimizer (optimizer().torch_optimizer() is the torch optimizer
  /// underneath, when there is one).
  Optimizer& optimizer() {
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
  /// runs of this trainer.
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
  struct Run;  // what lives from begin() to end() (trainer.cpp)
  struct Window {
    double loss, grad_norm;
  };
  double lr_factor(int64_t step) const;
  // Data-parallel: every rank starts at the same step from rank 0's weights.
  void sync_start();
  TrainLogEntry run_impl();
  Run& current(const char* where);
  // The mean loss and gradient norm of the steps since the last log (one
  // host sync); throws when one was not finite.
  Window read_window(Run& r);
  [[noreturn]] void stop_nonfinite(
      Run& r, int64_t bad_step, double value, bool is_loss);

  std::shared_ptr<torch::nn::Module> module_;
  LossFn loss_;
  TrainerOptions options_;
  std::shared_ptr<Optimizer> optimizer_;
  std::unique_ptr<EMA> ema_;
  std::vector<double> base_lr_;
  struct State {
    std::string name;
    std::function<torch::Tensor()> save;
    std::function<void(const torch::Tensor&)> load;
  };
  std::vector<State> states_;
  std::unique_ptr<Run> run_;
  int64_t step_ = 0;
  int64_t skipped_ = 0;
  int stop_signal_ = 0;
  std::function<void(const TrainLogEntry&)> on_log_;
};

}  // namespace sbgm
