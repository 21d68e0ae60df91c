#include "sbgm/process.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

#include "internal.h"
#include "sbgm/processes/discrete.h"
#include "sbgm/processes/edm.h"
#include "sbgm/processes/ve.h"
#include "sbgm/processes/vp.h"

namespace sbgm {

namespace {
using detail::kInf;
constexpr double kLog2Pi = 1.8378770664093454836;

// Applies a host function to every entry of t (float64, on t's device).
template <class F>
torch::Tensor map_host(const torch::Tensor& t, F f) {
  auto c = t.to(torch::kCPU, torch::kDouble).contiguous();
  auto out = torch::empty_like(c);
  const double* in = c.data_ptr<double>();
  double* o = out.data_ptr<double>();
  for (int64_t i = 0; i < c.numel(); ++i) {
    o[i] = f(in[i]);
  }
  return out.to(t.device());
}
}  // namespace

double ProcessPoint::lambda() const {
  if (sigma == 0.0) {
    return kInf;
  }
  return std::log(alpha) - std::log(sigma);
}

void NoiseProcess::check_time(double t, const char* where) const {
  if (t == data_time()) {
    return;
  }
  TORCH_CHECK(
      t >= t_floor() && t <= t_max(),
      where,
      ": t = ",
      t,
      " is outside the range of the ",
      describe(),
      " process, [",
      t_floor(),
      ", ",
      t_max(),
      "] (or its data time ",
      data_time(),
      ")");
}

void NoiseProcess::check_time(const torch::Tensor& t, const char* where) const {
  TORCH_CHECK(t.defined(), where, ": t is an undefined tensor");
  double lo = 0, hi = 0;
  if (detail::host_minmax(t, &lo, &hi)) {
    TORCH_CHECK(
        lo >= t_floor() && hi <= t_max(),
        where,
        ": times must lie in the range of the ",
        describe(),
        " process, [",
        t_floor(),
        ", ",
        t_max(),
        "], got values in [",
        lo,
        ", ",
        hi,
        "]");
  }
}

double NoiseProcess::alpha(double t) const {
  check_time(t, "alpha");
  return t == data_time() ? 1.0 : alpha_impl(t);
}

torch::Tensor NoiseProcess::alpha(const torch::Tensor& t) const {
  check_time(t, "alpha");
  return alpha_impl(t.to(torch::kDouble));
}

double NoiseProcess::sigma(double t) const {
  check_time(t, "sigma");
  return t == data_time() ? 0.0 : sigma_impl(t);
}

torch::Tensor NoiseProcess::sigma(const torch::Tensor& t) const {
  check_time(t, "sigma");
  return sigma_impl(t.to(torch::kDouble));
}

double NoiseProcess::lambda(double t) const {
  check_time(t, "lambda");
  return t == data_time() ? kInf : lambda_impl(t);
}

torch::Tensor NoiseProcess::lambda(const torch::Tensor& t) const {
  check_time(t, "lambda");
  return lambda_impl(t.to(torch::kDouble));
}

double NoiseProcess::t_of_lambda(double lam) const {
  TORCH_CHECK(!std::isnan(lam), describe(), ": t_of_lambda of NaN");
  return lam == kInf ? data_time() : t_of_lambda_impl(lam);
}

torch::Tensor NoiseProcess::t_of_lambda(const torch::Tensor& lam) const {
  TORCH_CHECK(lam.defined(), "t_of_lambda: lambda is an undefined tensor");
  return t_of_lambda_impl(lam.to(torch::kDouble));
}

ProcessPoint NoiseProcess::at(double t) const {
  check_time(t, "NoiseProcess::at");
  if (t == data_time()) {
    return {t, 1.0, 0.0};
  }
  return {t, alpha_impl(t), sigma_impl(t)};
}

namespace {
void check_sde_time(const NoiseProcess& p, double t, const char* where) {
  TORCH_CHECK(
      t >= p.t_floor() && t <= p.t_max(),
      where,
      ": t = ",
      t,
      " is outside the range of the ",
      p.describe(),
      " process, [",
      p.t_floor(),
      ", ",
      p.t_max(),
      "]");
}
}  // namespace

double NoiseProcess::drift_coeff(double t) const {
  check_sde_time(*this, t, "drift_coeff");
  return drift_coeff_impl(t);
}

double NoiseProcess::diffusion_sq(double t) const {
  check_sde_time(*this, t, "diffusion_sq");
  return diffusion_sq_impl(t);
}

torch::Tensor NoiseProcess::diffusion_sq(const torch::Tensor& t) const {
  check_time(t, "diffusion_sq");
  return diffusion_sq_impl(t.to(torch::kDouble));
}

// ---- defaults
// -----------------------------------------------------------------

double NoiseProcess::lambda_impl(double t) const {
  return std::log(alpha_impl(t)) - std::log(sigma_impl(t));
}

torch::Tensor NoiseProcess::lambda_impl(const torch::Tensor& t) const {
  return alpha_impl(t).log() - sigma_impl(t).log();
}

double NoiseProcess::t_of_lambda_impl(double lam) const {
  double lo = t_floor(), hi = t_max();
  if (lam >= lambda(lo)) {
    return lo;
  }
  if (lam <= lambda(hi)) {
    return hi;
  }
  // lambda decreases in t: bisect to the last representable interval.
  for (int i = 0; i < 200 && hi - lo > 1e-15 * std::max(1.0, std::abs(hi));
       ++i) {
    const double mid = 0.5 * (lo + hi);
    (lambda(mid) > lam ? lo : hi) = mid;
  }
  return 0.5 * (lo + hi);
}

torch::Tensor NoiseProcess::t_of_lambda_impl(const torch::Tensor& lam) const {
  return map_host(lam, [this](double l) { return t_of_lambda(l); });
}

namespace {
// A central (or, at the ends of the range, one-sided) difference step.
std::pair<double, double> diff_points(const NoiseProcess& p, double t) {
  const double h = 1e-5 * std::max(1.0, std::abs(t));
  const double a = std::max(p.t_floor(), t - h);
  const double b = std::min(p.t_max(), t + h);
  return {a, b};
}
}  // namespace

double NoiseProcess::drift_coeff_impl(double t) const {
  auto [a, b] = diff_points(*this, t);
  return (std::log(alpha(b)) - std::log(alpha(a))) / (b - a);
}

double NoiseProcess::diffusion_sq_impl(double t) const {
  auto [a, b] = diff_points(*this, t);
  const double s = sigma(t);
  return -2.0 * s * s * (lambda(b) - lambda(a)) / (b - a);
}

torch::Tensor NoiseProcess::diffusion_sq_impl(const torch::Tensor& t) const {
  return map_host(t, [this](double v) { return diffusion_sq_impl(v); });
}

torch::Tensor NoiseProcess::prior_log_prob(const torch::Tensor& z) const {
  detail::check_floating(z, "z", "prior_log_prob");
  TORCH_CHECK(
      z.dim() >= 1 && z.numel() > 0,
      "prior_log_prob: z must have shape [N, ...], got ",
      detail::shape_str(z));
  const double s = prior_std();
  auto flat = z.reshape({z.size(0), -1});
  const double d = static_cast<double>(flat.size(1));
  return -0.5 * flat.square().sum(1) / (s * s) -
         0.5 * d * (kLog2Pi + 2.0 * std::log(s));
}

torch::Tensor NoiseProcess::model_time(
    const torch::Tensor& t, torch::ScalarType dtype) const {
  return t.to(dtype);
}

torch::Tensor NoiseProcess::perturb(
    const torch::Tensor& x0,
    const torch::Tensor& t,
    const torch::Tensor& noise) const {
  const char* where = "NoiseProcess::perturb";
  detail::check_floating(x0, "x0", where);
  detail::check_floating(t, "t", where);
  TORCH_CHECK(
      noise.defined() && noise.sizes() == x0.sizes(),
      where,
      ": noise has shape ",
      noise.defined() ? detail::shape_str(noise) : std::string("(undefined)"),
      " but x0 has shape ",
      detail::shape_str(x0));
  detail::check_time_tensor(t, x0, /*integer=*/false, where);
  check_time(t, where);
  auto a = detail::batch_view(alpha(t).to(x0.scalar_type()), x0);
  auto s = detail::batch_view(sigma(t).to(x0.scalar_type()), x0);
  return torch::addcmul(a * x0, s, noise);
}

Config NoiseProcess::config() const {
  TORCH_CHECK(
      false,
      "the process ",
      describe(),
      " has no config(): override NoiseProcess::config() (and register the "
      "process) to save it or build it by name");
}

Registry<std::shared_ptr<NoiseProcess>>& process_registry() {
  // Built on first use (no static-initialization order to depend on); one
  // line per built-in process.
  static auto* registry = [] {
    auto* r = new Registry<std::shared_ptr<NoiseProcess>>("process");
    r->add("vp", &VPSDE::from_config, "variance-preserving SDE");
    r->add("subvp", &SubVPSDE::from_config, "sub-VP SDE");
    r->add("ve", &VESDE::from_config, "variance-exploding SDE, sigma^t form");
    r->add(
        "ve_geometric",
        &GeometricVESDE::from_config,
        "variance-exploding SDE, sigma_min (sigma_max / sigma_min)^t");
    r->add("edm", &EDMProcess::from_config, "EDM: alpha = 1, sigma = t");
    r->add(
        "discrete", &DiscreteProcess::from_config, "a DDPM schedule's steps");
    return r;
  }();
  return *registry;
}

std::shared_ptr<NoiseProcess> process_from_config(const Config& config) {
  TORCH_CHECK(
      config.is_object() && config.contains("name") &&
          config.at("name").is_string(),
      "process_from_config: the config must be an object with a string "
      "\"name\", got ",
      config.dump());
  const auto name = config.at("name").get<std::string>();
  std::shared_ptr<NoiseProcess> p;
  try {
    p = process_registry().create(name, config);
  } catch (const nlohmann::json::exception& e) {
    TORCH_CHECK(
        false,
        "process_from_config: invalid config for process '",
        name,
        "': ",
        config.dump(),
        " (",
        e.what(),
        ")");
  }
  TORCH_CHECK(
      p != nullptr,
      "process_from_config: the factory of '",
      name,
      "' returned null");
  return p;
}

}  // namespace sbgm
