#include "sbgm/sde.h"

#include <cmath>

#include "internal.h"
#include "sbgm/schedule.h"

namespace sbgm {

namespace {

// Scalar functions written once for both a host double and a tensor.
inline double xexp(double v) {
  return std::exp(v);
}
inline torch::Tensor xexp(const torch::Tensor& v) {
  return v.exp();
}
inline double xexpm1(double v) {
  return std::expm1(v);
}
inline torch::Tensor xexpm1(const torch::Tensor& v) {
  return v.expm1();
}
inline double xsqrt(double v) {
  return std::sqrt(v);
}
inline torch::Tensor xsqrt(const torch::Tensor& v) {
  return v.sqrt();
}
inline double xzero_like(double) {
  return 0.0;
}
inline torch::Tensor xzero_like(const torch::Tensor& v) {
  return torch::zeros_like(v);
}
inline double xone_like(double) {
  return 1.0;
}
inline torch::Tensor xone_like(const torch::Tensor& v) {
  return torch::ones_like(v);
}

// B(t) = int_0^t beta(s) ds for beta(s) = bmin + s (bmax - bmin).
template <class T>
T vp_integral(const T& t, double bmin, double bmax) {
  return t * bmin + (t * t) * (0.5 * (bmax - bmin));
}
template <class T>
T vp_beta(const T& t, double bmin, double bmax) {
  return t * (bmax - bmin) + bmin;
}
template <class T>
T vp_mean(const T& t, double bmin, double bmax) {
  return xexp(vp_integral(t, bmin, bmax) * -0.5);
}
// 1 - exp(-B), accurate for small B.
template <class T>
T one_minus_exp_neg_integral(const T& t, double bmin, double bmax) {
  return -xexpm1(-vp_integral(t, bmin, bmax));
}

void check_beta_pair(double bmin, double bmax, const char* where) {
  TORCH_CHECK(
      std::isfinite(bmin) && std::isfinite(bmax) && bmin >= 0.0,
      where,
      ": beta_min must be finite and >= 0, got beta_min = ",
      bmin,
      ", beta_max = ",
      bmax);
  TORCH_CHECK(
      bmin < bmax,
      where,
      ": beta_min must be smaller than beta_max, got beta_min = ",
      bmin,
      ", beta_max = ",
      bmax);
}

}  // namespace

// ---- SDE -----------------------------------------------------------------

void SDE::check_time(double t, const char* where) {
  TORCH_CHECK(
      std::isfinite(t) && t >= 0.0 && t <= 1.0,
      where,
      ": t must lie in [0, 1], got ",
      t);
}

void SDE::check_time(const torch::Tensor& t, const char* where) {
  TORCH_CHECK(t.defined(), where, ": t is an undefined tensor");
  TORCH_CHECK(
      t.is_floating_point(),
      where,
      ": continuous time t must be a floating-point tensor, got dtype ",
      t.scalar_type());
  double lo = 0, hi = 0;
  if (detail::host_minmax(t, &lo, &hi)) {
    TORCH_CHECK(
        lo >= 0.0 && hi <= 1.0,
        where,
        ": t must lie in [0, 1], got values in [",
        lo,
        ", ",
        hi,
        "]");
  }
}

void SDE::check_time(
    const torch::Tensor& t, const torch::Tensor& x, const char* where) {
  detail::check_floating(x, "x", where);
  detail::check_time_tensor(t, x, /*integer=*/false, where);
  check_time(t, where);
}

DiscreteStep SDE::discretize(double t, double dt) const {
  check_time(t, "SDE::discretize");
  TORCH_CHECK(dt > 0.0, "SDE::discretize: dt must be > 0, got ", dt);
  return {drift_coeff(t) * dt, diffusion(t) * std::sqrt(dt)};
}

torch::Tensor SDE::drift(const torch::Tensor& x, double t) const {
  check_time(t, "SDE::drift");
  detail::check_floating(x, "x", "SDE::drift");
  return x * drift_coeff(t);
}

torch::Tensor SDE::drift(const torch::Tensor& x, const torch::Tensor& t) const {
  check_time(t, x, "SDE::drift");
  return x * detail::batch_view(drift_coeff(t).to(x.scalar_type()), x);
}

torch::Tensor SDE::marginal_mean(const torch::Tensor& x0, double t) const {
  check_time(t, "SDE::marginal_mean");
  detail::check_floating(x0, "x0", "SDE::marginal_mean");
  return x0 * mean_coeff(t);
}

torch::Tensor SDE::marginal_mean(
    const torch::Tensor& x0, const torch::Tensor& t) const {
  check_time(t, x0, "SDE::marginal_mean");
  return x0 * detail::batch_view(mean_coeff(t).to(x0.scalar_type()), x0);
}

namespace {
void check_noise(
    const torch::Tensor& x0, const torch::Tensor& noise, const char* where) {
  TORCH_CHECK(
      noise.defined() && noise.sizes() == x0.sizes(),
      where,
      ": noise has shape ",
      noise.defined() ? detail::shape_str(noise) : std::string("(undefined)"),
      " but x0 has shape ",
      detail::shape_str(x0));
  detail::check_same_device(noise, "noise", x0, "x0", where);
}
}  // namespace

torch::Tensor SDE::perturb(
    const torch::Tensor& x0, double t, const torch::Tensor& noise) const {
  check_time(t, "SDE::perturb");
  detail::check_floating(x0, "x0", "SDE::perturb");
  check_noise(x0, noise, "SDE::perturb");
  return torch::add(x0 * mean_coeff(t), noise, std(t));
}

torch::Tensor SDE::perturb(
    const torch::Tensor& x0,
    const torch::Tensor& t,
    const torch::Tensor& noise) const {
  check_time(t, x0, "SDE::perturb");
  check_noise(x0, noise, "SDE::perturb");
  auto m = detail::batch_view(mean_coeff(t).to(x0.scalar_type()), x0);
  auto s = detail::batch_view(std(t).to(x0.scalar_type()), x0);
  return torch::addcmul(x0 * m, s, noise);
}

torch::Tensor SDE::kernel_score(
    const torch::Tensor& xt,
    const torch::Tensor& x0,
    const torch::Tensor& t) const {
  check_time(t, x0, "SDE::kernel_score");
  check_noise(x0, xt, "SDE::kernel_score");
  auto m = detail::batch_view(mean_coeff(t).to(x0.scalar_type()), x0);
  auto s = detail::batch_view(std(t).to(x0.scalar_type()), x0);
  return -(xt - m * x0) / (s * s);
}

torch::Tensor SDE::prior_sample(
    torch::IntArrayRef shape,
    const torch::TensorOptions& options,
    std::optional<torch::Generator> generator) const {
  for (auto d : shape) {
    TORCH_CHECK(d >= 0, "SDE::prior_sample: negative size in shape ", shape);
  }
  auto z = generator ? torch::randn(shape, *generator, options)
                     : torch::randn(shape, options);
  TORCH_CHECK(
      z.is_floating_point(),
      "SDE::prior_sample: options must give a floating dtype, got ",
      z.scalar_type());
  return z.mul_(prior_std());
}

torch::Tensor SDE::prior_log_prob(const torch::Tensor& z) const {
  detail::check_floating(z, "z", "SDE::prior_log_prob");
  TORCH_CHECK(
      z.dim() >= 1, "SDE::prior_log_prob: z must have a batch dimension");
  const double s = prior_std();
  auto flat = z.dim() == 1 ? z.reshape({1, -1}) : z.reshape({z.size(0), -1});
  const auto d = static_cast<double>(flat.size(1));
  auto sq = flat.pow(2).sum(1);
  auto out = sq * (-0.5 / (s * s)) - d * 0.5 * std::log(2.0 * M_PI * s * s);
  return z.dim() == 1 ? out.reshape({}) : out;
}

torch::Tensor SDE::reverse_drift(
    const torch::Tensor& x,
    double t,
    const torch::Tensor& score,
    bool probability_flow) const {
  check_time(t, "SDE::reverse_drift");
  detail::check_floating(x, "x", "SDE::reverse_drift");
  check_noise(x, score, "SDE::reverse_drift");
  const double g = diffusion(t);
  const double w = probability_flow ? 0.5 * g * g : g * g;
  return torch::add(x * drift_coeff(t), score, -w);
}

torch::Tensor SDE::reverse_drift(
    const torch::Tensor& x,
    const torch::Tensor& t,
    const torch::Tensor& score,
    bool probability_flow) const {
  check_time(t, x, "SDE::reverse_drift");
  check_noise(x, score, "SDE::reverse_drift");
  auto a = detail::batch_view(drift_coeff(t).to(x.scalar_type()), x);
  auto g = detail::batch_view(diffusion(t).to(x.scalar_type()), x);
  auto w = probability_flow ? g * g * 0.5 : g * g;
  return x * a - w * score;
}

// ---- VP ------------------------------------------------------------------

VPSDE::VPSDE(double beta_min, double beta_max)
    : beta_min_(beta_min), beta_max_(beta_max) {
  check_beta_pair(beta_min, beta_max, "VPSDE");
}

VPSDE VPSDE::from_schedule(const Schedule& schedule) {
  TORCH_CHECK(
      schedule.kind() == ScheduleKind::Linear,
      "VPSDE::from_schedule: only a linear schedule has a VP SDE limit, got a ",
      to_string(schedule.kind()),
      " schedule");
  const auto T = static_cast<double>(schedule.num_timesteps());
  return VPSDE(T * schedule.beta_start(), T * schedule.beta_end());
}

double VPSDE::beta(double t) const {
  check_time(t, "VPSDE::beta");
  return vp_beta(t, beta_min_, beta_max_);
}
torch::Tensor VPSDE::beta(const torch::Tensor& t) const {
  check_time(t, "VPSDE::beta");
  return vp_beta(t, beta_min_, beta_max_);
}
double VPSDE::drift_coeff(double t) const {
  return -0.5 * beta(t);
}
torch::Tensor VPSDE::drift_coeff(const torch::Tensor& t) const {
  return beta(t) * -0.5;
}
double VPSDE::diffusion(double t) const {
  return std::sqrt(beta(t));
}
torch::Tensor VPSDE::diffusion(const torch::Tensor& t) const {
  return beta(t).sqrt();
}
double VPSDE::mean_coeff(double t) const {
  check_time(t, "VPSDE::mean_coeff");
  return vp_mean(t, beta_min_, beta_max_);
}
torch::Tensor VPSDE::mean_coeff(const torch::Tensor& t) const {
  check_time(t, "VPSDE::mean_coeff");
  return vp_mean(t, beta_min_, beta_max_);
}
double VPSDE::std(double t) const {
  check_time(t, "VPSDE::std");
  return xsqrt(one_minus_exp_neg_integral(t, beta_min_, beta_max_));
}
torch::Tensor VPSDE::std(const torch::Tensor& t) const {
  check_time(t, "VPSDE::std");
  return xsqrt(one_minus_exp_neg_integral(t, beta_min_, beta_max_));
}
DiscreteStep VPSDE::discretize(double t, double dt) const {
  check_time(t, "VPSDE::discretize");
  TORCH_CHECK(dt > 0.0, "VPSDE::discretize: dt must be > 0, got ", dt);
  const double b = beta(t) * dt;
  TORCH_CHECK(
      b < 1.0,
      "VPSDE::discretize: beta(t) dt = ",
      b,
      " must be < 1; use more steps");
  return {std::sqrt(1.0 - b) - 1.0, std::sqrt(b)};
}

// ---- sub-VP --------------------------------------------------------------

SubVPSDE::SubVPSDE(double beta_min, double beta_max)
    : beta_min_(beta_min), beta_max_(beta_max) {
  check_beta_pair(beta_min, beta_max, "SubVPSDE");
}

double SubVPSDE::drift_coeff(double t) const {
  check_time(t, "SubVPSDE::drift_coeff");
  return -0.5 * vp_beta(t, beta_min_, beta_max_);
}
torch::Tensor SubVPSDE::drift_coeff(const torch::Tensor& t) const {
  check_time(t, "SubVPSDE::drift_coeff");
  return vp_beta(t, beta_min_, beta_max_) * -0.5;
}
namespace {
template <class T>
T subvp_diffusion(const T& t, double bmin, double bmax) {
  // beta(t) (1 - exp(-2 B(t))).
  auto discount = -xexpm1(vp_integral(t, bmin, bmax) * -2.0);
  return xsqrt(vp_beta(t, bmin, bmax) * discount);
}
}  // namespace
double SubVPSDE::diffusion(double t) const {
  check_time(t, "SubVPSDE::diffusion");
  return subvp_diffusion(t, beta_min_, beta_max_);
}
torch::Tensor SubVPSDE::diffusion(const torch::Tensor& t) const {
  check_time(t, "SubVPSDE::diffusion");
  return subvp_diffusion(t, beta_min_, beta_max_);
}
double SubVPSDE::mean_coeff(double t) const {
  check_time(t, "SubVPSDE::mean_coeff");
  return vp_mean(t, beta_min_, beta_max_);
}
torch::Tensor SubVPSDE::mean_coeff(const torch::Tensor& t) const {
  check_time(t, "SubVPSDE::mean_coeff");
  return vp_mean(t, beta_min_, beta_max_);
}
double SubVPSDE::std(double t) const {
  check_time(t, "SubVPSDE::std");
  return one_minus_exp_neg_integral(t, beta_min_, beta_max_);
}
torch::Tensor SubVPSDE::std(const torch::Tensor& t) const {
  check_time(t, "SubVPSDE::std");
  return one_minus_exp_neg_integral(t, beta_min_, beta_max_);
}

// ---- VE (sigma^t) --------------------------------------------------------

VESDE::VESDE(double sigma) : sigma_(sigma), log_sigma_(std::log(sigma)) {
  TORCH_CHECK(
      std::isfinite(sigma) && sigma > 1.0,
      "VESDE: sigma must be > 1, got ",
      sigma);
}

namespace {
// s(t)^2 = (sigma^{2t} - 1) / (2 ln sigma), via expm1 for small t.
template <class T>
T ve_var(const T& t, double log_sigma) {
  return xexpm1(t * (2.0 * log_sigma)) * (0.5 / log_sigma);
}
}  // namespace

double VESDE::drift_coeff(double t) const {
  check_time(t, "VESDE::drift_coeff");
  return xzero_like(t);
}
torch::Tensor VESDE::drift_coeff(const torch::Tensor& t) const {
  check_time(t, "VESDE::drift_coeff");
  return xzero_like(t);
}
double VESDE::diffusion(double t) const {
  check_time(t, "VESDE::diffusion");
  return std::exp(t * log_sigma_);
}
torch::Tensor VESDE::diffusion(const torch::Tensor& t) const {
  check_time(t, "VESDE::diffusion");
  return (t * log_sigma_).exp();
}
double VESDE::mean_coeff(double t) const {
  check_time(t, "VESDE::mean_coeff");
  return xone_like(t);
}
torch::Tensor VESDE::mean_coeff(const torch::Tensor& t) const {
  check_time(t, "VESDE::mean_coeff");
  return xone_like(t);
}
double VESDE::std(double t) const {
  check_time(t, "VESDE::std");
  return std::sqrt(ve_var(t, log_sigma_));
}
torch::Tensor VESDE::std(const torch::Tensor& t) const {
  check_time(t, "VESDE::std");
  return ve_var(t, log_sigma_).sqrt();
}
double VESDE::prior_std() const {
  return std::sqrt(ve_var(1.0, log_sigma_));
}
DiscreteStep VESDE::discretize(double t, double dt) const {
  check_time(t, "VESDE::discretize");
  TORCH_CHECK(dt > 0.0, "VESDE::discretize: dt must be > 0, got ", dt);
  const double t1 = std::min(t + dt, 1.0);
  const double g2 = ve_var(t1, log_sigma_) - ve_var(t, log_sigma_);
  return {0.0, std::sqrt(std::max(g2, 0.0))};
}

}  // namespace sbgm
