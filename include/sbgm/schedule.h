#pragma once

/// \file
/// Discrete (DDPM) noise schedules: the betas and alpha-bar. Sampling and
/// training use a schedule through DiscreteProcess
/// (sbgm/processes/discrete.h), whose perturb() and the update functions
/// (sbgm/samplers/updates.h) replace the DDPM tables of other libraries.
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

#include "sbgm/registry.h"

namespace sbgm {

/// The family a schedule was built from.
enum class ScheduleKind { Linear, Sigmoid, Cosine, Custom };

/// Name of a schedule kind ("linear", "sigmoid", "cosine", "custom").
std::string to_string(ScheduleKind kind);

/// A discrete noise schedule beta_0..beta_{T-1} and its alpha-bar.
///
/// betas() and alphas_cumprod() are float64 tensors of length T on
/// `device()`; host copies of the same numbers serve a scalar t. Copies of
/// a Schedule share them (it is cheap to copy).
///
/// Example:
/// ```
/// sbgm::DiscreteProcess p(sbgm::Schedule::cosine(1000));
/// auto xt = p.perturb(x0, t, torch::randn_like(x0));
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

  /// The schedule as JSON: {"kind", "betas", "beta_start", "beta_end"}
  /// (the betas exactly, so from_config rebuilds the same numbers).
  Config config() const;
  /// Rebuilds a schedule from config(); without "betas", builds the kind
  /// ("linear", "sigmoid", "cosine") from "num_timesteps" (default 1000) and
  /// the kind's own parameters ("beta_start" and "beta_end"; "s" and
  /// "max_beta" for cosine), each defaulting as in linear(), sigmoid() and
  /// cosine().
  static Schedule from_config(const Config& config);

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

  // ---- float64 tensors of shape [T] on device() --------------------------
  const torch::Tensor& betas() const;
  /// alpha_bar_t = prod_{s<=t} (1 - beta_s).
  const torch::Tensor& alphas_cumprod() const;

  // ---- host values at one step --------------------------------------------
  double beta(int64_t t) const;
  double alpha_bar(int64_t t) const;

  /// alpha_bar at the last step: how much of x_0 is left in x_T.
  double terminal_alpha_bar() const;
  /// Signal-to-noise ratio alpha_bar_T / (1 - alpha_bar_T) at the last step.
  double terminal_snr() const;
  /// True when alpha_bar_T <= `tol`, i.e. x_T is close to N(0, I). Sampling
  /// starts from N(0, I), so a schedule that stops short of it (a sigmoid
  /// schedule of T = 150 from 1e-5 to 5e-3 ends at alpha_bar_T ~ 0.69)
  /// starts every sample off the distribution the network was trained on.
  /// Such schedules are warned about once when built.
  bool reaches_prior(double tol = kPriorTolerance) const;
  static constexpr double kPriorTolerance = 1e-2;

 private:
  struct Tables;
  struct HostTables;
  Schedule(
      ScheduleKind kind,
      const torch::Tensor& betas,
      double beta_start,
      double beta_end);
  void check_host_t(int64_t t) const;

  ScheduleKind kind_;
  double beta_start_;
  double beta_end_;
  std::shared_ptr<const Tables> tables_;
  std::shared_ptr<const HostTables> host_;
};

}  // namespace sbgm
