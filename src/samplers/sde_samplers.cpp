#include "sbgm/samplers/sde_samplers.h"

#include <c10/core/InferenceMode.h>

#include <cmath>

#include "affine.h"
#include "continuous.h"
#include "loop.h"
#include "sbgm/sde.h"

namespace sbgm::samplers {

namespace detail {

double resolve_eps(
    const std::optional<double>& eps, const SDE& sde, const char* where) {
  const double e = eps ? *eps : sde.default_eps();
  TORCH_CHECK(e > 0 && e < 1, where, ": eps must lie in (0, 1), got ", e);
  return e;
}

void check_steps(int64_t num_steps, const char* where) {
  TORCH_CHECK(
      num_steps >= 1, where, ": num_steps must be >= 1, got ", num_steps);
}

torch::Tensor score_at(
    const Model& model,
    const SDE& sde,
    const torch::Tensor& x,
    double t,
    torch::Tensor& tbuf) {
  // One time for the batch, as a stride-0 [N] tensor (see DDPMSampler).
  if (!tbuf.defined() || tbuf.scalar_type() != x.scalar_type() ||
      tbuf.device() != x.device()) {
    tbuf = torch::empty({1}, x.options());
  }
  tbuf.fill_(t);
  auto out = model(x, tbuf.expand({x.size(0)}));
  if (model.prediction() == Prediction::Score) {
    return out;
  }
  return convert_prediction(
      out,
      model.prediction(),
      Prediction::Score,
      x,
      sde.mean_coeff(t),
      sde.std(t));
}

}  // namespace detail

namespace {

/// x <- (1 - a(t) h) x + g(t)^2 h score + g(t) sqrt(h) z at t_i = 1 - i h,
/// with score = -eps / s(t); no noise at the last step when denoise is set.
std::shared_ptr<const detail::AffineSteps> em_steps(
    const SDE& sde,
    const EulerMaruyamaOptions& options,
    Prediction p,
    const char* where) {
  detail::check_steps(options.num_steps(), where);
  const double eps = detail::resolve_eps(options.eps(), sde, where);
  const int64_t n = options.num_steps();
  const double h = (1.0 - eps) / static_cast<double>(n);
  auto st = std::make_shared<detail::AffineSteps>(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const auto k = static_cast<size_t>(i);
    const double t = 1.0 - static_cast<double>(i) * h;
    const double g2h = std::pow(sde.diffusion(t), 2) * h;
    const double s = sde.std(t);
    st->t[k] = t;
    detail::fold_eps(
        *st,
        k,
        p,
        sde.mean_coeff(t),
        s,
        1.0 - sde.drift_coeff(t) * h,
        -g2h / s);
    const bool quiet = options.denoise() && i == n - 1;
    st->c_noise[k] = quiet ? 0.0 : std::sqrt(g2h);
  }
  return st;
}

}  // namespace

EulerMaruyamaSampler::EulerMaruyamaSampler(
    Model model,
    const SDE& sde,
    const EulerMaruyamaOptions& options,
    std::optional<torch::Generator> generator) {
  auto steps =
      em_steps(sde, options, model.prediction(), "EulerMaruyamaSampler");
  impl_ = std::make_shared<detail::AffineStepper>(
      std::move(model), std::move(steps), std::move(generator));
}

int64_t EulerMaruyamaSampler::num_steps() const {
  return impl_->steps().size();
}

double EulerMaruyamaSampler::time(int64_t i) const {
  TORCH_CHECK(
      i >= 0 && i < num_steps(),
      "EulerMaruyamaSampler: step must lie in [0, ",
      num_steps(),
      "), got ",
      i);
  return impl_->steps().t[static_cast<size_t>(i)];
}

void EulerMaruyamaSampler::step(torch::Tensor& x, int64_t i) {
  time(i);  // range check
  impl_->step(x, i);
}

SampleResult euler_maruyama(
    const Model& model,
    const SDE& sde,
    torch::IntArrayRef shape,
    const EulerMaruyamaOptions& options,
    const CommonOptions& common) {
  const char* where = "euler_maruyama";
  auto steps = em_steps(sde, options, model.prediction(), where);
  c10::InferenceMode guard;
  auto x = detail::initial_state(shape, sde.prior_std(), common, where);
  return detail::run_affine(
      model, std::move(steps), std::move(x), common, where);
}

SampleResult predictor_corrector(
    const Model& model,
    const SDE& sde,
    torch::IntArrayRef shape,
    const PredictorCorrectorOptions& options,
    const CommonOptions& common) {
  const char* where = "predictor_corrector";
  detail::check_no_cuda_graph(common, where);
  detail::check_steps(options.num_steps(), where);
  TORCH_CHECK(
      options.corrector_steps() >= 0,
      where,
      ": corrector_steps must be >= 0, got ",
      options.corrector_steps());
  TORCH_CHECK(
      options.snr() > 0 && std::isfinite(options.snr()),
      where,
      ": snr must be finite and > 0, got ",
      options.snr());
  const double eps = detail::resolve_eps(options.eps(), sde, where);
  c10::InferenceMode guard;
  auto x = detail::initial_state(shape, sde.prior_std(), common, where);
  const int64_t n = options.num_steps();
  const double h = (1.0 - eps) / static_cast<double>(n);
  detail::Loop loop(common, n, where);
  loop.start(x);
  torch::Tensor tbuf;
  int64_t nfe = 0;
  const int64_t batch = x.size(0);
  for (int64_t i = 0; i < n; ++i) {
    const double t = 1.0 - static_cast<double>(i) * h;
    const DiscreteStep d = sde.discretize(t - h, h);
    // Langevin corrector.
    const double alpha = (1.0 + d.f) * (1.0 + d.f);
    for (int64_t c = 0; c < options.corrector_steps(); ++c) {
      auto score = detail::score_at(model, sde, x, t, tbuf);
      ++nfe;
      auto z = detail::noise_like(x, common.generator());
      auto gnorm = score.reshape({batch, -1}).norm(2, {1}).mean();
      auto znorm = z.reshape({batch, -1}).norm(2, {1}).mean();
      auto step = (options.snr() * znorm / gnorm).square_().mul_(2.0 * alpha);
      x.add_(score * step).add_(z * (2.0 * step).sqrt_());
    }
    // Predictor.
    auto score = detail::score_at(model, sde, x, t, tbuf);
    ++nfe;
    const bool last = i == n - 1;
    if (options.predictor() == Predictor::ReverseDiffusion) {
      // x <- x - (f x - G^2 score) + G z
      x.mul_(1.0 - d.f).add_(score, d.G * d.G);
      if (!(options.denoise() && last)) {
        x.add_(detail::noise_like(x, common.generator()), d.G);
      }
    } else {
      const double g = sde.diffusion(t);
      x.mul_(1.0 - sde.drift_coeff(t) * h).add_(score, g * g * h);
      if (!(options.denoise() && last)) {
        x.add_(detail::noise_like(x, common.generator()), g * std::sqrt(h));
      }
    }
    loop.step(i + 1, x);
  }
  return loop.finish(x, nfe);
}

}  // namespace sbgm::samplers
