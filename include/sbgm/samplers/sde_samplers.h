#pragma once

/// \file
/// Stochastic samplers of the reverse-time SDE (Song et al., ICLR 2021):
/// Euler–Maruyama and predictor–corrector. The model is called with float t
/// of x's dtype, shape [N], in [eps, 1]; its output is converted to the score
/// with m(t), s(t) of the SDE.
///
/// Time grid: t_i = 1 - i h, h = (1 - eps) / num_steps, i = 0..num_steps-1;
/// the last step lands on t = eps.

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

/// Example: `EulerMaruyamaOptions().num_steps(500)`
struct EulerMaruyamaOptions {
  /// Number of steps (>= 1). Default: 1000.
  TORCH_ARG(int64_t, num_steps) = 1000;
  /// The final time, in (0, 1). Default: the SDE's default_eps().
  TORCH_ARG(std::optional<double>, eps) = std::nullopt;
  /// Make the last step noise-free (return its mean). Default: true.
  TORCH_ARG(bool, denoise) = true;
};

/// Euler–Maruyama on the reverse SDE from x ~ prior at t = 1:
///   x <- x - [a(t) x - g(t)^2 score(x, t)] h + g(t) sqrt(h) z.
/// Weak order 1. num_steps model evaluations.
SampleResult euler_maruyama(
    const Model& model,
    const SDE& sde,
    torch::IntArrayRef shape,
    const EulerMaruyamaOptions& options = {},
    const CommonOptions& common = {});

/// The predictor of the predictor–corrector sampler.
enum class Predictor {
  /// Reverse diffusion on sde.discretize(t - h, h) = (f, G):
  /// x <- x - (f x - G^2 score) + G z.
  ReverseDiffusion,
  /// One Euler–Maruyama step of the reverse SDE.
  EulerMaruyama,
};

/// Example: `PredictorCorrectorOptions().num_steps(500).snr(0.16)`
struct PredictorCorrectorOptions {
  /// Number of predictor steps (>= 1). Default: 1000.
  TORCH_ARG(int64_t, num_steps) = 1000;
  /// Default: ReverseDiffusion.
  TORCH_ARG(Predictor, predictor) = Predictor::ReverseDiffusion;
  /// Langevin steps per predictor step (>= 0; 0 runs the predictor alone).
  /// Default: 1.
  TORCH_ARG(int64_t, corrector_steps) = 1;
  /// Signal-to-noise ratio of the Langevin corrector (> 0). Default: 0.16.
  TORCH_ARG(double, snr) = 0.16;
  /// The final time, in (0, 1). Default: the SDE's default_eps().
  TORCH_ARG(std::optional<double>, eps) = std::nullopt;
  /// Return the mean of the last predictor step. Default: true.
  TORCH_ARG(bool, denoise) = true;
};

/// Predictor–corrector sampling (Song et al. 2021, Algorithm 1-3 and the
/// reference code): at each t_i, `corrector_steps` Langevin steps
///   eps_i = 2 alpha (snr |z| / |score|)^2,  x <- x + eps_i score +
///   sqrt(2 eps_i) z,
/// with |.| the per-sample L2 norm averaged over the batch (kept on the
/// device) and alpha = (1 + f)^2 from the step's discretization (1 - beta_i
/// for VP, 1 for VE), then one predictor step to t_i - h.
/// num_steps * (1 + corrector_steps) model evaluations.
SampleResult predictor_corrector(
    const Model& model,
    const SDE& sde,
    torch::IntArrayRef shape,
    const PredictorCorrectorOptions& options = {},
    const CommonOptions& common = {});

}  // namespace sbgm::samplers
