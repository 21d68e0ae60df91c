#pragma once

/// \file
/// Exponential moving average of a module's parameters, the weights used
/// for sampling (Song & Ermon 2020, "Improved techniques for training
/// score-based generative models", sec. 3.5).

#include <torch/nn/module.h>
#include <torch/serialize/archive.h>
#include <torch/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace sbgm {

/// Shadow copies theta_ema of every parameter of a module, updated after each
/// optimizer step as
///   theta_ema <- d theta_ema + (1 - d) theta,
///   d = min(decay, (1 + n) / (10 + n)) with warm-up, d = decay without,
/// where n is the number of updates before this one. The update runs on the
/// parameters' device without host syncs. Buffers are not averaged.
///
/// Example:
/// ```
/// sbgm::EMA ema(*net, 0.999);
/// ... optimizer.step(); ema.update(*net);
/// ema.copy_to(*net);  // sample with the averaged weights
/// ```
class EMA {
 public:
  /// Starts the average at the module's current parameters. decay in [0, 1].
  explicit EMA(
      const torch::nn::Module& module,
      double decay = 0.999,
      bool warmup = true);

  /// One update with the module's current parameters (same structure as at
  /// construction; checked).
  void update(const torch::nn::Module& module);
  /// The decay the next update will use.
  double current_decay() const;
  /// Writes the averaged weights into the module's parameters.
  void copy_to(torch::nn::Module& module) const;
  /// Swaps the module's parameters with the averages (calling it twice
  /// restores both); see EMA::Scope.
  void swap(torch::nn::Module& module);

  /// While alive, the module holds the averaged weights; restores the
  /// trained weights when destroyed.
  class Scope {
   public:
    Scope(EMA& ema, torch::nn::Module& module);
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    EMA& ema_;
    torch::nn::Module& module_;
  };

  double decay() const {
    return decay_;
  }
  bool warmup() const {
    return warmup_;
  }
  int64_t num_updates() const {
    return num_updates_;
  }
  /// The averaged tensors, in the order of module.named_parameters().
  const std::vector<torch::Tensor>& shadow() const {
    return shadow_;
  }
  const std::vector<std::string>& names() const {
    return names_;
  }

  /// Writes / reads the averages and the update count (used by
  /// checkpoints). load() checks names and shapes.
  void save(torch::serialize::OutputArchive& archive) const;
  void load(torch::serialize::InputArchive& archive);

 private:
  /// The module's parameters, after checking that they match the tracked
  /// names and shapes.
  std::vector<torch::Tensor> checked_parameters(
      const torch::nn::Module& module, const char* where) const;

  double decay_;
  bool warmup_;
  int64_t num_updates_ = 0;
  std::vector<std::string> names_;
  std::vector<torch::Tensor> shadow_;
};

}  // namespace sbgm
