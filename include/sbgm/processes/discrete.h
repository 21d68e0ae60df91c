#pragma once

/// \file
/// A discrete (DDPM) schedule as a noise process (config "discrete").

#include <torch/arg.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "sbgm/process.h"
#include "sbgm/schedule.h"

namespace sbgm {

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
  /// Rebuilds the process from its config() (missing parameters take
  /// their defaults); the factory process_registry() holds.
  static std::shared_ptr<NoiseProcess> from_config(const Config& config);
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
  Config config() const override;
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
