#pragma once

/// \file
/// The variance-preserving processes of Song et al., "Score-Based Generative
/// Modeling through Stochastic Differential Equations" (ICLR 2021), each a
/// NoiseProcess (sbgm/process.h), x_t = alpha x0 + sigma eps with
/// B(t) = beta_min t + (beta_max - beta_min) t^2 / 2:
///   VPSDE     alpha = exp(-B/2), sigma = sqrt(1 - exp(-B))   (config "vp")
///   SubVPSDE  alpha = exp(-B/2), sigma = 1 - exp(-B)         (config "subvp")
/// Formulas are evaluated in forms that stay accurate near t = 0 (expm1).

#include <string>

#include "sbgm/process.h"

namespace sbgm {

class Schedule;

/// Variance-preserving SDE: dx = -1/2 beta(t) x dt + sqrt(beta(t)) dw,
/// beta(t) = beta_min + t (beta_max - beta_min), t in [0, 1]. The continuous
/// limit of the DDPM chain (`from_schedule`). t_min = 1e-3.
class VPSDE : public NoiseProcess {
 public:
  /// Rebuilds the process from its config() (missing parameters take
  /// their defaults); the factory process_registry() holds.
  static std::shared_ptr<NoiseProcess> from_config(const Config& config);
  explicit VPSDE(double beta_min = 0.1, double beta_max = 20.0);
  /// The VP SDE whose discretization with T steps is the given linear
  /// schedule: beta_min = T beta_start, beta_max = T beta_end.
  static VPSDE from_schedule(const Schedule& schedule);

  double beta_min() const {
    return beta_min_;
  }
  double beta_max() const {
    return beta_max_;
  }
  /// beta(t).
  double beta(double t) const;

  std::string name() const override {
    return "vp";
  }
  std::string describe() const override;
  Config config() const override;
  double t_max() const override {
    return 1.0;
  }
  double t_min() const override {
    return 1e-3;
  }
  double t_floor() const override {
    return 0.0;
  }
  double data_time() const override {
    return 0.0;
  }
  double prior_std() const override {
    return 1.0;
  }

 protected:
  double beta_min_;
  double beta_max_;

  double alpha_impl(double t) const override;
  torch::Tensor alpha_impl(const torch::Tensor& t) const override;
  double sigma_impl(double t) const override;
  torch::Tensor sigma_impl(const torch::Tensor& t) const override;
  double lambda_impl(double t) const override;
  torch::Tensor lambda_impl(const torch::Tensor& t) const override;
  double t_of_lambda_impl(double lambda) const override;
  torch::Tensor t_of_lambda_impl(const torch::Tensor& lambda) const override;
  double drift_coeff_impl(double t) const override;
  double diffusion_sq_impl(double t) const override;
  torch::Tensor diffusion_sq_impl(const torch::Tensor& t) const override;
};

/// Sub-VP SDE: dx = -1/2 beta(t) x dt + sqrt(beta(t)(1 - exp(-2 B(t)))) dw;
/// alpha as VP, sigma = 1 - exp(-B).
class SubVPSDE : public VPSDE {
 public:
  /// Rebuilds the process from its config() (missing parameters take
  /// their defaults); the factory process_registry() holds.
  static std::shared_ptr<NoiseProcess> from_config(const Config& config);
  explicit SubVPSDE(double beta_min = 0.1, double beta_max = 20.0);

  std::string name() const override {
    return "subvp";
  }
  std::string describe() const override;
  Config config() const override;

 protected:
  double sigma_impl(double t) const override;
  torch::Tensor sigma_impl(const torch::Tensor& t) const override;
  double lambda_impl(double t) const override;
  torch::Tensor lambda_impl(const torch::Tensor& t) const override;
  double t_of_lambda_impl(double lambda) const override;
  torch::Tensor t_of_lambda_impl(const torch::Tensor& lambda) const override;
  double diffusion_sq_impl(double t) const override;
  torch::Tensor diffusion_sq_impl(const torch::Tensor& t) const override;
};

}  // namespace sbgm
