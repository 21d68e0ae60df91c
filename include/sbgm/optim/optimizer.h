#pragma once

/// \file
/// The optimizer as sbgm::Trainer sees it: one small interface.
///
/// Every optimizer plugs into the Trainer the same way: zero the gradients,
/// take a step, read and set each parameter group's learning rate, save and
/// load its state with a checkpoint. Two capabilities are optional and have
/// defaults that turn them off:
///   - flat_grad(): all gradients in one buffer, so that data-parallel
///     training averages them with one all-reduce (else the trainer
///     all-reduces buckets of the gradients);
///   - fuse_grad_clip(): the optimizer clips the global gradient norm inside
///     its own step and reports the norm before clipping (else the trainer
///     clips).
///
/// TorchOptimizer wraps any torch::optim::Optimizer (Adam, AdamW, SGD, ...);
/// FlatAdamOptimizer (sbgm/optim/flat_adam.h) wraps sbgm::FlatAdam with both
/// capabilities. A user's own optimizer implements Optimizer directly.
///
/// Example:
/// ```
/// auto adamw = sbgm::make_optimizer(std::make_shared<torch::optim::AdamW>(
///     net->parameters(), torch::optim::AdamWOptions(1e-3)));
/// sbgm::Trainer trainer(net, loss_fn, sbgm::TrainerOptions(5000), adamw);
/// ```

#include <torch/optim/optimizer.h>
#include <torch/serialize/archive.h>
#include <torch/types.h>

#include <cstddef>
#include <memory>

namespace sbgm {

/// An optimizer as the Trainer drives it (see the file comment).
class Optimizer {
 public:
  virtual ~Optimizer() = default;

  /// Zeroes the gradients before a step's backward pass.
  virtual void zero_grad() = 0;
  /// One update from the gradients as they stand (after any all-reduce and
  /// clipping the trainer did).
  virtual void step() = 0;

  /// Number of parameter groups (each with its own learning rate).
  virtual size_t num_groups() const = 0;
  /// The learning rate of parameter group `group`.
  virtual double lr(size_t group) const = 0;
  /// Sets the learning rate of parameter group `group` (the trainer's
  /// warm-up and schedule call it before every step).
  virtual void set_lr(size_t group, double lr) = 0;

  /// Saves the state a resumed run needs (moments, step counts) into the
  /// checkpoint's optimizer archive.
  virtual void save(torch::serialize::OutputArchive& archive) const = 0;
  /// Restores what save() wrote.
  virtual void load(torch::serialize::InputArchive& archive) = 0;

  /// Optional: every gradient in one contiguous tensor that aliases the
  /// parameters' gradients (an all-reduce of it averages them all in one
  /// call). Default: undefined (not supported).
  virtual torch::Tensor flat_grad() {
    return {};
  }
  /// Optional: asks step() to clip the global L2 gradient norm to
  /// `max_norm` (> 0) itself. Returns whether it will; then clips() is true.
  /// Default: false (the trainer clips).
  virtual bool fuse_grad_clip(double max_norm) {
    (void)max_norm;
    return false;
  }
  /// True when step() clips the gradients itself; last_grad_norm() then
  /// gives the norm before clipping. Default: false.
  virtual bool clips() const {
    return false;
  }
  /// The global gradient norm before clipping at the last step() (a 0-dim
  /// tensor on the parameters' device) when clips() is true; else undefined.
  virtual torch::Tensor last_grad_norm() const {
    return {};
  }
  /// The torch::optim::Optimizer underneath, or null when there is none.
  virtual torch::optim::Optimizer* torch_optimizer() {
    return nullptr;
  }
};

/// Optimizer over any torch::optim::Optimizer: zero_grad(), step(), the
/// parameter groups' learning rates and save()/load() are the torch
/// optimizer's own (so checkpoints keep its format); no optional capability.
///
/// Example: `sbgm::TorchOptimizer opt(std::make_shared<torch::optim::Adam>(
/// net->parameters(), torch::optim::AdamOptions(1e-3)));`
class TorchOptimizer : public Optimizer {
 public:
  /// Wraps `optimizer` (shared: the caller may keep using it).
  explicit TorchOptimizer(std::shared_ptr<torch::optim::Optimizer> optimizer);

  void zero_grad() override;
  void step() override;
  size_t num_groups() const override;
  double lr(size_t group) const override;
  void set_lr(size_t group, double lr) override;
  void save(torch::serialize::OutputArchive& archive) const override;
  void load(torch::serialize::InputArchive& archive) override;
  torch::optim::Optimizer* torch_optimizer() override {
    return optimizer_.get();
  }

 protected:
  std::shared_ptr<torch::optim::Optimizer> optimizer_;
};

/// The Optimizer for a torch optimizer: FlatAdamOptimizer when it is an
/// sbgm::FlatAdam (flat gradient buffer, fused clipping), TorchOptimizer for
/// any other. Null gives null.
std::shared_ptr<Optimizer> make_optimizer(
    std::shared_ptr<torch::optim::Optimizer> optimizer);

}  // namespace sbgm
