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

DDPMSampler::DDPMSampler(
    Model model,
    const Schedule& schedule,
    const DDPMOptions& options,
    std::optional<torch::Generator> generator)
    : model_(std::move(model)),
      options_(options),
      generator_(std::move(generator)) {
  check_clip(options.clip_x0(), options.clip_range(), "DDPMSampler");
  const int64_t T = schedule.num_timesteps();
  const auto n = static_cast<size_t>(T);
  for (auto* v : {&c_x_, &c_out_, &sigma_, &x0_x_, &x0_out_, &c1_, &c2_}) {
    v->resize(n);
  }
  const Prediction p = model_.prediction();
  for (int64_t t = 0; t < T; ++t) {
    const auto i = static_cast<size_t>(t);
    const double beta = schedule.beta(t);
    const double alpha = schedule.alpha(t);
    const double ab = schedule.alpha_bar(t);
    const double ab_prev = schedule.alpha_bar_prev(t);
    const double m = std::sqrt(ab);
    const double s = std::sqrt(1.0 - ab);
    // x_{t-1} = x / sqrt(alpha) + k eps, k = -beta / (sqrt(alpha) s), with
    // eps = out (Epsilon), -s out (Score) or (x - m out) / s (X0).
    const double ra = 1.0 / std::sqrt(alpha);
    const double k = -beta * ra / s;
    switch (p) {
      case Prediction::Epsilon:
        c_x_[i] = ra;
        c_out_[i] = k;
        x0_x_[i] = 1.0 / m;
        x0_out_[i] = -s / m;
        break;
      case Prediction::Score:
        c_x_[i] = ra;
        c_out_[i] = -k * s;
        x0_x_[i] = 1.0 / m;
        x0_out_[i] = s * s / m;
        break;
      case Prediction::X0:
        c_x_[i] = ra + k / s;
        c_out_[i] = -k * m / s;
        x0_x_[i] = 0.0;
        x0_out_[i] = 1.0;
        break;
    }
    c1_[i] = beta * std::sqrt(ab_prev) / (1.0 - ab);
    c2_[i] = (1.0 - ab_prev) * std::sqrt(alpha) / (1.0 - ab);
    const double var = options.variance() == DDPMVariance::Beta
                           ? beta
                           : schedule.posterior_variance(t);
    sigma_[i] = t > 0 ? std::sqrt(var) : 0.0;
  }
}

void DDPMSampler::step(torch::Tensor& x, int64_t t) {
  TORCH_CHECK(
      t >= 0 && t < num_timesteps(),
      "DDPMSampler::step: t must lie in [0, ",
      num_timesteps(),
      "), got ",
      t);
  c10::InferenceMode guard;
  const auto i = static_cast<size_t>(t);
  // One time for the whole batch, handed over as an expanded [N] tensor
  // (stride 0): one fill per step, and models can see that t is shared
  // (sbgm::MLP then embeds it once).
  if (!tbuf_.defined() || tbuf_.device() != x.device()) {
    tbuf_ = torch::empty({1}, x.options().dtype(torch::kLong));
  }
  tbuf_.fill_(t);
  auto out = model_(x, tbuf_.expand({x.size(0)}));
  if (out.data_ptr() == x.data_ptr()) {
    out = out.clone();  // the model handed back x itself
  }
  if (options_.clip_x0()) {
    auto x0 = out.mul(x0_out_[i]);
    if (x0_x_[i] != 0.0) {
      x0.add_(x, x0_x_[i]);
    }
    x0.clamp_(-options_.clip_range(), options_.clip_range());
    x.mul_(c2_[i]).add_(x0, c1_[i]);
  } else {
    x.mul_(c_x_[i]).add_(out, c_out_[i]);
  }
  if (sigma_[i] > 0.0) {
    detail::fill_normal(noise_, x, generator_);
    x.add_(noise_, sigma_[i]);
  }
}

SampleResult ddpm(
    const Model& model,
    const Schedule& schedule,
    torch::IntArrayRef shape,
    const DDPMOptions& options,
    const CommonOptions& common) {
  const char* where = "ddpm";
  check_clip(options.clip_x0(), options.clip_range(), where);
  DDPMSampler sampler(model, schedule, options, common.generator());
  c10::InferenceMode guard;
  auto x = detail::initial_state(shape, 1.0, common, where);
  const int64_t T = schedule.num_timesteps();
  detail::Loop loop(common, T, where);
  loop.start(x);
  for (int64_t t = T - 1, step = 1; t >= 0; --t, ++step) {
    sampler.step(x, t);
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
  // One step for the batch, as a stride-0 [N] tensor (see DDPMSampler).
  auto t1 = torch::empty({1}, x.options().dtype(torch::kLong));
  auto t = t1.expand({x.size(0)});
  for (int64_t j = S - 1, step = 1; j >= 0; --j, ++step) {
    const int64_t ti = tau[static_cast<size_t>(j)];
    const double a_t = schedule.alpha_bar(ti);
    const double a_p =
        j > 0 ? schedule.alpha_bar(tau[static_cast<size_t>(j - 1)]) : 1.0;
    t1.fill_(ti);
    auto eps = eps_at(model, x, t, a_t);
    if (options.clip_x0()) {
      // Clip x0 and use the eps consistent with it (x_t = m x0 + s eps).
      auto x0 = (x - std::sqrt(1.0 - a_t) * eps) / std::sqrt(a_t);
      x0.clamp_(-options.clip_range(), options.clip_range());
      eps = (x - std::sqrt(a_t) * x0) / std::sqrt(1.0 - a_t);
      x = std::move(x0);
    } else {
      // x0 in place of x.
      x.add_(eps, -std::sqrt(1.0 - a_t)).mul_(1.0 / std::sqrt(a_t));
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
