#include "sbgm/samplers/ancestral.h"

#include <c10/core/InferenceMode.h>

#include <cmath>

#include "loop.h"
#include "sbgm/schedule.h"

namespace sbgm::samplers {

namespace {

/// The model's output as eps at discrete step t.
torch::Tensor eps_at(
    const Model& model,
    const torch::Tensor& x,
    const torch::Tensor& t,
    double alpha_bar) {
  auto out = model(x, t);
  if (model.prediction() == Prediction::Epsilon) {
    return out;
  }
  return convert_prediction(
      out,
      model.prediction(),
      Prediction::Epsilon,
      x,
      std::sqrt(alpha_bar),
      std::sqrt(1.0 - alpha_bar));
}

void check_clip(bool clip, double range, const char* where) {
  TORCH_CHECK(
      !clip || (range > 0 && std::isfinite(range)),
      where,
      ": clip_range must be finite and > 0, got ",
      range);
}

}  // namespace

SampleResult ddpm(
    const Model& model,
    const Schedule& schedule,
    torch::IntArrayRef shape,
    const DDPMOptions& options,
    const CommonOptions& common) {
  const char* where = "ddpm";
  check_clip(options.clip_x0(), options.clip_range(), where);
  c10::InferenceMode guard;
  auto x = detail::initial_state(shape, 1.0, common, where);
  const int64_t T = schedule.num_timesteps();
  detail::Loop loop(common, T, where);
  loop.start(x);
  auto t = torch::empty({x.size(0)}, x.options().dtype(torch::kLong));
  for (int64_t i = T - 1, step = 1; i >= 0; --i, ++step) {
    t.fill_(i);
    const double beta = schedule.beta(i);
    const double alpha = schedule.alpha(i);
    const double ab = schedule.alpha_bar(i);
    const double ab_prev = schedule.alpha_bar_prev(i);
    auto eps = eps_at(model, x, t, ab);
    if (options.clip_x0()) {
      auto x0 = (x - std::sqrt(1.0 - ab) * eps) / std::sqrt(ab);
      x0.clamp_(-options.clip_range(), options.clip_range());
      const double c1 = beta * std::sqrt(ab_prev) / (1.0 - ab);
      const double c2 = (1.0 - ab_prev) * std::sqrt(alpha) / (1.0 - ab);
      x.mul_(c2).add_(x0, c1);
    } else {
      x.add_(eps, -beta / std::sqrt(1.0 - ab)).mul_(1.0 / std::sqrt(alpha));
    }
    if (i > 0) {
      const double var = options.variance() == DDPMVariance::Beta
                             ? beta
                             : schedule.posterior_variance(i);
      x.add_(detail::noise_like(x, common.generator()), std::sqrt(var));
    }
    loop.step(step, x);
  }
  return loop.finish(x, T);
}

std::vector<int64_t> ddim_timesteps(int64_t num_timesteps, int64_t num_steps) {
  TORCH_CHECK(
      num_timesteps >= 1,
      "ddim_timesteps: num_timesteps must be >= 1, got ",
      num_timesteps);
  TORCH_CHECK(
      num_steps >= 1 && num_steps <= num_timesteps,
      "ddim_timesteps: num_steps must lie in [1, T] = [1, ",
      num_timesteps,
      "], got ",
      num_steps);
  if (num_steps == 1) {
    return {num_timesteps - 1};
  }
  std::vector<int64_t> tau(static_cast<size_t>(num_steps));
  const int64_t span = num_timesteps - 1;
  const int64_t div = num_steps - 1;
  for (int64_t i = 0; i < num_steps; ++i) {
    // round(i * span / div), halves up, in integers.
    tau[static_cast<size_t>(i)] = (2 * i * span + div) / (2 * div);
  }
  return tau;
}

SampleResult ddim(
    const Model& model,
    const Schedule& schedule,
    torch::IntArrayRef shape,
    const DDIMOptions& options,
    const CommonOptions& common) {
  const char* where = "ddim";
  TORCH_CHECK(
      options.eta() >= 0 && std::isfinite(options.eta()),
      where,
      ": eta must be finite and >= 0, got ",
      options.eta());
  check_clip(options.clip_x0(), options.clip_range(), where);
  const auto tau =
      ddim_timesteps(schedule.num_timesteps(), options.num_steps());
  c10::InferenceMode guard;
  auto x = detail::initial_state(shape, 1.0, common, where);
  const int64_t S = options.num_steps();
  detail::Loop loop(common, S, where);
  loop.start(x);
  auto t = torch::empty({x.size(0)}, x.options().dtype(torch::kLong));
  for (int64_t j = S - 1, step = 1; j >= 0; --j, ++step) {
    const int64_t ti = tau[static_cast<size_t>(j)];
    const double a_t = schedule.alpha_bar(ti);
    const double a_p =
        j > 0 ? schedule.alpha_bar(tau[static_cast<size_t>(j - 1)]) : 1.0;
    t.fill_(ti);
    auto eps = eps_at(model, x, t, a_t);
    // x0 in place of x.
    x.add_(eps, -std::sqrt(1.0 - a_t)).mul_(1.0 / std::sqrt(a_t));
    if (options.clip_x0()) {
      x.clamp_(-options.clip_range(), options.clip_range());
    }
    const double sigma = options.eta() * std::sqrt((1.0 - a_p) / (1.0 - a_t)) *
                         std::sqrt(1.0 - a_t / a_p);
    const double dir = std::sqrt(std::max(1.0 - a_p - sigma * sigma, 0.0));
    x.mul_(std::sqrt(a_p)).add_(eps, dir);
    if (sigma > 0) {
      x.add_(detail::noise_like(x, common.generator()), sigma);
    }
    loop.step(step, x);
  }
  return loop.finish(x, S);
}

}  // namespace sbgm::samplers
