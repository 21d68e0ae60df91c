#pragma once

/// \file
/// Training losses on any noise process: eps-, x0- and v-prediction (Ho et
/// al. 2020; Salimans & Ho 2022), denoising score matching (Vincent 2011;
/// Song et al. 2021), with the weightings of the literature.
///
/// Every loss draws x_t = alpha(t) x0 + sigma(t) z (z ~ N(0, I)), calls the
/// model once with the process's model time, converts its output to the
/// target parameterization (prediction_coeffs) and returns
///   loss = mean_i w(t_i) mean_d (target_hat_i - target_i)^2   (0-dim).
/// The targets are eps = z, x0, v = alpha z - sigma x0, and the score -z /
/// sigma. The weightings (with SNR = alpha^2 / sigma^2):
///   Unit          w = 1 on the target's MSE (eps: DDPM's L_simple);
///   SigmaSquared  lambda = sigma^2 on the score MSE: Song et al.'s DSM, the
///                 same objective as the eps MSE;
///   Likelihood    lambda = g(t)^2 on the score MSE (Song et al. 2021b);
///   MinSNR        min(SNR, gamma) on the x0 MSE (Hang et al. 2023): on the
///                 eps MSE min(SNR, gamma) / SNR, on v (VP) min(SNR, gamma)
///                 / (SNR + 1);
///   EDM           (s^2 + sd^2) / (s sd)^2 on the x0 MSE with s = sigma /
///                 alpha, sd = sigma_data (Karras et al. 2022).
/// All but Unit fix the objective and convert it to the target's MSE (MSEs
/// of the targets differ by the factors c: eps SNR, v (a^2+s^2)^2/s^2,
/// score a^2/s^4, relative to x0), so the target only changes numerics.
///
/// Nothing here reads tensor values back to the host (no device sync);
/// times are range-checked only when they live on the CPU.

#include <torch/arg.h>
#include <torch/types.h>

#include <optional>

#include "sbgm/model.h"
#include "sbgm/process.h"

namespace sbgm {

/// How training times are drawn for a batch of N.
enum class TimeSampling {
  /// t ~ U(t_min, t_max); integer steps uniform in [0, T) for a discrete
  /// schedule.
  Uniform,
  /// Antithetic pairs (variance reduction for small batches): ceil(N/2) uniform
  /// draws u and their mirrors t_min + t_max - u, cut to N.
  Antithetic,
  /// EDM's log-normal noise levels: sigma / alpha = exp(p_mean + p_std n),
  /// n ~ N(0, 1), mapped to t through lambda and clamped to [t_min, t_max]
  /// (rounded to a step for a discrete schedule).
  LogNormal,
};

/// The weight of the loss (see the file comment).
enum class LossWeighting { Unit, SigmaSquared, Likelihood, MinSNR, EDM };

/// Example: `LossOptions().target(Prediction::V).weighting(
///               LossWeighting::MinSNR).min_snr_gamma(5)`
struct LossOptions {
  /// The parameterization the squared error is taken in. Default: Epsilon.
  TORCH_ARG(Prediction, target) = Prediction::Epsilon;
  /// Default: Unit.
  TORCH_ARG(LossWeighting, weighting) = LossWeighting::Unit;
  /// gamma of MinSNR (> 0). Default: 5.
  TORCH_ARG(double, min_snr_gamma) = 5.0;
  /// sigma_data of the EDM weighting (> 0). Default: 0.5.
  TORCH_ARG(double, sigma_data) = 0.5;
  /// How times are drawn. Default: Uniform.
  TORCH_ARG(TimeSampling, sampling) = TimeSampling::Uniform;
  /// LogNormal's mean and standard deviation of ln(sigma / alpha).
  /// Defaults: -1.2, 1.2 (EDM).
  TORCH_ARG(double, p_mean) = -1.2;
  TORCH_ARG(double, p_std) = 1.2;
  /// Smallest training time. Default: the process's t_min() (1e-3 for VP,
  /// 1e-5 for VE, sigma_min for EDM, step 0 for a discrete schedule).
  TORCH_ARG(std::optional<double>, t_min) = std::nullopt;
};

/// Draws N training times (float64, integer-valued for a discrete
/// schedule) on `device`.
torch::Tensor sample_times(
    const NoiseProcess& process,
    int64_t n,
    const LossOptions& options,
    torch::Device device,
    std::optional<torch::Generator> generator = std::nullopt);

/// The loss at given times t ([N] or 0-dim, floating or integer, in the
/// process's range) and noise z (x0's shape).
torch::Tensor diffusion_loss(
    const Model& model,
    const NoiseProcess& process,
    const torch::Tensor& x0,
    const torch::Tensor& t,
    const torch::Tensor& noise,
    const LossOptions& options = {});
/// The same with t (as options.sampling() says) and z drawn here. A
/// generator, when given, must live on x0's device.
torch::Tensor diffusion_loss(
    const Model& model,
    const NoiseProcess& process,
    const torch::Tensor& x0,
    const LossOptions& options = {},
    std::optional<torch::Generator> generator = std::nullopt);

/// diffusion_loss with the target set to eps, x0 or v (the other options
/// as given).
torch::Tensor epsilon_loss(
    const Model& model,
    const NoiseProcess& process,
    const torch::Tensor& x0,
    LossOptions options = {},
    std::optional<torch::Generator> generator = std::nullopt);
torch::Tensor x0_loss(
    const Model& model,
    const NoiseProcess& process,
    const torch::Tensor& x0,
    LossOptions options = {},
    std::optional<torch::Generator> generator = std::nullopt);
torch::Tensor v_loss(
    const Model& model,
    const NoiseProcess& process,
    const torch::Tensor& x0,
    LossOptions options = {},
    std::optional<torch::Generator> generator = std::nullopt);

/// Denoising score matching: the score target with lambda(t) = sigma^2
/// (Song et al. 2021), or g(t)^2 with `likelihood_weighting`; the other options
/// as given.
torch::Tensor dsm_loss(
    const Model& model,
    const NoiseProcess& process,
    const torch::Tensor& x0,
    bool likelihood_weighting = false,
    LossOptions options = {},
    std::optional<torch::Generator> generator = std::nullopt);

}  // namespace sbgm
