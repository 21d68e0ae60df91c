#pragma once

/// \file
/// The probability-flow ODE dx/dt = a(t) x - 1/2 g(t)^2 score(x, t) (Song et
/// al., ICLR 2021, eq. 13): deterministic sampling from t = 1 to eps, and
/// exact-likelihood evaluation from eps to 1 with a Hutchinson trace
/// estimator (Grathwohl et al., FFJORD, 2019).

#include <torch/arg.h>
#include <torch/types.h>

#include <cstdint>
#include <optional>

#include "sbgm/model.h"
#include "sbgm/samplers/common.h"

namespace sbgm {
class SDE;
}

namespace sbgm::samplers {

/// ODE solvers.
enum class ODEMethod {
  /// Heun's method (explicit trapezoid, order 2) on num_steps equal steps;
  /// 2 evaluations per step, no host sync.
  Heun,
  /// Dormand–Prince 5(4) with adaptive steps (rtol, atol; error measured as
  /// the RMS over all entries of err / (atol + rtol max(|y0|, |y1|))). Each
  /// step reads the error norm on the host: one device sync per step.
  Dopri5,
};

/// Example: `ODEOptions().method(ODEMethod::Heun).num_steps(100)`
struct ODEOptions {
  /// Default: Dopri5.
  TORCH_ARG(ODEMethod, method) = ODEMethod::Dopri5;
  /// Steps of the fixed-step method (>= 1). Default: 100.
  TORCH_ARG(int64_t, num_steps) = 100;
  /// Relative tolerance of Dopri5 (> 0). Default: 1e-5.
  TORCH_ARG(double, rtol) = 1e-5;
  /// Absolute tolerance of Dopri5 (> 0). Default: 1e-5.
  TORCH_ARG(double, atol) = 1e-5;
  /// Most Dopri5 steps (accepted or not) before giving up with an error.
  /// Default: 10000.
  TORCH_ARG(int64_t, max_steps) = 10000;
  /// The end time, in (0, 1). Default: the SDE's default_eps().
  TORCH_ARG(std::optional<double>, eps) = std::nullopt;
};

/// Samples by integrating the probability-flow ODE from x ~ prior at t = 1
/// to t = eps. The trajectory and progress count solver steps (Dopri5
/// reports total = 0).
SampleResult ode(
    const Model& model,
    const SDE& sde,
    torch::IntArrayRef shape,
    const ODEOptions& options = {},
    const CommonOptions& common = {});

/// The probe vectors of the Hutchinson estimator tr(J) ~ v^T J v.
enum class Probe {
  /// v_i = +-1 with equal probability (lower variance).
  Rademacher,
  /// v ~ N(0, I).
  Gaussian,
};

/// Example: `LikelihoodOptions().num_bits(8).data_width(2.0)`
struct LikelihoodOptions {
  /// Solver settings (Dopri5 with rtol = atol = 1e-5 by default).
  TORCH_ARG(ODEOptions, ode) = ODEOptions();
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
};

/// Result of log_likelihood.
struct LikelihoodResult {
  /// log p_eps(x) in nats, one value per sample, [N] (x's dtype).
  torch::Tensor log_prob;
  /// -log p / (D ln 2) + offset, [N]; D = numel / N.
  torch::Tensor bits_per_dim;
  /// x carried to t = 1 by the ODE (the latent).
  torch::Tensor prior_sample;
  /// Number of model evaluations (each also backpropagated once).
  int64_t nfe = 0;
};

/// log p(x) through the probability-flow ODE: with x(eps) = x carried to
/// x(1),
///   log p_eps(x) = log p_1(x(1)) + int_eps^1 div F(x(t), t) dt,
/// F the ODE drift, div F estimated by v^T (dF/dx) v with one probe v per
/// sample held fixed along the path (Song et al. 2021, App. D.2). The model
/// must be differentiable in x (this runs with autograd on). x: [N, ...]
/// floating. The generator of `common` draws the probe; its progress
/// callback sees solver steps; trajectory, dtype, device and x_init are not
/// used.
LikelihoodResult log_likelihood(
    const Model& model,
    const SDE& sde,
    const torch::Tensor& x,
    const LikelihoodOptions& options = {},
    const CommonOptions& common = {});

}  // namespace sbgm::samplers
