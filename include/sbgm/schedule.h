#pragma once

/// \file
/// Discrete (DDPM) noise schedules and the tables derived from them.
///
/// Timesteps are indexed t = 0..T-1 (the paper's 1..T shifted by one):
///   alpha_t = 1 - beta_t,  alpha_bar_t = prod_{s<=t} alpha_s,
///   q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I).
/// Ho et al., "Denoising Diffusion Probabilistic Models" (2020), eq. 4-7;
/// Nichol & Dhariwal, "Improved DDPM" (2021), eq. 17 for the cosine schedule.

#include <torch/arg.h>
#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "sbgm/process.h"

namespace sbgm {

/// The family a schedule was built from.
enum class ScheduleKind { Linear, Sigmoid, Cosine, Custom };

/// Name of a schedule kind ("linear", "sigmoid", "cosine", "custom").
std::string to_string(ScheduleKind kind);

/// A discrete noise schedule beta_0..beta_{T-1} with every DDPM table.
///
/// The tables are float64 tensors of length T on `device()`; host copies of
/// the same numbers are kept for samplers that step with a scalar t. Copies
/// of a Schedule share their tables (it is cheap to copy).
///
/// Example:
/// ```
/// auto s = sbgm::Schedule::cosine(1000);
/// auto xt = s.q_sample(x0, t, torch::randn_like(x0));
/// ```
class Schedule {
 public:
  /// beta_t evenly spaced from `beta_start` to `beta_end` (Ho et al.).
  static Schedule linear(
      int64_t num_timesteps = 1000,
      double beta_start = 1e-4,
      double beta_end = 0.02);
  /// beta = sigmoid(linspace(-6, 6, T)) * (beta_end - beta_start) + beta_start.
  static Schedule sigmoid(
      int64_t num_timesteps, double beta_start = 1e-5, double beta_end = 5e-3);
  /// alpha_bar(t) = f(t)/f(0), f(t) = cos^2(((t/T) + s)/(1 + s) * pi/2), and
  /// beta_t = 1 - alpha_bar(t+1)/alpha_bar(t) clipped to at most `max_beta`.
  static Schedule cosine(
      int64_t num_timesteps = 1000, double s = 0.008, double max_beta = 0.999);
  /// Any betas in (0, 1); a 1-D floating tensor (copied to float64).
  static Schedule from_betas(const torch::Tensor& betas);
  static Schedule from_betas(const std::vector<double>& betas);

  /// Zero terminal SNR (Lin et al., "Common Diffusion Noise Schedules and
  /// Sample Steps are Flawed", 2023, Alg. 1): with s = sqrt(alpha_bar),
  /// s <- (s - s_T) s_0 / (s_0 - s_T), alpha_bar = s^2, keeping alpha_bar_0
  /// and making alpha_bar_T zero. The last alpha_bar is then set to
  /// min(`terminal_alpha_bar`, alpha_bar_{T-2} / 2) (2^-24 by default, as
  /// diffusers does, capped so that alpha_bar keeps decreasing) instead of
  /// exactly zero: an eps- or score-model can still be turned into x0 at
  /// the first step (at alpha = 0 that is a division by zero), though with
  /// its error multiplied by 1 / alpha. Meant for v-prediction, which needs
  /// no division. Needs T >= 2.
  Schedule rescale_zero_terminal_snr(
      double terminal_alpha_bar = 5.9604644775390625e-08) const;

  int64_t num_timesteps() const;
  ScheduleKind kind() const;
  /// The (beta_start, beta_end) the schedule was built with; for cosine and
  /// custom schedules the first and last beta.
  double beta_start() const;
  double beta_end() const;

  torch::Device device() const;
  /// The same schedule with its tables on `device` (float64 kept).
  Schedule to(torch::Device device) const;

  // ---- tables: float64 tensors of shape [T] on device() -------------------
  const torch::Tensor& betas() const;
  const torch::Tensor& alphas() const;
  /// alpha_bar_t.
  const torch::Tensor& alphas_cumprod() const;
  /// alpha_bar_{t-1}, with alpha_bar_{-1} = 1.
  const torch::Tensor& alphas_cumprod_prev() const;
  const torch::Tensor& sqrt_alphas_cumprod() const;
  const torch::Tensor& sqrt_one_minus_alphas_cumprod() const;
  /// 1 / sqrt(alpha_t).
  const torch::Tensor& sqrt_recip_alphas() const;
  /// beta~_t = beta_t (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t); beta~_0 = 0.
  const torch::Tensor& posterior_variance() const;
  /// log(beta~_t) with beta~_0 replaced by beta~_1 (beta_0 when T = 1).
  const torch::Tensor& posterior_log_variance_clipped() const;
  /// Posterior mean = coef1 * x_0 + coef2 * x_t, with
  /// coef1 = beta_t sqrt(alpha_bar_{t-1}) / (1 - alpha_bar_t) and
  /// coef2 = (1 - alpha_bar_{t-1}) sqrt(alpha_t) / (1 - alpha_bar_t).
  const torch::Tensor& posterior_mean_coef1() const;
  const torch::Tensor& posterior_mean_coef2() const;

