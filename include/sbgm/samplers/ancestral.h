#pragma once

/// \file
/// Samplers on a discrete (DDPM) schedule: ancestral DDPM and DDIM. The model
/// is called with int64 timesteps t of shape [N] in [0, T); its output is
/// converted to eps with m = sqrt(alpha_bar_t), s = sqrt(1 - alpha_bar_t).

#include <torch/arg.h>
#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "sbgm/model.h"
#include "sbgm/samplers/common.h"

namespace sbgm {
class Schedule;
}

namespace sbgm::samplers {

namespace detail {
class AffineStepper;
}

/// The variance sigma_t^2 of the ancestral step.
enum class DDPMVariance {
  /// sigma_t^2 = beta_t (Ho et al.; the upper bound on the reverse entropy).
  Beta,
  /// sigma_t^2 = beta~_t = beta_t (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t),
  /// the variance of q(x_{t-1} | x_t, x_0).
  Posterior,
};

/// Example: `DDPMOptions().variance(DDPMVariance::Posterior).clip_x0(true)`
struct DDPMOptions {
  /// Which sigma_t^2. Default: Beta.
  TORCH_ARG(DDPMVariance, variance) = DDPMVariance::Beta;
  /// Clip the predicted x0 to [-clip_range, clip_range] and step with the
  /// posterior mean of q(x_{t-1} | x_t, x0). Default: false.
  TORCH_ARG(bool, clip_x0) = false;
  /// Default: 1.
  TORCH_ARG(double, clip_range) = 1.0;
};

/// One ancestral step at a time, with every per-step coefficient precomputed
/// on the host (multiplying by a double costs no device sync). This is what
/// ddpm() runs; benchmarks time `step` directly.
///
/// Example:
/// ```
/// sbgm::samplers::DDPMSampler s(model, schedule, {}, gen);
/// c10::InferenceMode guard;
/// auto x = torch::randn({n, 2});
/// for (int64_t t = s.num_timesteps() - 1; t >= 0; --t) s.step(x, t);
/// ```
class DDPMSampler {
 public:
  DDPMSampler(
      Model model,
      const Schedule& schedule,
      const DDPMOptions& options = {},
      std::optional<torch::Generator> generator = std::nullopt);

  int64_t num_timesteps() const;

  /// x_t -> x_{t-1} in place (one model evaluation; noise unless t = 0):
  /// x <- x / sqrt(alpha_t) - beta_t / (sqrt(alpha_t) sqrt(1 - alpha_bar_t))
  /// eps + sigma_t z, the conversion of the model's output folded into the
  /// coefficients (model call + three in-place kernels + one noise draw).
  /// Runs under its own c10::InferenceMode; x must not
  /// require grad. Reuses internal buffers, so one object serves one thread.
  void step(torch::Tensor& x, int64_t t);

 private:
  // Per step, with the model's output folded in whatever it predicts
  // (src/samplers/affine.h).
  std::shared_ptr<detail::AffineStepper> impl_;
};

/// Ancestral sampling (Ho et al. 2020, Algorithm 2), t = T-1 .. 0 from
/// x_T ~ N(0, I):
///   x_{t-1} = (x_t - beta_t / sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_t)
///             + sigma_t z,
/// with no noise at the last step (t = 0). With clip_x0 the mean is
/// coef1_t clip(x0) + coef2_t x_t, x0 = (x_t - sqrt(1 - alpha_bar_t) eps) /
/// sqrt(alpha_bar_t). T model evaluations.
SampleResult ddpm(
    const Model& model,
    const Schedule& schedule,
    torch::IntArrayRef shape,
    const DDPMOptions& options = {},
    const CommonOptions& common = {});

/// Example: `DDIMOptions().num_steps(50).eta(0.0)`
struct DDIMOptions {
  /// Number of timesteps visited, 1 <= num_steps <= T. Default: 50.
  TORCH_ARG(int64_t, num_steps) = 50;
  /// eta = 0: deterministic DDIM; eta = 1: the DDPM posterior variance on
  /// the subset. Default: 0.
  TORCH_ARG(double, eta) = 0.0;
  /// Clip the predicted x0 to [-clip_range, clip_range] (and step with the
  /// eps consistent with the clipped x0). Default: false.
  TORCH_ARG(bool, clip_x0) = false;
  /// Default: 1.
  TORCH_ARG(double, clip_range) = 1.0;
};

/// The DDIM timestep subset: num_steps indices evenly spread over [0, T-1],
/// tau_i = round(i (T - 1) / (num_steps - 1)) (halves rounded up), i =
/// 0..num_steps-1, ascending; always distinct, starting at 0 and ending at
/// T - 1 for any num_steps (divisor of T or not). num_steps = 1 gives {T-1}.
std::vector<int64_t> ddim_timesteps(int64_t num_timesteps, int64_t num_steps);

/// DDIM (Song, Meng & Ermon 2021, eq. 12) on the subset tau, from
/// x ~ N(0, I) at tau_last down to tau_0, then to x_0 (alpha_bar_{-1} = 1):
///   x0 = (x_t - sqrt(1 - a_t) eps) / sqrt(a_t),
///   sigma = eta sqrt((1 - a_p)/(1 - a_t)) sqrt(1 - a_t / a_p),
///   x_p = sqrt(a_p) x0 + sqrt(1 - a_p - sigma^2) eps + sigma z,
/// with a = alpha_bar, p the previous index of the subset.
/// num_steps model evaluations.
SampleResult ddim(
    const Model& model,
    const Schedule& schedule,
    torch::IntArrayRef shape,
    const DDIMOptions& options = {},
    const CommonOptions& common = {});

}  // namespace sbgm::samplers
