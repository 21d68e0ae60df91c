#include "sbgm/processes/discrete.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>

namespace sbgm {

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

std::shared_ptr<NoiseProcess> DiscreteProcess::from_config(const Config& c) {
  const auto schedule = c.contains("schedule")
                            ? Schedule::from_config(c.at("schedule"))
                            : Schedule::linear();
  return std::make_shared<DiscreteProcess>(
      schedule, DiscreteProcessOptions().quantize(c.value("quantize", true)));
}
Config DiscreteProcess::config() const {
  return {
      {"name", "discrete"},
      {"schedule", schedule_.config()},
      {"quantize", options_.quantize()}};
}

}  // namespace sbgm
