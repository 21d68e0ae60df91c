#include "sbgm/sde.h"

#include <cmath>
#include <limits>
#include <sstream>

#include "internal.h"
#include "math.h"
#include "sbgm/schedule.h"

namespace sbgm {

namespace {

using detail::kInf;

// Each formula is written once, for T = double (host form) and T = tensor
// (float64, per sample).
template <class T>
T clamp(const T& t, double lo, double hi) {
  return math::max(math::min(t, hi), lo);
}

torch::Tensor f64(const torch::Tensor& t) {
  return t.to(torch::kDouble);
}

std::string fmt(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

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

}  // namespace sbgm
