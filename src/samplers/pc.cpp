// The predictor-corrector sampler (Song et al. 2021): Langevin corrector
// steps, then a reverse-diffusion or Euler-Maruyama predictor step.

#include <c10/core/InferenceMode.h>

#include <cmath>

#include "../internal.h"
#include "affine.h"
#include "checks.h"
#include "options.h"
#include "sbgm/samplers/samplers.h"

namespace sbgm::samplers {

using detail::grid_points;
using detail::kDefaultSteps;

SampleResult predictor_corrector(
    const Model& model,
    const NoiseProcess& process,
    torch::IntArrayRef shape,
    const PredictorCorrectorOptions& o) {
  const char* where = "predictor_corrector";
  const auto& common = o.common();
  detail::check_no_cuda_graph(common, where);
  TORCH_CHECK(
      o.corrector_steps() >= 0,
      where,
      ": corrector_steps must be >= 0, got ",
      o.corrector_steps());
  TORCH_CHECK(
      o.snr() > 0 && std::isfinite(o.snr()),
      where,
      ": snr must be finite and > 0, got ",
      o.snr());
  const auto pts = grid_points(model, process, o.grid(), kDefaultSteps, where);
  const Prediction p = model.prediction();
  c10::InferenceMode guard;
  auto x = initial_state(process, pts.front().t, shape, common, where);
  const auto n = static_cast<int64_t>(pts.size()) - 1;
  SamplerLoop loop(common, n, where);
  loop.start(x);
  ModelCaller call(batch_invariant_model(model, common), process, where);
  NoiseSource source(common);
  auto noise = [&] { return source.randn(x.sizes(), x.options()); };
  const int64_t batch = x.size(0);
  // With per-sample streams, each sample's step size uses its own norms
  // (batch means would tie a sample to the rest of its batch).
  const bool per_sample = source.per_sample();
  for (int64_t i = 0; i < n; ++i) {
    const ProcessPoint& from = pts[i];
    const ProcessPoint& to = pts[i + 1];
    const auto sc =
        prediction_coeffs(p, Prediction::Score, from.alpha, from.sigma);
    auto score_of = [&](const torch::Tensor& out) {
      auto s = out * sc.out_coeff;
      return sc.x_coeff_is_zero ? s : s.add_(x, sc.x_coeff);
    };
    // Langevin corrector (score_sde's LangevinCorrector): the step size
    // follows from the target snr and the batch-mean norms.
    const double k = from.alpha / to.alpha;
    for (int64_t c = 0; c < o.corrector_steps(); ++c) {
      auto score = score_of(call(x, from.t));
      auto z = noise();
      auto gnorm = score.reshape({batch, -1}).norm(2, {1});
      auto znorm = z.reshape({batch, -1}).norm(2, {1});
      if (per_sample) {
        std::vector<int64_t> view(static_cast<size_t>(x.dim()), 1);
        view[0] = batch;
        gnorm = gnorm.view(view);
        znorm = znorm.view(view);
      } else {
        gnorm = gnorm.mean();
        znorm = znorm.mean();
      }
      auto e = (o.snr() * znorm / gnorm).square_().mul_(2.0 * k * k);
      x.add_(score * e).add_(z * (2.0 * e).sqrt_());
    }
    auto out = call(x, from.t);
    torch::Tensor x0;
    if (to.is_data() || loop.wants_x0()) {
      x0 = update::denoised(x, out, p, from).x0;
    }
    if (to.is_data()) {
      x = x0;  // Tweedie's denoising step
    } else if (o.predictor() == Predictor::ReverseDiffusion) {
      x = update::reverse_diffusion(x, score_of(out), noise(), from, to);
    } else {
      x = update::euler_maruyama(
          x,
          score_of(out),
          noise(),
          process.drift_coeff(from.t),
          process.diffusion_sq(from.t),
          from.t - to.t);
    }
    loop.step(i + 1, to.t, x, x0);
  }
  return loop.finish(x, call.nfe());
}

namespace detail {

namespace {

PredictorCorrectorOptions pc_options(const Config& c) {
  OptionReader r(c, "pc", {"predictor", "corrector_steps", "snr"});
  PredictorCorrectorOptions o;
  return o
      .predictor(
          r.choice("predictor", {"reverse_diffusion", "euler_maruyama"}, 0) == 0
              ? Predictor::ReverseDiffusion
              : Predictor::EulerMaruyama)
      .corrector_steps(r.integer("corrector_steps", o.corrector_steps()))
      .snr(r.number("snr", o.snr()));
}

}  // namespace

void register_pc(Registry<Sampler>& table) {
  table.add(
      "pc",
      [](const Config& c) {
        return make_sampler(
            pc_options(c), predictor_corrector, steps(kDefaultSteps));
      },
      "predictor-corrector (Song et al. 2021)");
}

}  // namespace detail

}  // namespace sbgm::samplers
