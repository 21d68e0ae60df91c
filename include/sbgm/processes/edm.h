#pragma once

/// \file
/// The process of Karras et al., "Elucidating the Design Space of
/// Diffusion-Based Generative Models" (NeurIPS 2022): alpha = 1, sigma = t
/// (config "edm").

#include <string>

#include "sbgm/process.h"

namespace sbgm {

/// The process of EDM and k-diffusion (Karras et al. 2022): alpha = 1,
/// sigma = t, so the time is the noise level itself, t in [0, sigma_max];
/// grids default to Karras' with rho = 7 from sigma_max down to sigma_min,
/// then 0. dx = sqrt(2 t) dw. sigma_data is what EDM's preconditioning and
/// loss weight use (sbgm/precondition.h).
class EDMProcess : public NoiseProcess {
 public:
  /// Rebuilds the process from its config() (missing parameters take
  /// their defaults); the factory process_registry() holds.
  static std::shared_ptr<NoiseProcess> from_config(const Config& config);
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
  Config config() const override;
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
