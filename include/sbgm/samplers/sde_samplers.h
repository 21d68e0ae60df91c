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
#include <memory>
#include <optional>
#include <vector>

#include "sbgm/model.h"
#include "sbgm/samplers/common.h"

namespace sbgm {
class SDE;
}

namespace sbgm::samplers {

namespace detail {
class AffineStepper;
}

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

/// The Euler–Maruyama step with its coefficients precomputed on the host:
/// what euler_maruyama() runs; benchmarks time `step` directly.
///
/// Example:
/// ```
/// sbgm::samplers::EulerMaruyamaSampler s(model, sde, opts, gen);
/// c10::InferenceMode guard;
/// auto x = sde.prior_sample({n, 2});
/// for (int64_t i = 0; i < s.num_steps(); ++i) s.step(x, i);
/// ```
class EulerMaruyamaSampler {
 public:
  EulerMaruyamaSampler(
      Model model,
      const SDE& sde,
      const EulerMaruyamaOptions& options = {},
      std::optional<torch::Generator> generator = std::nullopt);

  int64_t num_steps() const;
  /// The time of step i: t_i = 1 - i (1 - eps) / num_steps.
  double time(int64_t i) const;

  /// Step i (0-based) from t_i to t_i - h, in place (one model evaluation):
  /// x <- (1 - a(t_i) h) x + g(t_i)^2 h score + g(t_i) sqrt(h) z, with no
  /// noise at the last step when denoise is set. The conversion of the
  /// model's output to the score is folded into the two coefficients, so a
  /// step is the model call plus three in-place kernels and one noise draw.
  /// Runs under its own c10::InferenceMode; reuses internal buffers (one object
  /// per thread).
  void step(torch::Tensor& x, int64_t i);

 private:
  // Per step, with the model's output folded in whatever it predicts
  // (src/samplers/affine.h).
  std::shared_ptr<detail::AffineStepper> impl_;
};

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
