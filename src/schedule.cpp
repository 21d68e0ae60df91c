#include "sbgm/schedule.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
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
  torch::Tensor betas, alphas_cumprod;

  Tables to(torch::Device device) const {
    return {betas.to(device), alphas_cumprod.to(device)};
  }
};

struct Schedule::HostTables {
  std::vector<double> betas, alphas_cumprod;
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
  tb.alphas_cumprod = torch::cumprod(1.0 - betas, 0);

  HostTables h;
  h.betas = to_vector(tb.betas);
  h.alphas_cumprod = to_vector(tb.alphas_cumprod);
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
const torch::Tensor& Schedule::alphas_cumprod() const {
  return tables_->alphas_cumprod;
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
double Schedule::alpha_bar(int64_t t) const {
  check_host_t(t);
  return host_->alphas_cumprod[static_cast<size_t>(t)];
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

Config Schedule::config() const {
  return {
      {"kind", to_string(kind_)},
      {"betas", host_->betas},
      {"beta_start", beta_start_},
      {"beta_end", beta_end_}};
}

Schedule Schedule::from_config(const Config& c) {
  TORCH_CHECK(
      c.is_object(),
      "Schedule::from_config: expected an object, got ",
      c.dump());
  const auto kind = c.value("kind", std::string("custom"));
  const std::map<std::string, ScheduleKind> kinds = {
      {"linear", ScheduleKind::Linear},
      {"sigmoid", ScheduleKind::Sigmoid},
      {"cosine", ScheduleKind::Cosine},
      {"custom", ScheduleKind::Custom}};
  auto it = kinds.find(kind);
  TORCH_CHECK(
      it != kinds.end(),
      "Schedule::from_config: unknown kind '",
      kind,
      "' (known: linear, sigmoid, cosine, custom)");
  if (c.contains("betas")) {
    const auto betas = c.at("betas").get<std::vector<double>>();
    check_num_timesteps(
        static_cast<int64_t>(betas.size()), "Schedule::from_config");
    return Schedule(
        it->second,
        torch::tensor(betas, torch::kDouble),
        c.value("beta_start", betas.front()),
        c.value("beta_end", betas.back()));
  }
  const auto T = c.value("num_timesteps", int64_t{1000});
  switch (it->second) {
    case ScheduleKind::Linear:
      return linear(T, c.value("beta_start", 1e-4), c.value("beta_end", 0.02));
    case ScheduleKind::Sigmoid:
      return sigmoid(T, c.value("beta_start", 1e-5), c.value("beta_end", 5e-3));
    case ScheduleKind::Cosine:
      return cosine(T, c.value("s", 0.008), c.value("max_beta", 0.999));
    case ScheduleKind::Custom:
      break;
  }
  TORCH_CHECK(false, "Schedule::from_config: a custom schedule needs betas");
}

}  // namespace sbgm
