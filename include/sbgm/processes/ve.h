#pragma once

/// \file
/// The variance-exploding processes (Song et al., ICLR 2021), each a
/// NoiseProcess (sbgm/process.h) with alpha = 1:
///   VESDE           sigma^2 = (s^(2t) - 1) / (2 ln s), dx = s^t dw  ("ve")
///   GeometricVESDE  sigma = sigma_min (sigma_max / sigma_min)^t
///   ("ve_geometric")

#include <string>

#include "sbgm/process.h"

namespace sbgm {

/// Variance-exploding SDE in the sigma^t form (the score-SDE
/// tutorial): dx = sigma^t dw, t in [0, 1]; sigma_t^2 = (sigma^(2t) - 1) /
/// (2 ln sigma), prior N(0, sigma_1^2 I). t_min = 1e-5.
class VESDE : public NoiseProcess {
 public:
  /// Rebuilds the process from its config() (missing parameters take
  /// their defaults); the factory process_registry() holds.
  static std::shared_ptr<NoiseProcess> from_config(const Config& config);
  explicit VESDE(double sigma = 25.0);
  /// The base sigma of sigma^t (not sigma(t); see sigma(double)).
  double base_sigma() const {
    return base_;
  }

  std::string name() const override {
    return "ve";
  }
  std::string describe() const override;
  Config config() const override;
  double t_max() const override {
    return 1.0;
  }
  double t_min() const override {
    return 1e-5;
  }
  double t_floor() const override {
    return 0.0;
  }
  double data_time() const override {
    return 0.0;
  }
  double prior_std() const override;

 protected:
  double alpha_impl(double t) const override;
  torch::Tensor alpha_impl(const torch::Tensor& t) const override;
  double sigma_impl(double t) const override;
  torch::Tensor sigma_impl(const torch::Tensor& t) const override;
  double t_of_lambda_impl(double lambda) const override;
  torch::Tensor t_of_lambda_impl(const torch::Tensor& lambda) const override;
  double drift_coeff_impl(double t) const override;
  double diffusion_sq_impl(double t) const override;
  torch::Tensor diffusion_sq_impl(const torch::Tensor& t) const override;

 private:
  double base_;
  double log_base_;
};

/// Variance-exploding SDE of score_sde (Song et al. 2021, eq. 30):
/// sigma(t) = sigma_min (sigma_max / sigma_min)^t, t in [0, 1], dx =
/// sigma(t) sqrt(2 ln(sigma_max / sigma_min)) dw. sigma(0) = sigma_min, so
/// the data lies at t = -inf (where sigma(t) -> 0). t_min = 1e-5.
class GeometricVESDE : public NoiseProcess {
 public:
  /// Rebuilds the process from its config() (missing parameters take
  /// their defaults); the factory process_registry() holds.
  static std::shared_ptr<NoiseProcess> from_config(const Config& config);
  explicit GeometricVESDE(double sigma_min = 0.01, double sigma_max = 50.0);
  double sigma_min() const {
    return sigma_min_;
  }
  double sigma_max() const {
    return sigma_max_;
  }

  std::string name() const override {
    return "ve_geometric";
  }
  std::string describe() const override;
  Config config() const override;
  double t_max() const override {
    return 1.0;
  }
  double t_min() const override {
    return 1e-5;
  }
  double t_floor() const override {
    return 0.0;
  }
  double data_time() const override;
  double prior_std() const override {
    return sigma_max_;
  }

 protected:
  double alpha_impl(double t) const override;
  torch::Tensor alpha_impl(const torch::Tensor& t) const override;
  double sigma_impl(double t) const override;
  torch::Tensor sigma_impl(const torch::Tensor& t) const override;
  double t_of_lambda_impl(double lambda) const override;
  torch::Tensor t_of_lambda_impl(const torch::Tensor& lambda) const override;
  double drift_coeff_impl(double t) const override;
  double diffusion_sq_impl(double t) const override;
  torch::Tensor diffusion_sq_impl(const torch::Tensor& t) const override;

 private:
  double sigma_min_;
  double sigma_max_;
  double log_ratio_;
};

}  // namespace sbgm
