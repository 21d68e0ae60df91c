#pragma once

/// \file
/// Exact likelihood through the probability-flow ODE (Song et al., ICLR
/// 2021, App. D.2) with a Hutchinson trace estimator (Grathwohl et al.,
/// FFJORD, 2019), on any noise process.

#include <torch/arg.h>
#include <torch/types.h>

#include <cstdint>
#include <optional>

#include "sbgm/model.h"
#include "sbgm/process.h"
#include "sbgm/samplers/samplers.h"

namespace sbgm::samplers {

/// The probe vectors of the Hutchinson estimator tr(J) ~ v^T J v.
enum class Probe {
  /// v_i = +-1 with equal probability (lower variance).
  Rademacher,
  /// v ~ N(0, I).
  Gaussian,
};

/// Example: `LikelihoodOptions().num_bits(8).data_width(2.0)`
struct LikelihoodOptions {
  /// Solver: Heun on num_steps equal steps, or Dopri5 (Euler is refused:
  /// too inaccurate for a likelihood). Default: Dopri5.
  TORCH_ARG(ODEMethod, method) = ODEMethod::Dopri5;
  /// Steps of Heun. Default: 100.
  TORCH_ARG(int64_t, num_steps) = 100;
  /// Dopri5 tolerances (> 0). Default: 1e-5.
  TORCH_ARG(double, rtol) = 1e-5;
  TORCH_ARG(double, atol) = 1e-5;
  /// Most Dopri5 steps before giving up with an error. Default: 10000.
  TORCH_ARG(int64_t, max_steps) = 10000;
  /// The start time t_end (x is taken as x(t_end)). Default: the
  /// process's t_min().
  TORCH_ARG(std::optional<double>, t_end) = std::nullopt;
  /// Default: Rademacher.
  TORCH_ARG(Probe, probe) = Probe::Rademacher;
  /// Bits of the discrete data (0: continuous data, no offset). With b > 0
  /// the data are taken as uniformly dequantized b-bit values mapped
  /// linearly onto an interval of width `data_width`, and bits/dim gains the
  /// offset b - log2(data_width) (7 for 8-bit images in [-1, 1], 8 in
  /// [0, 1]). Default: 0.
  TORCH_ARG(int64_t, num_bits) = 0;
  /// Width of the data interval (> 0). Default: 2 (data in [-1, 1]).
  TORCH_ARG(double, data_width) = 2.0;
  /// Draws the probes. Default: torch's default generator.
  TORCH_ARG(std::optional<torch::Generator>, generator) = std::nullopt;
  /// Sees solver steps (Dopri5 reports total = 0). Default: none.
  TORCH_ARG(ProgressFn, progress) = nullptr;
};

/// Result of log_likelihood.
struct LikelihoodResult {
  /// log p_{t_end}(x) in nats, one value per sample, [N] (x's dtype).
  torch::Tensor log_prob;
  /// -log p / (D ln 2) + offset, [N]; D = numel / N.
  torch::Tensor bits_per_dim;
  /// x carried to t_max by the ODE (the latent).
  torch::Tensor prior_sample;
  /// Number of model evaluations (each also backpropagated once).
  int64_t nfe = 0;
};

/// log p(x) through the probability-flow ODE: with x(t_end) = x carried to
/// x(t_max),
///   log p(x) = log N(x(t_max); 0, prior_std^2 I) + int div F(x(t), t) dt,
/// F the ODE drift, div F estimated by v^T (dF/dx) v with one probe v per
/// sample held fixed along the path. The model must be differentiable in x
/// (this runs with autograd on). x: [N, ...] floating with finite values.
LikelihoodResult log_likelihood(
    const Model& model,
    const NoiseProcess& process,
    const torch::Tensor& x,
    const LikelihoodOptions& options = {});

}  // namespace sbgm::samplers
