#pragma once

/// \file
/// The continuous-time processes (Song et al., "Score-Based Generative
/// Modeling through Stochastic Differential Equations", ICLR 2021; Karras et
/// al., "Elucidating the Design Space of Diffusion-Based Generative Models",
/// NeurIPS 2022), each a NoiseProcess (sbgm/process.h): x_t = alpha x0 +
/// sigma eps with
///
///   VPSDE           alpha = exp(-B/2), sigma = sqrt(1 - exp(-B)),
///                   B(t) = beta_min t + (beta_max - beta_min) t^2 / 2
///   SubVPSDE        alpha = exp(-B/2), sigma = 1 - exp(-B)
///   VESDE           alpha = 1, sigma^2 = (s^(2t) - 1) / (2 ln s)  (dx = s^t
///   dw) GeometricVESDE  alpha = 1, sigma = sigma_min (sigma_max/sigma_min)^t
///   EDMProcess      alpha = 1, sigma = t
///
/// Formulas are evaluated in forms that stay accurate near t = 0 (expm1,
/// log1p).

#include <string>

#include "sbgm/process.h"

namespace sbgm {

class Schedule;

/// Variance-preserving SDE: dx = -1/2 beta(t) x dt + sqrt(beta(t)) dw,
/// beta(t) = beta_min + t (beta_max - beta_min), t in [0, 1]. The continuous
/// limit of the DDPM chain (`from_schedule`). t_min = 1e-3.
class VPSDE : public NoiseProcess {
 public:
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
  explicit SubVPSDE(double beta_min = 0.1, double beta_max = 20.0);

  std::string name() const override {
    return "subvp";
  }
  std::string describe() const override;

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

/// Variance-exploding SDE in the sigma^t form (the seed and the score-SDE
/// tutorial): dx = sigma^t dw, t in [0, 1]; sigma_t^2 = (sigma^(2t) - 1) /
/// (2 ln sigma), prior N(0, sigma_1^2 I). t_min = 1e-5.
class VESDE : public NoiseProcess {
 public:
  explicit VESDE(double sigma = 25.0);
  /// The base sigma of sigma^t (not sigma(t); see sigma(double)).
  double base_sigma() const {
    return base_;
  }

  std::string name() const override {
    return "ve";
  }
  std::string describe() const override;
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

/// The process of EDM and k-diffusion (Karras et al. 2022): alpha = 1,
/// sigma = t, so the time is the noise level itself, t in [0, sigma_max];
/// grids default to Karras' with rho = 7 from sigma_max down to sigma_min,
/// then 0. dx = sqrt(2 t) dw. sigma_data is what EDM's preconditioning and
/// loss weight use (sbgm/precondition.h).
class EDMProcess : public NoiseProcess {
 public:
  explicit EDMProcess(
      double sigma_min = 0.002,
      double sigma_max = 80.0,
      double sigma_data = 0.5);
  double sigma_min() const {
    return sigma_min_;
  }
  double sigma_max() const {
    return sigma_max_;
  }
  double sigma_data() const {
    return sigma_data_;
  }

  std::string name() const override {
    return "edm";
  }
  std::string describe() const override;
  double t_max() const override {
    return sigma_max_;
  }
  double t_min() const override {
    return sigma_min_;
  }
  double t_floor() const override {
    return 0.0;
  }
  double data_time() const override {
    return 0.0;
  }
  double prior_std() const override {
    return sigma_max_;
  }
  GridKind default_grid() const override {
    return GridKind::Karras;
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
  double sigma_data_;
};

}  // namespace sbgm
