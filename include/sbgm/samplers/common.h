#pragma once

/// \file
/// What every sampler shares: the run options (generator, dtype/device,
/// starting point, trajectory, progress) and the result.
///
/// Samplers take a `Model` (a callable plus what it predicts) and convert its
/// output as they need it (eps <-> score <-> x0 at the step's kernel m, s), so
/// an eps-network runs under the SDE samplers and a score network under the
/// ancestral ones. Loops run under c10::InferenceMode with per-step
/// coefficients computed on the host; the only device sync is one finiteness
/// check at the end (and at each trajectory record point), which throws
/// "the model produced non-finite values" when a NaN or Inf appeared.

#include <torch/arg.h>
#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

namespace sbgm::samplers {

/// Called after each step with (step, total): step runs 1..total. Adaptive
/// solvers, whose total is unknown, pass total = 0.
using ProgressFn = std::function<void(int64_t step, int64_t total)>;

/// Options every sampler takes.
///
/// Example: `CommonOptions().generator(gen).trajectory_every(10)`
struct CommonOptions {
  /// Random generator for the starting noise and every noise draw; the same
  /// seed gives the same samples. Default: none (torch's default generator).
  TORCH_ARG(std::optional<torch::Generator>, generator) = std::nullopt;
  /// dtype of the samples. Default: float32.
  TORCH_ARG(torch::ScalarType, dtype) = torch::kFloat;
  /// Device of the samples. Default: CPU.
  TORCH_ARG(torch::Device, device) = torch::Device(torch::kCPU);
  /// Starting point instead of a fresh prior draw; must have the requested
  /// shape (its dtype and device are then used). Default: undefined.
  TORCH_ARG(torch::Tensor, x_init) = {};
  /// Record the state every k steps (plus the start and the end) in
  /// `SampleResult::trajectory`; 0 records nothing. Default: 0.
  TORCH_ARG(int64_t, trajectory_every) = 0;
  /// Progress callback. Default: none.
  TORCH_ARG(ProgressFn, progress) = nullptr;
  /// ddpm, ddim and euler_maruyama on a CUDA state: capture one step as a
  /// CUDA graph (after two warm-up steps) and replay it for every step, so a
  /// step costs a few launches whatever the model's size. The samples equal
  /// the eager ones up to rounding (same generator, same draws). The model
  /// must not sync with the host (no .item(), no data-dependent shapes, no
  /// copies from the CPU) nor draw random numbers, and its parameters must
  /// not move while the run lasts; it is called three extra times (two
  /// warm-up steps and the capture; the state is restored, module state such
  /// as BatchNorm running statistics is not). The state must be float32 or
  /// float64. No effect on CPU states; the other samplers throw when it is
  /// set. Default: false.
  TORCH_ARG(bool, cuda_graph) = false;
};

/// What a sampler returns.
struct SampleResult {
  /// The samples, of the requested shape.
  torch::Tensor samples;
  /// States at the start, every `trajectory_every` steps, and the end
  /// (copies); empty unless asked for.
  std::vector<torch::Tensor> trajectory;
  /// Number of model evaluations.
  int64_t nfe = 0;
};

}  // namespace sbgm::samplers
