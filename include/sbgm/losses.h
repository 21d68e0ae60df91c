#pragma once

/// \file
/// Training losses: eps-prediction (Ho et al. 2020) and denoising score
/// matching (Vincent 2011; Song & Ermon 2019; Song et al. 2021), on discrete
/// schedules and on continuous SDEs.
///
/// All losses draw x_t = m x_0 + s z with z ~ N(0, I), call the model once
/// and compare in the eps parameterization, whatever the model predicts
/// (its output is converted with convert_prediction):
///   per-sample loss  l_i = w(t_i) * mean_d (eps_hat_i - z_i)^2,
///   loss             = mean_i l_i   (a 0-dim tensor).
/// For a score model eps_hat = -s * score, so (eps_hat - z)^2 =
/// (s score + z)^2: the DSM loss with lambda(t) = s(t)^2 of Song et al.
/// (their sum over dimensions is a mean here). The eps and DSM losses thus
/// agree for w = 1; they differ in their weighting options and defaults.
///
/// Nothing here reads tensor values back to the host (no device sync); t
/// values are range-checked only when they live on the CPU.

#include <torch/arg.h>
#include <torch/types.h>

#include <optional>

#include "sbgm/model.h"

namespace sbgm {

class Schedule;
class SDE;

/// How training times are drawn for a batch of N.
enum class TimeSampling {
  /// Independent uniform draws.
  Uniform,
  /// Antithetic pairs (the seed's swiss-roll trainer): draw ceil(N/2)
  /// times u, use [u, u'] cut to N, where u' = T - 1 - u for a schedule and
  /// u' = eps + 1 - u for an SDE. Lowers the variance of the batch loss.
  Antithetic,
};

/// Options of the losses on a discrete schedule.
struct ScheduleLossOptions {
  /// How step indices are drawn. Default: Uniform.
  TORCH_ARG(TimeSampling, sampling) = TimeSampling::Uniform;
};

/// Options of the losses on an SDE.
struct SDELossOptions {
  /// Smallest training time, t ~ U(eps, 1); a negative value means the
  /// SDE's default_eps() (1e-5 for VE, 1e-3 for VP). Default: -1.
  TORCH_ARG(double, eps) = -1.0;
  /// How times are drawn. Default: Uniform.
  TORCH_ARG(TimeSampling, sampling) = TimeSampling::Uniform;
  /// DSM only. Use lambda(t) = g(t)^2 (Song et al. 2021, "Maximum
  /// likelihood training of score-based diffusion models") instead of
  /// lambda(t) = s(t)^2, i.e. w(t) = g(t)^2 / s(t)^2 in the per-sample loss
  /// above. Without importance sampling of t this weighting has a high
  /// variance near t = eps. Default: false.
  TORCH_ARG(bool, likelihood_weighting) = false;
};

/// Draws N step indices in [0, T) (int64, on `device`).
torch::Tensor sample_timesteps(
    int64_t n,
    int64_t num_timesteps,
    TimeSampling sampling,
    torch::Device device,
    std::optional<torch::Generator> generator = std::nullopt);

/// Draws N times in [eps, 1] (dtype and device from `options`).
torch::Tensor sample_times(
    int64_t n,
    double eps,
    TimeSampling sampling,
    const torch::TensorOptions& options,
    std::optional<torch::Generator> generator = std::nullopt);

/// Eps-prediction loss on a discrete schedule with given int64 steps t [N]
/// and noise z (x0's shape):
///   x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) z,
///   loss = mean_i mean_d (eps_hat(x_t, t)_i - z_i)^2.
/// The model gets the step indices t.
torch::Tensor epsilon_loss(
    const Model& model,
    const Schedule& schedule,
    const torch::Tensor& x0,
    const torch::Tensor& t,
    const torch::Tensor& noise);
/// The same with t and z drawn here (t as `options.sampling()` says).
/// A generator, when given, must live on x0's device.
torch::Tensor epsilon_loss(
    const Model& model,
    const Schedule& schedule,
    const torch::Tensor& x0,
    const ScheduleLossOptions& options = {},
    std::optional<torch::Generator> generator = std::nullopt);

/// Eps-prediction loss on an SDE with given times t [N] (floating, in
/// [0, 1]) and noise z: x_t = m(t) x_0 + s(t) z, loss as above. The model
/// gets t in x0's dtype. likelihood_weighting is ignored.
torch::Tensor epsilon_loss(
    const Model& model,
    const SDE& sde,
    const torch::Tensor& x0,
    const torch::Tensor& t,
    const torch::Tensor& noise);
/// The same with t ~ U(eps, 1) and z drawn here.
torch::Tensor epsilon_loss(
    const Model& model,
    const SDE& sde,
    const torch::Tensor& x0,
    const SDELossOptions& options = {},
    std::optional<torch::Generator> generator = std::nullopt);

/// Denoising score matching on an SDE with given t and z:
///   loss = mean_i w(t_i) mean_d (s(t_i) score_hat(x_t, t)_i + z_i)^2,
/// w = 1 (lambda = s^2), or w = g(t)^2 / s(t)^2 (lambda = g^2) with
/// `likelihood_weighting`. Its minimum over all score models is reached by
/// the true score of p_t. `options.eps`/`sampling` are ignored here.
torch::Tensor dsm_loss(
    const Model& model,
    const SDE& sde,
    const torch::Tensor& x0,
    const torch::Tensor& t,
    const torch::Tensor& noise,
    const SDELossOptions& options = {});
/// The same with t ~ U(eps, 1) and z drawn here.
torch::Tensor dsm_loss(
    const Model& model,
    const SDE& sde,
    const torch::Tensor& x0,
    const SDELossOptions& options = {},
    std::optional<torch::Generator> generator = std::nullopt);

/// Denoising score matching on a discrete schedule, lambda_t = 1 - abar_t
/// (identical to epsilon_loss on the schedule; for score models).
torch::Tensor dsm_loss(
    const Model& model,
    const Schedule& schedule,
    const torch::Tensor& x0,
    const ScheduleLossOptions& options = {},
    std::optional<torch::Generator> generator = std::nullopt);

}  // namespace sbgm
