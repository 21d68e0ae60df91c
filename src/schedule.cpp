#include "sbgm/schedule.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <mutex>
#include <sstream>

#include "internal.h"
#include "sbgm/random.h"
#include "sbgm/warnings.h"

namespace sbgm {

std::atomic<bool>& detail::prior_warning_issued() {
  static std::atomic<bool> issued{false};
  return issued;
}

std::string to_string(ScheduleKind kind) {
  switch (kind) {
    case ScheduleKind::Linear:
      return "linear";
    case ScheduleKind::Sigmoid:
      return "sigmoid";
    case ScheduleKind::Cosine:
      return "cosine";
    case ScheduleKind::Custom:
      return "custom";
  }
  return "unknown";
}

struct Schedule::Tables {
  torch::Tensor betas, alphas, alphas_cumprod, alphas_cumprod_prev,
      sqrt_alphas_cumprod, sqrt_one_minus_alphas_cumprod, sqrt_recip_alphas,
      posterior_variance, posterior_log_variance_clipped, posterior_mean_coef1,
      posterior_mean_coef2;

  Tables to(torch::Device device) const {
    Tables r;
    auto mv = [&](const torch::Tensor& x) { return x.to(device); };
    r.betas = mv(betas);
    r.alphas = mv(alphas);
    r.alphas_cumprod = mv(alphas_cumprod);
    r.alphas_cumprod_prev = mv(alphas_cumprod_prev);
    r.sqrt_alphas_cumprod = mv(sqrt_alphas_cumprod);
    r.sqrt_one_minus_alphas_cumprod = mv(sqrt_one_minus_alphas_cumprod);
    r.sqrt_recip_alphas = mv(sqrt_recip_alphas);
    r.posterior_variance = mv(posterior_variance);
    r.posterior_log_variance_clipped = mv(posterior_log_variance_clipped);
    r.posterior_mean_coef1 = mv(posterior_mean_coef1);
    r.posterior_mean_coef2 = mv(posterior_mean_coef2);
    return r;
  }
};

struct Schedule::HostTables {
  std::vector<double> betas, alphas_cumprod, posterior_variance;
};

namespace {

void check_num_timesteps(int64_t T, const char* where) {
  TORCH_CHECK(T >= 1, where, ": num_timesteps must be at least 1, got ", T);
}

void check_beta_range(double start, double end, const char* where) {
  TORCH_CHECK(
      std::isfinite(start) && start > 0.0 && start < 1.0,
      where,
      ": beta_start must lie in (0, 1), got ",
      start);
  TORCH_CHECK(
      std::isfinite(end) && end > 0.0 && end < 1.0,
      where,
      ": beta_end must lie in (0, 1), got ",
      end);
}

std::vector<double> to_vector(const torch::Tensor& t) {
  auto c = t.to(torch::kCPU, torch::kDouble).contiguous();
  return std::vector<double>(
      c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

}  // namespace

Schedule::Schedule(
    ScheduleKind kind,
    const torch::Tensor& betas_in,
    double beta_start,
    double beta_end)
    : kind_(kind), beta_start_(beta_start), beta_end_(beta_end) {
  auto betas = betas_in.to(torch::kCPU, torch::kDouble).contiguous();
  const int64_t T = betas.numel();
  check_num_timesteps(T, "Schedule");
  {
    const double* b = betas.data_ptr<double>();
    for (int64_t i = 0; i < T; ++i) {
      TORCH_CHECK(
          std::isfinite(b[i]) && b[i] > 0.0 && b[i] < 1.0,
          "Schedule: betas must lie in (0, 1), but beta[",
          i,
          "] = ",
          b[i]);
    }
  }
  Tables tb;
  tb.betas = betas;
  tb.alphas = 1.0 - betas;
  tb.alphas_cumprod = torch::cumprod(tb.alphas, 0);
  tb.alphas_cumprod_prev = torch::cat(
      {torch::ones({1}, betas.options()),
       tb.alphas_cumprod.slice(0, 0, T - 1)});
  tb.sqrt_alphas_cumprod = tb.alphas_cumprod.sqrt();
  tb.sqrt_one_minus_alphas_cumprod = (1.0 - tb.alphas_cumprod).sqrt();
  tb.sqrt_recip_alphas = tb.alphas.rsqrt();
  auto one_minus_ab = 1.0 - tb.alphas_cumprod;
  tb.posterior_variance = betas * (1.0 - tb.alphas_cumprod_prev) / one_minus_ab;
  // beta~_0 = 0, so its log is clipped to the next value (beta_0 if T = 1).
  auto first =
      T > 1 ? tb.posterior_variance.slice(0, 1, 2) : betas.slice(0, 0, 1);
  tb.posterior_log_variance_clipped =
      torch::cat({first, tb.posterior_variance.slice(0, 1, T)}).log();
  tb.posterior_mean_coef1 =
      betas * tb.alphas_cumprod_prev.sqrt() / one_minus_ab;
  tb.posterior_mean_coef2 =
      (1.0 - tb.alphas_cumprod_prev) * tb.alphas.sqrt() / one_minus_ab;

  HostTables h;
  h.betas = to_vector(tb.betas);
  h.alphas_cumprod = to_vector(tb.alphas_cumprod);
  h.posterior_variance = to_vector(tb.posterior_variance);
  tables_ = std::make_shared<const Tables>(std::move(tb));
  host_ = std::make_shared<const HostTables>(std::move(h));

  if (!reaches_prior()) {
    if (!detail::prior_warning_issued().exchange(true)) {
      std::ostringstream msg;
      msg << "this " << to_string(kind_) << " schedule (T = " << T
          << ") ends at alpha_bar_T = " << terminal_alpha_bar() << " (SNR "
          << terminal_snr() << "), so x_T keeps sqrt(alpha_bar_T) = "
          << std::sqrt(terminal_alpha_bar())
          << " of the data and is far from N(0, I). Samplers start from "
             "N(0, I), off the distribution the network saw in training. "
             "Use more timesteps, larger betas or the cosine schedule. "
             "(Warned once; sbgm::set_warning_handler routes or silences "
             "warnings.)";
      warn(msg.str());
    }
  }
}

Schedule Schedule::linear(int64_t T, double beta_start, double beta_end) {
  check_num_timesteps(T, "Schedule::linear");
  check_beta_range(beta_start, beta_end, "Schedule::linear");
  auto betas = torch::linspace(beta_start, beta_end, T, torch::kDouble);
  return Schedule(ScheduleKind::Linear, betas, beta_start, beta_end);
}

Schedule Schedule::sigmoid(int64_t T, double beta_start, double beta_end) {
  check_num_timesteps(T, "Schedule::sigmoid");
  check_beta_range(beta_start, beta_end, "Schedule::sigmoid");
  auto betas = torch::sigmoid(torch::linspace(-6.0, 6.0, T, torch::kDouble)) *
                   (beta_end - beta_start) +
               beta_start;
  return Schedule(ScheduleKind::Sigmoid, betas, beta_start, beta_end);
}

Schedule Schedule::cosine(int64_t T, double s, double max_beta) {
  check_num_timesteps(T, "Schedule::cosine");
  TORCH_CHECK(
      std::isfinite(s) && s >= 0.0,
      "Schedule::cosine: offset s must be >= 0, got ",
      s);
  TORCH_CHECK(
      std::isfinite(max_beta) && max_beta > 0.0 && max_beta < 1.0,
      "Schedule::cosine: max_beta must lie in (0, 1), got ",
      max_beta);
  auto f = [&](double t) {
    const double c =
        std::cos((t / static_cast<double>(T) + s) / (1.0 + s) * M_PI / 2.0);
    return c * c;
  };
  std::vector<double> betas(static_cast<size_t>(T));
  for (int64_t i = 0; i < T; ++i) {
    // alpha_bar(t) = f(t) / f(0); beta_t = 1 - alpha_bar(t+1) / alpha_bar(t).
    const double b =
        1.0 - f(static_cast<double>(i + 1)) / f(static_cast<double>(i));
    betas[static_cast<size_t>(i)] = std::min(b, max_beta);
  }
  auto bt = torch::tensor(betas, torch::kDouble);
  return Schedule(ScheduleKind::Cosine, bt, betas.front(), betas.back());
}

Schedule Schedule::from_betas(const torch::Tensor& betas) {
  TORCH_CHECK(betas.defined(), "Schedule::from_betas: betas is undefined");
  TORCH_CHECK(
      betas.dim() == 1,
      "Schedule::from_betas: betas must be 1-dim, got shape ",
      detail::shape_str(betas));
  TORCH_CHECK(
      betas.is_floating_point(),
      "Schedule::from_betas: betas must be floating point, got dtype ",
      betas.scalar_type());
  check_num_timesteps(betas.numel(), "Schedule::from_betas");
  auto b = betas.to(torch::kCPU, torch::kDouble).contiguous();
  const double first = b[0].item<double>();
  const double last = b[-1].item<double>();
  return Schedule(ScheduleKind::Custom, b.clone(), first, last);
}

Schedule Schedule::from_betas(const std::vector<double>& betas) {
  check_num_timesteps(
      static_cast<int64_t>(betas.size()), "Schedule::from_betas");
  return from_betas(torch::tensor(betas, torch::kDouble));
}

int64_t Schedule::num_timesteps() const {
  return static_cast<int64_t>(host_->betas.size());
}
ScheduleKind Schedule::kind() const {
  return kind_;
}
double Schedule::beta_start() const {
  return beta_start_;
}
double Schedule::beta_end() const {
  return beta_end_;
}
torch::Device Schedule::device() const {
  return tables_->betas.device();
}

Schedule Schedule::to(torch::Device device) const {
  check_device(device, "Schedule::to");
  Schedule r = *this;
  if (device != this->device()) {
    r.tables_ = std::make_shared<const Tables>(tables_->to(device));
  }
  return r;
}

const torch::Tensor& Schedule::betas() const {
  return tables_->betas;
}
const torch::Tensor& Schedule::alphas() const {
  return tables_->alphas;
}
const torch::Tensor& Schedule::alphas_cumprod() const {
  return tables_->alphas_cumprod;
}
const torch::Tensor& Schedule::alphas_cumprod_prev() const {
  return tables_->alphas_cumprod_prev;
}
const torch::Tensor& Schedule::sqrt_alphas_cumprod() const {
  return tables_->sqrt_alphas_cumprod;
}
const torch::Tensor& Schedule::sqrt_one_minus_alphas_cumprod() const {
  return tables_->sqrt_one_minus_alphas_cumprod;
}
const torch::Tensor& Schedule::sqrt_recip_alphas() const {
  return tables_->sqrt_recip_alphas;
}
const torch::Tensor& Schedule::posterior_variance() const {
  return tables_->posterior_variance;
}
const torch::Tensor& Schedule::posterior_log_variance_clipped() const {
  return tables_->posterior_log_variance_clipped;
}
const torch::Tensor& Schedule::posterior_mean_coef1() const {
  return tables_->posterior_mean_coef1;
}
const torch::Tensor& Schedule::posterior_mean_coef2() const {
  return tables_->posterior_mean_coef2;
}

void Schedule::check_host_t(int64_t t) const {
  TORCH_CHECK(
      t >= 0 && t < num_timesteps(),
      "Schedule: timestep ",
      t,
      " is outside [0, ",
      num_timesteps(),
      ")");
}

double Schedule::beta(int64_t t) const {
  check_host_t(t);
  return host_->betas[static_cast<size_t>(t)];
}
double Schedule::alpha(int64_t t) const {
  return 1.0 - beta(t);
}
double Schedule::alpha_bar(int64_t t) const {
  check_host_t(t);
  return host_->alphas_cumprod[static_cast<size_t>(t)];
}
double Schedule::alpha_bar_prev(int64_t t) const {
  check_host_t(t);
  return t == 0 ? 1.0 : host_->alphas_cumprod[static_cast<size_t>(t - 1)];
}
double Schedule::posterior_variance(int64_t t) const {
  check_host_t(t);
  return host_->posterior_variance[static_cast<size_t>(t)];
}

double Schedule::terminal_alpha_bar() const {
  return host_->alphas_cumprod.back();
}
double Schedule::terminal_snr() const {
  const double ab = terminal_alpha_bar();
  return ab / (1.0 - ab);
}
bool Schedule::reaches_prior(double tol) const {
  return terminal_alpha_bar() <= tol;
}

void Schedule::check_t(const torch::Tensor& t) const {
  double lo = 0, hi = 0;
  if (detail::host_minmax(t, &lo, &hi)) {
    TORCH_CHECK(
        lo >= 0 && hi < static_cast<double>(num_timesteps()),
        "Schedule: timesteps must lie in [0, ",
        num_timesteps(),
        "), got values in [",
        static_cast<int64_t>(lo),
        ", ",
        static_cast<int64_t>(hi),
        "]");
  }
}

torch::Tensor Schedule::extract(
    const torch::Tensor& table,
    const torch::Tensor& t,
    const torch::Tensor& like) const {
  detail::check_floating(like, "x", "Schedule::extract");
  detail::check_time_tensor(t, like, /*integer=*/true, "Schedule::extract");
  TORCH_CHECK(
      table.dim() == 1 && table.size(0) == num_timesteps(),
      "Schedule::extract: table must have shape [",
      num_timesteps(),
      "], got ",
      detail::shape_str(table));
  check_t(t);
  auto tab = table.device() == like.device() ? table : table.to(like.device());
  auto vals = tab.index_select(0, t.reshape({-1}).to(torch::kLong))
                  .to(like.scalar_type());
  if (t.dim() == 0) {
    return vals.reshape({});
  }
  return detail::batch_view(vals, like);
}

torch::Tensor Schedule::q_sample(
    const torch::Tensor& x0,
    const torch::Tensor& t,
    const torch::Tensor& noise) const {
  detail::check_floating(x0, "x0", "Schedule::q_sample");
  TORCH_CHECK(
      noise.defined() && noise.sizes() == x0.sizes(),
      "Schedule::q_sample: noise has shape ",
      noise.defined() ? detail::shape_str(noise) : std::string("(undefined)"),
      " but x0 has shape ",
      detail::shape_str(x0));
  detail::check_same_device(noise, "noise", x0, "x0", "Schedule::q_sample");
  auto a = extract(sqrt_alphas_cumprod(), t, x0);
  auto s = extract(sqrt_one_minus_alphas_cumprod(), t, x0);
  return torch::addcmul(a * x0, s, noise);
}

torch::Tensor Schedule::posterior_mean(
    const torch::Tensor& x0,
    const torch::Tensor& xt,
    const torch::Tensor& t) const {
  detail::check_floating(x0, "x0", "Schedule::posterior_mean");
  TORCH_CHECK(
      xt.defined() && xt.sizes() == x0.sizes(),
      "Schedule::posterior_mean: x_t has shape ",
      xt.defined() ? detail::shape_str(xt) : std::string("(undefined)"),
      " but x0 has shape ",
      detail::shape_str(x0));
  auto c1 = extract(posterior_mean_coef1(), t, x0);
  auto c2 = extract(posterior_mean_coef2(), t, x0);
  return c1 * x0 + c2 * xt;
}

Schedule Schedule::rescale_zero_terminal_snr(double terminal_alpha_bar) const {
  const char* where = "Schedule::rescale_zero_terminal_snr";
  const int64_t T = num_timesteps();
  TORCH_CHECK(T >= 2, where, ": needs at least 2 timesteps, got ", T);
  TORCH_CHECK(
      std::isfinite(terminal_alpha_bar) && terminal_alpha_bar > 0 &&
          terminal_alpha_bar < 1,
      where,
      ": terminal_alpha_bar must lie in (0, 1), got ",
      terminal_alpha_bar);
  const auto& ab = host_->alphas_cumprod;
  const double s0 = std::sqrt(ab.front());
  const double sT = std::sqrt(ab.back());
  std::vector<double> abar(static_cast<size_t>(T));
  for (int64_t i = 0; i < T; ++i) {
    const double s = (std::sqrt(ab[i]) - sT) * s0 / (s0 - sT);
    abar[i] = s * s;
  }
  // At most half the step before, so that alpha_bar keeps decreasing.
  abar.back() = std::min(terminal_alpha_bar, 0.5 * abar[T - 2]);
  std::vector<double> betas(static_cast<size_t>(T));
  for (int64_t i = 0; i < T; ++i) {
    betas[i] = 1.0 - abar[i] / (i == 0 ? 1.0 : abar[i - 1]);
  }
  return Schedule(
      ScheduleKind::Custom,
      torch::tensor(betas, torch::kDouble),
      betas.front(),
      betas.back());
}

// ---- DiscreteProcess --------------------------------------------------------

struct DiscreteProcess::DeviceTables {
  std::mutex mutex;
  std::map<std::string, torch::Tensor> lambdas;
};

DiscreteProcess::DiscreteProcess(
    Schedule schedule, const DiscreteProcessOptions& options)
    : schedule_(std::move(schedule)),
      options_(options),
      device_tables_(std::make_shared<DeviceTables>()) {
  const int64_t T = schedule_.num_timesteps();
  lambdas_.resize(static_cast<size_t>(T));
  for (int64_t i = 0; i < T; ++i) {
    const double ab = schedule_.alpha_bar(i);
    lambdas_[i] = 0.5 * (std::log(ab) - std::log1p(-ab));
  }
}

int64_t DiscreteProcess::num_timesteps() const {
  return schedule_.num_timesteps();
}

int64_t DiscreteProcess::num_model_steps() const {
  return schedule_.num_timesteps();
}

std::string DiscreteProcess::describe() const {
  std::ostringstream os;
  os << "discrete(" << to_string(schedule_.kind())
     << ", T=" << schedule_.num_timesteps() << ")";
  return os.str();
}

double DiscreteProcess::t_max() const {
  return static_cast<double>(schedule_.num_timesteps() - 1);
}

torch::Tensor DiscreteProcess::lambda_table(torch::Device device) const {
  std::lock_guard<std::mutex> lock(device_tables_->mutex);
  auto& slot = device_tables_->lambdas[device.str()];
  if (!slot.defined()) {
    slot = torch::tensor(lambdas_, torch::kDouble).to(device);
  }
  return slot;
}

double DiscreteProcess::lambda_impl(double t) const {
  const auto T = static_cast<int64_t>(lambdas_.size());
  const int64_t lo =
      std::min<int64_t>(static_cast<int64_t>(t), std::max<int64_t>(T - 2, 0));
  const int64_t hi = std::min<int64_t>(lo + 1, T - 1);
  const double frac = t - static_cast<double>(lo);
  if (frac == 0.0) {
    return lambdas_[lo];
  }
  return lambdas_[lo] + frac * (lambdas_[hi] - lambdas_[lo]);
}

torch::Tensor DiscreteProcess::lambda_impl(const torch::Tensor& t) const {
  const auto T = static_cast<int64_t>(lambdas_.size());
  auto td = t.to(torch::kDouble);
  auto table = lambda_table(td.device());
  auto lo =
      td.floor().clamp(0, static_cast<double>(std::max<int64_t>(T - 2, 0)));
  auto frac = td - lo;
  auto ilo = lo.to(torch::kLong);
  auto ihi = (ilo + 1).clamp_max(T - 1);
  auto flat = [&](const torch::Tensor& i) {
    return table.index_select(0, i.reshape({-1})).view(i.sizes());
  };
  auto llo = flat(ilo);
  return llo + frac * (flat(ihi) - llo);
}

// alpha^2 = sigmoid(2 lambda); exact table values at the steps.
double DiscreteProcess::alpha_impl(double t) const {
  if (t == std::floor(t) && t >= 0 && t <= t_max()) {
    return std::sqrt(schedule_.alpha_bar(static_cast<int64_t>(t)));
  }
  const double l = lambda_impl(t);
  return std::sqrt(1.0 / (1.0 + std::exp(-2.0 * l)));
}

torch::Tensor DiscreteProcess::alpha_impl(const torch::Tensor& t) const {
  return torch::sigmoid(lambda_impl(t) * 2.0).sqrt();
}

double DiscreteProcess::sigma_impl(double t) const {
  if (t == std::floor(t) && t >= 0 && t <= t_max()) {
    return std::sqrt(1.0 - schedule_.alpha_bar(static_cast<int64_t>(t)));
  }
  const double l = lambda_impl(t);
  return std::sqrt(1.0 / (1.0 + std::exp(2.0 * l)));
}

torch::Tensor DiscreteProcess::sigma_impl(const torch::Tensor& t) const {
  return torch::sigmoid(lambda_impl(t) * -2.0).sqrt();
}

double DiscreteProcess::t_of_lambda_impl(double lam) const {
  const auto T = static_cast<int64_t>(lambdas_.size());
  if (lam >= lambdas_.front()) {
    return 0.0;
  }
  if (lam <= lambdas_.back()) {
    return t_max();
  }
  // lambda decreases with the step: the segment [i, i + 1] holding lam.
  auto it = std::lower_bound(
      lambdas_.begin(), lambdas_.end(), lam, [](double a, double b) {
        return a > b;
      });
  const int64_t hi = std::clamp<int64_t>(it - lambdas_.begin(), 1, T - 1);
  const int64_t lo = hi - 1;
  return static_cast<double>(lo) +
         (lambdas_[lo] - lam) / (lambdas_[lo] - lambdas_[hi]);
}

// The slope of lambda on the segment that ends at t (the first segment at
// t = 0), the one a step down from t crosses.
double DiscreteProcess::segment_slope(double t) const {
  const auto T = static_cast<int64_t>(lambdas_.size());
  if (T < 2) {
    return 0.0;
  }
  const int64_t hi =
      std::clamp<int64_t>(static_cast<int64_t>(std::ceil(t)), 1, T - 1);
  return lambdas_[hi] - lambdas_[hi - 1];
}

double DiscreteProcess::drift_coeff_impl(double t) const {
  const double s = sigma_impl(t);
  return segment_slope(t) * s * s;
}

double DiscreteProcess::diffusion_sq_impl(double t) const {
  const double s = sigma_impl(t);
  return -2.0 * segment_slope(t) * s * s;
}

double DiscreteProcess::model_time(double t) const {
  return options_.quantize() ? std::round(t) : t;
}

torch::Tensor DiscreteProcess::model_time(
    const torch::Tensor& t, torch::ScalarType dtype) const {
  if (!options_.quantize()) {
    return t.to(dtype);
  }
  return t.is_floating_point() ? t.round().to(torch::kLong)
                               : t.to(torch::kLong);
}

}  // namespace sbgm
