#include "sbgm/processes/edm.h"

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

#include "internal.h"
#include "math.h"
#include "processes/common.h"

namespace sbgm {

namespace {

using detail::kInf;
using processes::clamp;
using processes::f64;
using processes::fmt;

}  // namespace

// ---- EDMProcess -------------------------------------------------------------

EDMProcess::EDMProcess(double sigma_min, double sigma_max, double sigma_data)
    : sigma_min_(sigma_min), sigma_max_(sigma_max), sigma_data_(sigma_data) {
  TORCH_CHECK(
      std::isfinite(sigma_min) && std::isfinite(sigma_max) && sigma_min > 0 &&
          sigma_max > sigma_min,
      "EDMProcess: need 0 < sigma_min < sigma_max, got sigma_min = ",
      sigma_min,
      ", sigma_max = ",
      sigma_max);
  TORCH_CHECK(
      std::isfinite(sigma_data) && sigma_data > 0,
      "EDMProcess: sigma_data must be finite and > 0, got ",
      sigma_data);
}
std::string EDMProcess::describe() const {
  return "edm(sigma_min=" + fmt(sigma_min_) + ", sigma_max=" + fmt(sigma_max_) +
         ", sigma_data=" + fmt(sigma_data_) + ")";
}
double EDMProcess::alpha_impl(double) const {
  return 1.0;
}
torch::Tensor EDMProcess::alpha_impl(const torch::Tensor& t) const {
  return math::ones_like(f64(t));
}
double EDMProcess::sigma_impl(double t) const {
  return t;
}
torch::Tensor EDMProcess::sigma_impl(const torch::Tensor& t) const {
  return f64(t);
}
double EDMProcess::t_of_lambda_impl(double lam) const {
  return clamp(std::exp(-lam), 0.0, sigma_max_);
}
torch::Tensor EDMProcess::t_of_lambda_impl(const torch::Tensor& lam) const {
  return clamp(torch::exp(-f64(lam)), 0.0, sigma_max_);
}
double EDMProcess::drift_coeff_impl(double) const {
  return 0.0;
}
double EDMProcess::diffusion_sq_impl(double t) const {
  return 2.0 * t;
}
torch::Tensor EDMProcess::diffusion_sq_impl(const torch::Tensor& t) const {
  return f64(t) * 2.0;
}

std::shared_ptr<NoiseProcess> EDMProcess::from_config(const Config& c) {
  return std::make_shared<EDMProcess>(
      c.value("sigma_min", 0.002),
      c.value("sigma_max", 80.0),
      c.value("sigma_data", 0.5));
}
Config EDMProcess::config() const {
  return {
      {"name", "edm"},
      {"sigma_min", sigma_min_},
      {"sigma_max", sigma_max_},
      {"sigma_data", sigma_data_}};
}

}  // namespace sbgm