  // ---- host values at one step (for samplers with a scalar t) -------------
  double beta(int64_t t) const;
  double alpha(int64_t t) const;
  double alpha_bar(int64_t t) const;
  /// alpha_bar_{t-1}; 1 at t = 0.
  double alpha_bar_prev(int64_t t) const;
  double posterior_variance(int64_t t) const;

  /// alpha_bar at the last step: how much of x_0 is left in x_T.
  double terminal_alpha_bar() const;
  /// Signal-to-noise ratio alpha_bar_T / (1 - alpha_bar_T) at the last step.
  double terminal_snr() const;
  /// True when alpha_bar_T <= `tol`, i.e. x_T is close to N(0, I). Sampling
  /// starts from N(0, I), so a schedule that stops short of it (the seed's
  /// swiss-roll schedule ends at alpha_bar_T ~ 0.69) starts every sample off
  /// the distribution the network was trained on. Such schedules are warned
  /// about once when built.
  bool reaches_prior(double tol = kPriorTolerance) const;
  static constexpr double kPriorTolerance = 1e-2;

  /// table[t] shaped to broadcast against `like`: t of shape [N] gives
  /// [N, 1, ..., 1]; a 0-dim t gives a 0-dim result. The result has the dtype
  /// and device of `like`. t must be an integer tensor with values in [0, T).
  torch::Tensor extract(
      const torch::Tensor& table,
      const torch::Tensor& t,
      const torch::Tensor& like) const;

  /// x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) noise.
  torch::Tensor q_sample(
      const torch::Tensor& x0,
      const torch::Tensor& t,
      const torch::Tensor& noise) const;
  /// Mean of q(x_{t-1} | x_t, x_0).
  torch::Tensor posterior_mean(
      const torch::Tensor& x0,
      const torch::Tensor& xt,
      const torch::Tensor& t) const;

 private:
  struct Tables;
  struct HostTables;
  Schedule(
      ScheduleKind kind,
      const torch::Tensor& betas,
      double beta_start,
      double beta_end);
  void check_t(const torch::Tensor& t) const;
  void check_host_t(int64_t t) const;

  ScheduleKind kind_;
  double beta_start_;
  double beta_end_;
  std::shared_ptr<const Tables> tables_;
  std::shared_ptr<const HostTables> host_;
};

/// Example: `DiscreteProcess p(Schedule::cosine(1000),
///                             DiscreteProcessOptions().quantize(false));`
struct DiscreteProcessOptions {
  /// Feed the network the nearest step as int64 (what a network that embeds
  /// its T steps in a table needs); false feeds the fractional step as a
  /// float (for sinusoidal or Fourier time features, which take any t).
  /// Default: true.
  TORCH_ARG(bool, quantize) = true;
};

/// A discrete schedule as a noise process: at step i = 0..T-1, alpha_i =
/// sqrt(alpha_bar_i) and sigma_i = sqrt(1 - alpha_bar_i); the data sits at
/// t = -1 (alpha_bar_{-1} = 1, as DDIM's final step).
///
/// Between steps, lambda = log(alpha / sigma) is interpolated linearly in t
/// (exact at the steps), so t runs over the real interval [0, T-1] and the
/// continuous-time solvers (Euler-Maruyama, the probability-flow ODE, EDM's
/// Heun, Karras grids) run a network trained on the steps, as k-diffusion's
/// DiscreteEpsDDPMDenoiser does. On each segment, alpha^2 = sigmoid(2
/// lambda), so f = lambda' sigma^2 and g^2 = -2 lambda' sigma^2 with the
/// segment's slope lambda'.
class DiscreteProcess : public NoiseProcess {
 public:
  explicit DiscreteProcess(
      Schedule schedule, const DiscreteProcessOptions& options = {});

  const Schedule& schedule() const {
    return schedule_;
  }
  const DiscreteProcessOptions& options() const {
    return options_;
  }
  int64_t num_timesteps() const;

  std::string name() const override {
    return "discrete";
  }
  std::string describe() const override;
  double t_max() const override;
  double t_min() const override {
    return 0.0;
  }
  double t_floor() const override {
    return 0.0;
  }
  double data_time() const override {
    return -1.0;
  }
  double prior_std() const override {
    return 1.0;
  }
  bool integer_model_time() const override {
    return options_.quantize();
  }
  int64_t num_model_steps() const override;
  double model_time(double t) const override;
  torch::Tensor model_time(
      const torch::Tensor& t, torch::ScalarType dtype) const override;
  GridKind default_grid() const override {
    return GridKind::Linspace;
  }

 protected:
  double alpha_impl(double t) const override;
  torch::Tensor alpha_impl(const torch::Tensor& t) const override;
  double sigma_impl(double t) const override;
  torch::Tensor sigma_impl(const torch::Tensor& t) const override;
  double lambda_impl(double t) const override;
  torch::Tensor lambda_impl(const torch::Tensor& t) const override;
  double t_of_lambda_impl(double lambda) const override;
  double drift_coeff_impl(double t) const override;
  double diffusion_sq_impl(double t) const override;

 private:
  /// lambda_i of the steps (host), and as float64 tensors per device.
  torch::Tensor lambda_table(torch::Device device) const;
  double segment_slope(double t) const;

  Schedule schedule_;
  DiscreteProcessOptions options_;
  std::vector<double> lambdas_;
  struct DeviceTables;
  std::shared_ptr<DeviceTables> device_tables_;
};

}  // namespace sbgm
