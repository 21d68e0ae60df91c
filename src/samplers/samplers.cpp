#include "sbgm/samplers/samplers.h"

#include <c10/core/InferenceMode.h>

#include <cmath>

#include "../internal.h"
#include "affine.h"
#include "checks.h"
#include "ode_solvers.h"
#include "sbgm/schedule.h"

namespace sbgm::samplers {

namespace {

// Defaults of the step counts.
constexpr int64_t kDefaultSteps = 1000;
constexpr int64_t kDDIMSteps = 50;
constexpr int64_t kODEGridSteps = 2;
// Fixed-step probability-flow ODE by name.
constexpr int64_t kODESteps = 100;

void check_clip(bool clip, double range, const char* where) {
  TORCH_CHECK(
      !clip || (range > 0 && std::isfinite(range)),
      where,
      ": clip_range must be finite and > 0, got ",
      range);
}

using detail::grid_points;

/// A table with one step per grid interval; `fill(i, from, to)` sets the
/// step's coefficients.
template <class Fill>
std::shared_ptr<detail::AffineSteps> affine_steps(
    const NoiseProcess& process,
    Prediction p,
    const std::vector<ProcessPoint>& pts,
    Fill fill) {
  const size_t n = pts.size() - 1;
  auto st = std::make_shared<detail::AffineSteps>(n);
  st->integer_time = process.integer_model_time();
  for (size_t i = 0; i < n; ++i) {
    st->set_point(i, process, p, pts[i], pts[i + 1].t);
    fill(*st, i, pts[i], pts[i + 1]);
  }
  return st;
}

/// Sets step i to Tweedie's x <- x0 (into the data).
void tweedie(detail::AffineSteps& st, size_t i) {
  st.c_x[i] = st.x0_x[i];
  st.c_out[i] = st.x0_out[i];
  st.c_noise[i] = 0.0;
}

std::shared_ptr<const detail::AffineSteps> ddpm_steps(
    const Model& model,
    const NoiseProcess& process,
    const DDPMOptions& o,
    std::vector<double>* times,
    const char* where) {
  check_clip(o.clip_x0(), o.clip_range(), where);
  const int64_t T = process.num_model_steps();
  const auto pts =
      grid_points(model, process, o.grid(), T > 0 ? T : kDefaultSteps, where);
  const Prediction p = model.prediction();
  auto st = affine_steps(
      process,
      p,
      pts,
      [&](detail::AffineSteps& s,
          size_t i,
          const ProcessPoint& from,
          const ProcessPoint& to) {
        const auto c = detail::fold([&](double x, double u, double z) {
          const auto d = update::denoised(x, u, p, from);
          return update::ddpm(x, d.x0, z, from, to, o.variance());
        });
        const auto k = detail::fold([&](double x, double x0c, double z) {
          return update::ddpm(x, x0c, z, from, to, o.variance());
        });
        s.c_x[i] = c.x;
        s.c_out[i] = c.u;
        s.c_noise[i] = c.z;
        s.c2[i] = k.x;
        s.c1[i] = k.u;
      });
  st->clip = o.clip_x0();
  st->clip_range = o.clip_range();
  if (times != nullptr) {
    for (const auto& q : pts) {
      times->push_back(q.t);
    }
  }
  return st;
}

std::shared_ptr<const detail::AffineSteps> em_steps(
    const Model& model,
    const NoiseProcess& process,
    const EulerMaruyamaOptions& o,
    std::vector<double>* times,
    const char* where) {
  const auto pts = grid_points(model, process, o.grid(), kDefaultSteps, where);
  const Prediction p = model.prediction();
  auto st = affine_steps(
      process,
      p,
      pts,
      [&](detail::AffineSteps& s,
          size_t i,
          const ProcessPoint& from,
          const ProcessPoint& to) {
        if (to.is_data()) {
          tweedie(s, i);
          return;
        }
        const double f = process.drift_coeff(from.t);
        const double g2 = process.diffusion_sq(from.t);
        const double h = from.t - to.t;
        const auto sc =
            prediction_coeffs(p, Prediction::Score, from.alpha, from.sigma);
        const auto c = detail::fold([&](double x, double u, double z) {
          const double score = sc.x_coeff * x + sc.out_coeff * u;
          return update::euler_maruyama(x, score, z, f, g2, h);
        });
        s.c_x[i] = c.x;
        s.c_out[i] = c.u;
        s.c_noise[i] = c.z;
      });
  if (times != nullptr) {
    for (const auto& q : pts) {
      times->push_back(q.t);
    }
  }
  return st;
}

}  // namespace

SampleResult ddpm(
    const Model& model,
    const NoiseProcess& process,
    torch::IntArrayRef shape,
    const DDPMOptions& options) {
  const char* where = "ddpm";
  std::vector<double> times;
  auto steps = ddpm_steps(model, process, options, &times, where);
  c10::InferenceMode guard;
  auto x =
      initial_state(process, times.front(), shape, options.common(), where);
  return detail::run_affine(
      model, std::move(steps), std::move(x), options.common(), where);
}

SampleResult ddim(
    const Model& model,
    const NoiseProcess& process,
    torch::IntArrayRef shape,
    const DDIMOptions& o) {
  const char* where = "ddim";
  detail::check_eta(o.eta(), where);
  check_clip(o.clip_x0(), o.clip_range(), where);
  const auto pts = grid_points(model, process, o.grid(), kDDIMSteps, where);
  const Prediction p = model.prediction();
  auto st = affine_steps(
      process,
      p,
      pts,
      [&](detail::AffineSteps& s,
          size_t i,
          const ProcessPoint& from,
          const ProcessPoint& to) {
        const auto c = detail::fold([&](double x, double u, double z) {
          const auto d = update::denoised(x, u, p, from);
          return update::ddim(d.x0, d.eps, z, from, to, o.eta());
        });
        // Clipped: the eps consistent with the clipped x0.
        const auto k = detail::fold([&](double x, double x0c, double z) {
          const auto d = update::denoised(x, x0c, Prediction::X0, from);
          return update::ddim(x0c, d.eps, z, from, to, o.eta());
        });
        s.c_x[i] = c.x;
        s.c_out[i] = c.u;
        s.c_noise[i] = c.z;
        s.c2[i] = k.x;
        s.c1[i] = k.u;
      });
  st->clip = o.clip_x0();
  st->clip_range = o.clip_range();
  c10::InferenceMode guard;
  auto x = initial_state(process, pts.front().t, shape, o.common(), where);
  return detail::run_affine(
      model, std::move(st), std::move(x), o.common(), where);
}

SampleResult euler_maruyama(
    const Model& model,
    const NoiseProcess& process,
    torch::IntArrayRef shape,
    const EulerMaruyamaOptions& options) {
  const char* where = "euler_maruyama";
  std::vector<double> times;
  auto steps = em_steps(model, process, options, &times, where);
  c10::InferenceMode guard;
  auto x =
      initial_state(process, times.front(), shape, options.common(), where);
  return detail::run_affine(
      model, std::move(steps), std::move(x), options.common(), where);
}

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

SampleResult ode(
    const Model& model,
    const NoiseProcess& process,
    torch::IntArrayRef shape,
    const ODEOptions& o) {
  const char* where = "ode";
  const auto& common = o.common();
  detail::check_no_cuda_graph(common, where);
  detail::check_tolerances(o.rtol(), o.atol(), o.max_steps(), where);
  const auto pts = grid_points(model, process, o.grid(), kODEGridSteps, where);
  const Prediction p = model.prediction();
  c10::InferenceMode guard;
  auto x = initial_state(process, pts.front().t, shape, common, where);
  const auto n = static_cast<int64_t>(pts.size()) - 1;
  SamplerLoop loop(common, n, where);
  loop.start(x);
  ModelCaller call(batch_invariant_model(model, common), process, where);
  // dx/dt at any t of the process (Dopri5's stages fall between grid times).
  detail::RHS rhs = [&](double t, const detail::State& y) -> detail::State {
    const ProcessPoint at = process.at(t);
    const auto score = convert_prediction(
        call(y[0], t), p, Prediction::Score, y[0], at.alpha, at.sigma);
    return {update::probability_flow(
        y[0], score, process.drift_coeff(t), process.diffusion_sq(t))};
  };
  const detail::OnStep no_step = [](int64_t, const detail::State&) {};
  detail::State y{x};
  for (int64_t i = 0; i < n; ++i) {
    const ProcessPoint& from = pts[i];
    const ProcessPoint& to = pts[i + 1];
    torch::Tensor x0;
    if (to.is_data()) {
      x0 = update::denoised(y[0], call(y[0], from.t), p, from).x0;
      y[0] = x0;  // Tweedie's denoising step
    } else if (o.method() == ODEMethod::Euler) {
      detail::euler(rhs, y, from.t, to.t);
    } else if (o.method() == ODEMethod::Heun) {
      detail::heun(rhs, y, from.t, to.t, 1, no_step);
    } else {
      detail::dopri5(
          rhs,
          y,
          from.t,
          to.t,
          o.rtol(),
          o.atol(),
          o.max_steps(),
          no_step,
          where);
    }
    loop.step(i + 1, to.t, y[0], x0);
  }
  return loop.finish(y[0], call.nfe());
}

// ---- step objects
// -------------------------------------------------------------

int64_t StepSampler::num_steps() const {
  return impl_->steps().size();
}

double StepSampler::time(int64_t i) const {
  TORCH_CHECK(
      i >= 0 && i <= num_steps(),
      "StepSampler::time: i must lie in [0, ",
      num_steps(),
      "], got ",
      i);
  return times_[static_cast<size_t>(i)];
}

void StepSampler::step(torch::Tensor& x, int64_t i) {
  TORCH_CHECK(
      i >= 0 && i < num_steps(),
      "StepSampler::step: step must lie in [0, ",
      num_steps(),
      "), got ",
      i);
  impl_->step(x, i);
}

DDPMSampler::DDPMSampler(
    Model model, const NoiseProcess& process, const DDPMOptions& options) {
  auto steps = ddpm_steps(model, process, options, &times_, "DDPMSampler");
  impl_ = std::make_shared<detail::AffineStepper>(
      std::move(model), std::move(steps), options.common());
}

EulerMaruyamaSampler::EulerMaruyamaSampler(
    Model model,
    const NoiseProcess& process,
    const EulerMaruyamaOptions& options) {
  auto steps =
      em_steps(model, process, options, &times_, "EulerMaruyamaSampler");
  impl_ = std::make_shared<detail::AffineStepper>(
      std::move(model), std::move(steps), options.common());
}

// ---- by name
// ------------------------------------------------------------------

std::vector<std::string> sampler_names() {
  return {
      "default",
      "ddpm",
      "ddim",
      "euler_maruyama",
      "em",
      "pc",
      "ode",
      "ode_euler",
      "dopri5",
      "euler",
      "heun",
      "euler_ancestral",
      "dpmpp_2m",
      "dpmpp_3m",
      "dpmpp_2m_sde"};
}

SampleResult sample(
    const Model& model,
    const NoiseProcess& process,
    torch::IntArrayRef shape,
    const SampleOptions& o) {
  const std::string name = o.sampler() == "default" ? "dpmpp_2m" : o.sampler();
  bool known = false;
  for (const auto& s : sampler_names()) {
    known = known || s == name;
  }
  if (!known) {
    std::string valid;
    for (const auto& s : sampler_names()) {
      valid += (valid.empty() ? "" : ", ") + s;
    }
    TORCH_CHECK(
        false,
        "sample: unknown sampler '",
        o.sampler(),
        "'; valid names: ",
        valid);
  }
  TORCH_CHECK(o.steps() >= 0, "sample: steps must be >= 0, got ", o.steps());
  // The grid: by name, with the sampler's default step count when steps is
  // 0 (a default grid with no steps leaves the choice to the sampler).
  GridSpec grid;
  if (o.time_grid()) {
    grid = *o.time_grid();
  } else if (o.grid() != "default" || o.steps() > 0) {
    int64_t steps = o.steps();
    if (steps == 0) {
      steps = name == "ddim" || name == "euler_ancestral" ? kDDIMSteps
              : name == "dopri5"                          ? kODEGridSteps
              : name == "ode" || name == "ode_euler"      ? kODESteps
              : name == "heun" || name == "euler"         ? detail::kHeunSteps
              : name.rfind("dpmpp", 0) == 0               ? detail::kDPMSteps
              : name == "ddpm" && process.num_model_steps() > 0
                  ? process.num_model_steps()
                  : kDefaultSteps;
    }
    grid =
        grids::from_name(o.grid(), process, steps, GridOptions().rho(o.rho()));
  }
  const bool clip = o.clip_range() > 0;
  if (name == "ddpm") {
    return ddpm(
        model,
        process,
        shape,
        DDPMOptions()
            .grid(grid)
            .variance(o.variance())
            .clip_x0(clip)
            .clip_range(clip ? o.clip_range() : 1.0)
            .common(o.common()));
  }
  if (name == "ddim") {
    return ddim(
        model,
        process,
        shape,
        DDIMOptions()
            .grid(grid)
            .eta(o.eta().value_or(0.0))
            .clip_x0(clip)
            .clip_range(clip ? o.clip_range() : 1.0)
            .common(o.common()));
  }
  if (name == "euler_maruyama" || name == "em") {
    return euler_maruyama(
        model,
        process,
        shape,
        EulerMaruyamaOptions().grid(grid).common(o.common()));
  }
  if (name == "pc") {
    return predictor_corrector(
        model,
        process,
        shape,
        PredictorCorrectorOptions()
            .grid(grid)
            .corrector_steps(o.corrector_steps())
            .snr(o.snr())
            .common(o.common()));
  }
  if (name == "euler" || name == "heun") {
    return heun(
        model,
        process,
        shape,
        HeunOptions()
            .grid(grid)
            .order(name == "heun" ? 2 : 1)
            .s_churn(o.s_churn())
            .s_tmin(o.s_tmin())
            .s_tmax(o.s_tmax())
            .s_noise(o.s_noise())
            .common(o.common()));
  }
  if (name == "euler_ancestral") {
    return euler_ancestral(
        model,
        process,
        shape,
        EulerAncestralOptions()
            .grid(grid)
            .eta(o.eta().value_or(1.0))
            .s_noise(o.s_noise())
            .common(o.common()));
  }
  if (name.rfind("dpmpp", 0) == 0) {
    return dpm_solver(
        model,
        process,
        shape,
        DPMSolverOptions()
            .grid(grid)
            .order(name == "dpmpp_3m" ? 3 : 2)
            .sde(name == "dpmpp_2m_sde")
            .common(o.common()));
  }
  const ODEMethod method = name == "ode"         ? ODEMethod::Heun
                           : name == "ode_euler" ? ODEMethod::Euler
                                                 : ODEMethod::Dopri5;
  return ode(
      model,
      process,
      shape,
      ODEOptions()
          .grid(grid)
          .method(method)
          .rtol(o.rtol())
          .atol(o.atol())
          .common(o.common()));
}

}  // namespace sbgm::samplers
