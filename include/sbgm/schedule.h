#pragma once

/// \file
/// Discrete (DDPM) noise schedules and the tables derived from them.
///
/// Timesteps are indexed t = 0..T-1 (the paper's 1..T shifted by one):
///   alpha_t = 1 - beta_t,  alpha_bar_t = prod_{s<=t} alpha_s,
///   q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I).
/// Ho et al., "Denoising Diffusion Probabilistic Models" (2020), eq. 4-7;
/// Nichol & Dhariwal, "Improved DDPM" (2021), eq. 17 for the cosine schedule.

#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

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

}  // namespace sbgm
