#include "sbgm/samplers/ancestral.h"

#include <c10/core/InferenceMode.h>

#include <cmath>

#include "affine.h"
#include "loop.h"
#include "sbgm/schedule.h"

namespace sbgm::samplers {

namespace {

void check_clip(bool clip, double range, const char* where) {
  TORCH_CHECK(
      !clip || (range > 0 && std::isfinite(range)),
      where,
      ": clip_range must be finite and > 0, got ",
      range);
}

/// Ancestral steps t = T-1 .. 0 (step i visits t = T-1-i):
/// x_{t-1} = x / sqrt(alpha) + k eps, k = -beta / (sqrt(alpha) s), or with
/// clipping coef2 x + coef1 clip(x0), plus sigma_t z (none at t = 0).
std::shared_ptr<const detail::AffineSteps> ddpm_steps(
    const Schedule& schedule,
    const DDPMOptions& options,
    Prediction p,
    const char* where) {
  check_clip(options.clip_x0(), options.clip_range(), where);
  const int64_t T = schedule.num_timesteps();
  auto st = std::make_shared<detail::AffineSteps>(static_cast<size_t>(T));
  st->discrete = true;
  st->clip = options.clip_x0();
  st->clip_range = options.clip_range();
  for (int64_t t = 0; t < T; ++t) {
    const auto i = static_cast<size_t>(T - 1 - t);
    const double beta = schedule.beta(t);
    const double alpha = schedule.alpha(t);
    const double ab = schedule.alpha_bar(t);
    const double ab_prev = schedule.alpha_bar_prev(t);
    const double m = std::sqrt(ab);
    const double s = std::sqrt(1.0 - ab);
    const double ra = 1.0 / std::sqrt(alpha);
    st->t[i] = static_cast<double>(t);
    detail::fold_eps(*st, i, p, m, s, ra, -beta * ra / s);
    detail::fold_x0(*st, i, p, m, s);
    st->c1[i] = beta * std::sqrt(ab_prev) / (1.0 - ab);
    st->c2[i] = (1.0 - ab_prev) * std::sqrt(alpha) / (1.0 - ab);
    const double var = options.variance() == DDPMVariance::Beta
                           ? beta
                           : schedule.posterior_variance(t);
    st->c_noise[i] = t > 0 ? std::sqrt(var) : 0.0;
  }
  return st;
}

}  // namespace

DDPMSampler::DDPMSampler(
    Model model,
    const Schedule& schedule,
    const DDPMOptions& options,
    std::optional<torch::Generator> generator) {
  auto steps = ddpm_steps(schedule, options, model.prediction(), "DDPMSampler");
  impl_ = std::make_shared<detail::AffineStepper>(
      std::move(model), std::move(steps), std::move(generator));
}

void DDPMSampler::step(torch::Tensor& x, int64_t t) {
  TORCH_CHECK(
      t >= 0 && t < num_timesteps(),
      "DDPMSampler::step: t must lie in [0, ",
      num_timesteps(),
      "), got ",
      t);
  impl_->step(x, num_timesteps() - 1 - t);
}

int64_t DDPMSampler::num_timesteps() const {
  return impl_->steps().size();
}

SampleResult ddpm(
    const Model& model,
    const Schedule& schedule,
    torch::IntArrayRef shape,
    const DDPMOptions& options,
    const CommonOptions& common) {
  const char* where = "ddpm";
  auto steps = ddpm_steps(schedule, options, model.prediction(), where);
  c10::InferenceMode guard;
  auto x = detail::initial_state(shape, 1.0, common, where);
  return detail::run_affine(
      model, std::move(steps), std::move(x), common, where);
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
  const int64_t S = options.num_steps();
  const Prediction p = model.prediction();
  auto st = std::make_shared<detail::AffineSteps>(static_cast<size_t>(S));
  st->discrete = true;
  st->clip = options.clip_x0();
  st->clip_range = options.clip_range();
  // Step i visits tau_j, j = S-1-i, and lands on its predecessor p
  // (alpha_bar_{-1} = 1): x_p = sqrt(a_p) x0 + dir eps + sigma z with
  // x0 = (x - s eps) / m, i.e. x_p = (sqrt(a_p) / m) x + (dir - sqrt(a_p) s /
  // m) eps; with clipping, eps = (x - m clip(x0)) / s, i.e. x_p = (dir / s) x
  // + (sqrt(a_p) - dir m / s) clip(x0).
  for (int64_t j = S - 1; j >= 0; --j) {
    const auto i = static_cast<size_t>(S - 1 - j);
    const int64_t ti = tau[static_cast<size_t>(j)];
    const double a_t = schedule.alpha_bar(ti);
    const double a_p =
        j > 0 ? schedule.alpha_bar(tau[static_cast<size_t>(j - 1)]) : 1.0;
    const double m = std::sqrt(a_t);
    const double s = std::sqrt(1.0 - a_t);
    const double sp = std::sqrt(a_p);
    const double sigma = options.eta() * std::sqrt((1.0 - a_p) / (1.0 - a_t)) *
                         std::sqrt(1.0 - a_t / a_p);
    const double dir = std::sqrt(std::max(1.0 - a_p - sigma * sigma, 0.0));
    st->t[i] = static_cast<double>(ti);
    detail::fold_eps(*st, i, p, m, s, sp / m, dir - sp * s / m);
    detail::fold_x0(*st, i, p, m, s);
    st->c2[i] = dir / s;
    st->c1[i] = sp - dir * m / s;
    st->c_noise[i] = sigma;
  }
  c10::InferenceMode guard;
  auto x = detail::initial_state(shape, 1.0, common, where);
  return detail::run_affine(model, std::move(st), std::move(x), common, where);
}

}  // namespace sbgm::samplers
