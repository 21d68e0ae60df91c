// The probability-flow ODE solved in t: Euler, Heun or Dormand-Prince
// 5(4) between the grid's times, Tweedie's step into the data.

#include <c10/core/InferenceMode.h>

#include <cmath>

#include "../internal.h"
#include "affine.h"
#include "checks.h"
#include "ode_solvers.h"
#include "options.h"
#include "sbgm/samplers/samplers.h"

namespace sbgm::samplers {

namespace {

// The 2-point default grid of ode() (t_max to t_min, then Tweedie's step);
// by name with a grid, 100 fixed steps (2 for dopri5).
constexpr int64_t kODEGridSteps = 2;
constexpr int64_t kODESteps = 100;

}  // namespace

using detail::grid_points;

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

namespace detail {

namespace {

ODEOptions ode_options(const Config& c, const char* name, ODEMethod method) {
  OptionReader r(c, name, {"rtol", "atol", "max_steps"});
  ODEOptions o;
  return o.method(method)
      .rtol(r.number("rtol", o.rtol()))
      .atol(r.number("atol", o.atol()))
      .max_steps(r.integer("max_steps", o.max_steps()));
}

}  // namespace

void register_ode(Registry<Sampler>& table) {
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
