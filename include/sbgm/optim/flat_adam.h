#pragma once

/// \file
/// Adam over one flat parameter buffer, with gradient-norm clipping fused in.
///
/// torch::optim::Adam updates each parameter tensor on its own: about six
/// kernels per tensor, plus a norm per tensor for clipping. For the small
/// networks of 2-D diffusion models (an MLP has ~8 tensors of a few thousand
/// numbers) that launch overhead is most of a training step. FlatAdam moves
/// all parameters (and their gradients) into one contiguous buffer each, so a
/// whole step — clip and update — is a handful of kernels over one tensor,
/// with no host sync:
///   g <- g * min(1, max_norm / (||g|| + 1e-6))          (if max_grad_norm > 0)
///   g <- g + weight_decay * p                            (L2, as torch Adam)
///   m <- b1 m + (1 - b1) g,  v <- b2 v + (1 - b2) g^2
///   p <- p - lr / (1 - b1^k) * m / (sqrt(v / (1 - b2^k)) + eps)
/// which is torch::optim::Adam's update (Kingma & Ba, 2015, Algorithm 1).
///
/// The module's parameters become views into the buffer. Anything that
/// re-points a parameter's storage afterwards (loading a checkpoint,
/// zero_grad(set_to_none)) is detected at the next step and the buffer is
/// re-synchronized, so results stay correct. Build the optimizer after moving
/// the module to its device and dtype.

#include <torch/optim/optimizer.h>
#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <tuple>
#include <vector>

#include "sbgm/optim/optimizer.h"

namespace sbgm {

/// Example: `FlatAdam opt(net->parameters(),
/// FlatAdamOptions(1e-3).max_grad_norm(1.0));`
struct FlatAdamOptions
    : public torch::optim::OptimizerCloneableOptions<FlatAdamOptions> {
  explicit FlatAdamOptions(double lr = 1e-3);
  /// Learning rate. Default: 1e-3.
  TORCH_ARG(double, lr) = 1e-3;
  /// (beta1, beta2). Default: (0.9, 0.999).
  typedef std::tuple<double, double> betas_t;
  TORCH_ARG(betas_t, betas) = std::make_tuple(0.9, 0.999);
  /// Added to the denominator. Default: 1e-8.
  TORCH_ARG(double, eps) = 1e-8;
  /// L2 penalty added to the gradient (as torch::optim::Adam). Default: 0.
  TORCH_ARG(double, weight_decay) = 0;
  /// Clip the global gradient norm to this before the update; <= 0 turns
  /// clipping off. Default: 0 (off).
  TORCH_ARG(double, max_grad_norm) = 0;

 public:
  double get_lr() const override;
  void set_lr(const double lr) override;
};

class FlatAdam : public torch::optim::Optimizer {
 public:
  explicit FlatAdam(
      std::vector<torch::Tensor> params,
      FlatAdamOptions options = FlatAdamOptions());

  /// One update. With a closure, calls it first (under grad mode) and
  /// returns its loss.
  torch::Tensor step(LossClosure closure = nullptr) override;

  /// Zeroes the flat gradient buffer (one kernel).
  void zero_flat_grad();

  /// Global gradient norm before clipping at the last step (a 0-dim tensor on
  /// the parameters' device; reading it is the caller's sync).
  const torch::Tensor& last_grad_norm() const {
    return last_norm_;
  }
  /// Number of steps taken.
  int64_t step_count() const {
    return step_;
  }
  /// The flat gradient buffer, after pointing every gradient that left it
  /// back into it: all gradients, concatenated (e.g. to all-reduce them in
  /// one call).
  const torch::Tensor& flat_grad();
  /// The flat parameter buffer (all parameters, concatenated).
  const torch::Tensor& flat_params() const {
    return flat_;
  }

  void save(torch::serialize::OutputArchive& archive) const override;
  void load(torch::serialize::InputArchive& archive) override;

 private:
  struct Slot {
    torch::Tensor param;
    int64_t offset;
    int64_t numel;
  };
  FlatAdamOptions& opts();
  void resync();

  std::vector<Slot> slots_;
  torch::Tensor flat_, flat_grad_, exp_avg_, exp_avg_sq_, last_norm_;
  int64_t step_ = 0;
};

/// The sbgm::Optimizer of a FlatAdam, with both optional capabilities: one
/// flat gradient buffer (one all-reduce in data-parallel training) and
/// clipping fused into the step (FlatAdamOptions::max_grad_norm).
///
/// Example: `sbgm::Trainer trainer(net, loss_fn, sbgm::TrainerOptions(100),
/// std::make_shared<sbgm::FlatAdamOptimizer>(std::make_shared<sbgm::FlatAdam>(
/// net->parameters())));`
class FlatAdamOptimizer : public TorchOptimizer {
 public:
  /// Wraps `adam` (shared: the caller may keep using it; not null).
  explicit FlatAdamOptimizer(std::shared_ptr<FlatAdam> adam);

  /// Zeroes the flat gradient buffer (one kernel).
  void zero_grad() override;
  /// FlatAdam::flat_grad().
  torch::Tensor flat_grad() override;
  /// Sets FlatAdamOptions::max_grad_norm to `max_norm` (> 0); returns true.
  bool fuse_grad_clip(double max_norm) override;
  /// max_grad_norm > 0.
  bool clips() const override;
  torch::Tensor last_grad_norm() const override;
  /// The wrapped FlatAdam.
  FlatAdam& adam() {
    return *adam_;
  }

 private:
  std::shared_ptr<FlatAdam> adam_;
};

}  // namespace sbgm
