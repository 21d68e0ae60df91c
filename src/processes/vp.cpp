#include "sbgm/processes/vp.h"

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

#include "internal.h"
#include "math.h"
#include "processes/common.h"
#include "sbgm/schedule.h"

namespace sbgm {

namespace {

using detail::kInf;
using processes::clamp;
using processes::f64;
using processes::fmt;

// ---- VP and sub-VP: B(t) = int_0^t beta = beta_min t + d t^2 / 2 ---------
template <class T>
T vp_B(const T& t, double bmin, double bmax) {
  return t * bmin + math::square(t) * (0.5 * (bmax - bmin));
}
// The t >= 0 with B(t) = B: the positive root of d t^2 / 2 + bmin t - B,
// written without cancellation.
template <class T>
T vp_t_of_B(const T& B, double bmin, double bmax) {
  return B * 2.0 / (math::sqrt(B * (2.0 * (bmax - bmin)) + bmin * bmin) + bmin);
}
template <class T>
T vp_alpha(const T& t, double bmin, double bmax) {
  return math::exp(vp_B(t, bmin, bmax) * -0.5);
}
template <class T>
T vp_sigma(const T& t, double bmin, double bmax) {
  return math::sqrt(-math::expm1(-vp_B(t, bmin, bmax)));
}
// sigma^2 / alpha^2 = e^B - 1.
template <class T>
T vp_lambda(const T& t, double bmin, double bmax) {
  return math::log(math::expm1(vp_B(t, bmin, bmax))) * -0.5;
}
// B = log(1 + e^(-2 lambda)).
template <class T>
T vp_t_of_lambda(const T& lam, double bmin, double bmax) {
  return clamp(vp_t_of_B(math::softplus(lam * -2.0), bmin, bmax), 0.0, 1.0);
}
template <class T>
T vp_beta(const T& t, double bmin, double bmax) {
  return t * (bmax - bmin) + bmin;
}

// sub-VP: sigma = 1 - alpha^2 = -expm1(-B).
template <class T>
T subvp_sigma(const T& t, double bmin, double bmax) {
  return -math::expm1(-vp_B(t, bmin, bmax));
}
template <class T>
T subvp_lambda(const T& t, double bmin, double bmax) {
  const T B = vp_B(t, bmin, bmax);
  return B * -0.5 - math::log(-math::expm1(-B));
}
// r = sigma / alpha = (1 - alpha^2) / alpha gives alpha = 2 / (r + sqrt(r^2 +
// 4)) and B = -2 log alpha = 2 asinh(r / 2).
template <class T>
T subvp_t_of_lambda(const T& lam, double bmin, double bmax) {
  const T B = math::asinh(math::exp(-lam) * 0.5) * 2.0;
  return clamp(vp_t_of_B(B, bmin, bmax), 0.0, 1.0);
}
// g^2 = beta (1 - e^(-2B)).
template <class T>
T subvp_g2(const T& t, double bmin, double bmax) {
  return -vp_beta(t, bmin, bmax) * math::expm1(vp_B(t, bmin, bmax) * -2.0);
}

}  // namespace

// ---- VPSDE ------------------------------------------------------------------

VPSDE::VPSDE(double beta_min, double beta_max)
    : beta_min_(beta_min), beta_max_(beta_max) {
  TORCH_CHECK(
      std::isfinite(beta_min) && std::isfinite(beta_max) && beta_min > 0 &&
          beta_max >= beta_min,
      "VPSDE: need 0 < beta_min <= beta_max, got beta_min = ",
      beta_min,
      ", beta_max = ",
      beta_max);
}

VPSDE VPSDE::from_schedule(const Schedule& schedule) {
  TORCH_CHECK(
      schedule.kind() == ScheduleKind::Linear,
      "VPSDE::from_schedule: needs a linear schedule, got a ",
      to_string(schedule.kind()),
      " one");
  const double T = static_cast<double>(schedule.num_timesteps());
  return VPSDE(T * schedule.beta_start(), T * schedule.beta_end());
}

std::string VPSDE::describe() const {
  return "vp(beta_min=" + fmt(beta_min_) + ", beta_max=" + fmt(beta_max_) + ")";
}

double VPSDE::beta(double t) const {
  check_time(t, "VPSDE::beta");
  return vp_beta(t, beta_min_, beta_max_);
}
double VPSDE::alpha_impl(double t) const {
  return vp_alpha(t, beta_min_, beta_max_);
}
torch::Tensor VPSDE::alpha_impl(const torch::Tensor& t) const {
  return vp_alpha(f64(t), beta_min_, beta_max_);
}
double VPSDE::sigma_impl(double t) const {
  return vp_sigma(t, beta_min_, beta_max_);
}
torch::Tensor VPSDE::sigma_impl(const torch::Tensor& t) const {
  return vp_sigma(f64(t), beta_min_, beta_max_);
}
double VPSDE::lambda_impl(double t) const {
  return vp_lambda(t, beta_min_, beta_max_);
}
torch::Tensor VPSDE::lambda_impl(const torch::Tensor& t) const {
  return vp_lambda(f64(t), beta_min_, beta_max_);
}
double VPSDE::t_of_lambda_impl(double lam) const {
  return vp_t_of_lambda(lam, beta_min_, beta_max_);
}
torch::Tensor VPSDE::t_of_lambda_impl(const torch::Tensor& lam) const {
  return vp_t_of_lambda(f64(lam), beta_min_, beta_max_);
}
double VPSDE::drift_coeff_impl(double t) const {
  return -0.5 * vp_beta(t, beta_min_, beta_max_);
}
double VPSDE::diffusion_sq_impl(double t) const {
  return vp_beta(t, beta_min_, beta_max_);
}
torch::Tensor VPSDE::diffusion_sq_impl(const torch::Tensor& t) const {
  return vp_beta(f64(t), beta_min_, beta_max_);
}

// ---- SubVPSDE ---------------------------------------------------------------

SubVPSDE::SubVPSDE(double beta_min, double beta_max)
    : VPSDE(beta_min, beta_max) {}

std::string SubVPSDE::describe() const {
  return "subvp(beta_min=" + fmt(beta_min_) + ", beta_max=" + fmt(beta_max_) +
         ")";
}
double SubVPSDE::sigma_impl(double t) const {
  return subvp_sigma(t, beta_min_, beta_max_);
}
torch::Tensor SubVPSDE::sigma_impl(const torch::Tensor& t) const {
  return subvp_sigma(f64(t), beta_min_, beta_max_);
}
double SubVPSDE::lambda_impl(double t) const {
  return subvp_lambda(t, beta_min_, beta_max_);
}
torch::Tensor SubVPSDE::lambda_impl(const torch::Tensor& t) const {
  return subvp_lambda(f64(t), beta_min_, beta_max_);
}
double SubVPSDE::t_of_lambda_impl(double lam) const {
  return subvp_t_of_lambda(lam, beta_min_, beta_max_);
}
torch::Tensor SubVPSDE::t_of_lambda_impl(const torch::Tensor& lam) const {
  return subvp_t_of_lambda(f64(lam), beta_min_, beta_max_);
}
double SubVPSDE::diffusion_sq_impl(double t) const {
  return subvp_g2(t, beta_min_, beta_max_);
}
torch::Tensor SubVPSDE::diffusion_sq_impl(const torch::Tensor& t) const {
  return subvp_g2(f64(t), beta_min_, beta_max_);
}

// ---- configs ----------------------------------------------------------------

std::shared_ptr<NoiseProcess> VPSDE::from_config(const Config& c) {
  return std::make_shared<VPSDE>(
      c.value("beta_min", 0.1), c.value("beta_max", 20.0));
}
Config VPSDE::config() const {
  return {{"name", "vp"}, {"beta_min", beta_min_}, {"beta_max", beta_max_}};
}
std::shared_ptr<NoiseProcess> SubVPSDE::from_config(const Config& c) {
  return std::make_shared<SubVPSDE>(
      c.value("beta_min", 0.1), c.value("beta_max", 20.0));
}
Config SubVPSDE::config() const {
  return {{"name", "subvp"}, {"beta_min", beta_min_}, {"beta_max", beta_max_}};
}

}  // namespace sbgm
