#include "sbgm/samplers/samplers.h"

#include <c10/core/InferenceMode.h>

#include <cmath>

#include "../internal.h"
#include "affine.h"
#include "checks.h"
#include "ode_solvers.h"
#include "options.h"

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

// ---- registry lines
// ----------------------------------------------------------

namespace detail {

namespace {

DDPMOptions ddpm_options(const Config& c) {
  OptionReader r(c, "ddpm", {"variance", "clip_x0", "clip_range"});
  const double range = r.number("clip_range", 1.0);
  return DDPMOptions()
      .variance(
          r.choice("variance", {"beta", "posterior"}, 0) == 0
              ? DDPMVariance::Beta
              : DDPMVariance::Posterior)
      .clip_x0(r.flag("clip_x0", r.has("clip_range")))
      .clip_range(range);
}

DDIMOptions ddim_options(const Config& c) {
  OptionReader r(c, "ddim", {"eta", "clip_x0", "clip_range"});
  return DDIMOptions()
      .eta(r.number("eta", 0.0))
      .clip_x0(r.flag("clip_x0", r.has("clip_range")))
      .clip_range(r.number("clip_range", 1.0));
}

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

ODEOptions ode_options(const Config& c, const char* name, ODEMethod method) {
  OptionReader r(c, name, {"rtol", "atol", "max_steps"});
  ODEOptions o;
  return o.method(method)
      .rtol(r.number("rtol", o.rtol()))
      .atol(r.number("atol", o.atol()))
      .max_steps(r.integer("max_steps", o.max_steps()));
}

}  // namespace

void register_stochastic_samplers(Registry<Sampler>& table) {
  table.add(
      "ddpm",
      [](const Config& c) {
        return make_sampler(ddpm_options(c), ddpm, [](const NoiseProcess& p) {
          return p.num_model_steps() > 0 ? p.num_model_steps() : kDefaultSteps;
        });
      },
      "ancestral sampling (Ho et al. 2020)");
  table.add(
      "ddim",
      [](const Config& c) {
        return make_sampler(ddim_options(c), ddim, steps(kDDIMSteps));
      },
      "DDIM (Song, Meng & Ermon 2021)");
  for (const char* name : {"euler_maruyama", "em"}) {
    table.add(
        name,
        [name](const Config& c) {
          OptionReader(c, name, {});
          return make_sampler(
              EulerMaruyamaOptions(), euler_maruyama, steps(kDefaultSteps));
        },
        "Euler-Maruyama on the reverse SDE");
  }
  table.add(
      "pc",
      [](const Config& c) {
        return make_sampler(
            pc_options(c), predictor_corrector, steps(kDefaultSteps));
      },
      "predictor-corrector (Song et al. 2021)");
  table.add(
      "ode",
      [](const Config& c) {
        return make_sampler(
            ode_options(c, "ode", ODEMethod::Heun), ode, steps(kODESteps));
      },
      "Heun on the probability-flow ODE in t");
  table.add(
      "ode_euler",
      [](const Config& c) {
        return make_sampler(
            ode_options(c, "ode_euler", ODEMethod::Euler),
            ode,
            steps(kODESteps));
      },
      "Euler on the probability-flow ODE in t");
  table.add(
      "dopri5",
      [](const Config& c) {
        return make_sampler(
            ode_options(c, "dopri5", ODEMethod::Dopri5),
            ode,
            steps(kODEGridSteps));
      },
      "Dormand-Prince 5(4) on the probability-flow ODE");
}

}  // namespace detail

}  // namespace sbgm::samplers
