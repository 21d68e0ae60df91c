#include "sbgm/processes/ve.h"

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

// ---- VE, sigma^t form: sigma^2 = expm1(2 t L) / (2 L), L = ln(base) ------
template <class T>
T ve_sigma(const T& t, double L) {
  return math::sqrt(math::expm1(t * (2.0 * L)) / (2.0 * L));
}
template <class T>
T ve_t_of_lambda(const T& lam, double L) {
  return clamp(
      math::log1p(math::exp(lam * -2.0) * (2.0 * L)) / (2.0 * L), 0.0, 1.0);
}
template <class T>
T ve_g2(const T& t, double L) {
  return math::exp(t * (2.0 * L));
}

// ---- geometric VE: sigma = sigma_min e^(t R), R = ln(sigma_max/sigma_min)
template <class T>
T gve_sigma(const T& t, double smin, double R) {
  return math::exp(t * R) * smin;
}
template <class T>
T gve_t_of_lambda(const T& lam, double smin, double R) {
  return clamp((-lam - std::log(smin)) / R, 0.0, 1.0);
}
template <class T>
T gve_g2(const T& t, double smin, double R) {
  return math::square(gve_sigma(t, smin, R)) * (2.0 * R);
}

}  // namespace

// ---- VESDE ------------------------------------------------------------------

VESDE::VESDE(double sigma) : base_(sigma), log_base_(std::log(sigma)) {
  TORCH_CHECK(
      std::isfinite(sigma) && sigma > 1.0,
      "VESDE: sigma must be finite and > 1, got ",
      sigma);
}
std::string VESDE::describe() const {
  return "ve(sigma=" + fmt(base_) + ")";
}
double VESDE::alpha_impl(double) const {
  return 1.0;
}
torch::Tensor VESDE::alpha_impl(const torch::Tensor& t) const {
  return math::ones_like(f64(t));
}
double VESDE::sigma_impl(double t) const {
  return ve_sigma(t, log_base_);
}
torch::Tensor VESDE::sigma_impl(const torch::Tensor& t) const {
  return ve_sigma(f64(t), log_base_);
}
double VESDE::t_of_lambda_impl(double lam) const {
  return ve_t_of_lambda(lam, log_base_);
}
torch::Tensor VESDE::t_of_lambda_impl(const torch::Tensor& lam) const {
  return ve_t_of_lambda(f64(lam), log_base_);
}
double VESDE::drift_coeff_impl(double) const {
  return 0.0;
}
double VESDE::diffusion_sq_impl(double t) const {
  return ve_g2(t, log_base_);
}
torch::Tensor VESDE::diffusion_sq_impl(const torch::Tensor& t) const {
  return ve_g2(f64(t), log_base_);
}
double VESDE::prior_std() const {
  return sigma(1.0);
}

// ---- GeometricVESDE ---------------------------------------------------------

GeometricVESDE::GeometricVESDE(double sigma_min, double sigma_max)
    : sigma_min_(sigma_min),
      sigma_max_(sigma_max),
      log_ratio_(std::log(sigma_max / sigma_min)) {
  TORCH_CHECK(
      std::isfinite(sigma_min) && std::isfinite(sigma_max) && sigma_min > 0 &&
          sigma_max > sigma_min,
      "GeometricVESDE: need 0 < sigma_min < sigma_max, got sigma_min = ",
      sigma_min,
      ", sigma_max = ",
      sigma_max);
}
std::string GeometricVESDE::describe() const {
  return "ve_geometric(sigma_min=" + fmt(sigma_min_) +
         ", sigma_max=" + fmt(sigma_max_) + ")";
}
double GeometricVESDE::data_time() const {
  return -kInf;
}
double GeometricVESDE::alpha_impl(double) const {
  return 1.0;
}
torch::Tensor GeometricVESDE::alpha_impl(const torch::Tensor& t) const {
  return math::ones_like(f64(t));
}
double GeometricVESDE::sigma_impl(double t) const {
  return gve_sigma(t, sigma_min_, log_ratio_);
}
torch::Tensor GeometricVESDE::sigma_impl(const torch::Tensor& t) const {
  return gve_sigma(f64(t), sigma_min_, log_ratio_);
}
double GeometricVESDE::t_of_lambda_impl(double lam) const {
  return gve_t_of_lambda(lam, sigma_min_, log_ratio_);
}
torch::Tensor GeometricVESDE::t_of_lambda_impl(const torch::Tensor& lam) const {
  return gve_t_of_lambda(f64(lam), sigma_min_, log_ratio_);
}
double GeometricVESDE::drift_coeff_impl(double) const {
  return 0.0;
}
double GeometricVESDE::diffusion_sq_impl(double t) const {
  return gve_g2(t, sigma_min_, log_ratio_);
}
torch::Tensor GeometricVESDE::diffusion_sq_impl(const torch::Tensor& t) const {
  return gve_g2(f64(t), sigma_min_, log_ratio_);
}

// ---- configs ----------------------------------------------------------------

std::shared_ptr<NoiseProcess> VESDE::from_config(const Config& c) {
  return std::make_shared<VESDE>(c.value("sigma", 25.0));
}
Config VESDE::config() const {
  return {{"name", "ve"}, {"sigma", base_}};
}
std::shared_ptr<NoiseProcess> GeometricVESDE::from_config(const Config& c) {
  return std::make_shared<GeometricVESDE>(
      c.value("sigma_min", 0.01), c.value("sigma_max", 50.0));
}
Config GeometricVESDE::config() const {
  return {
      {"name", "ve_geometric"},
      {"sigma_min", sigma_min_},
      {"sigma_max", sigma_max_}};
}

}  // namespace sbgm
