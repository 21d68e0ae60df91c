#include "sbgm/samplers/likelihood.h"

#include <torch/autograd.h>

#include <cmath>

#include "../internal.h"
#include "checks.h"
#include "ode_solvers.h"

namespace sbgm::samplers {

LikelihoodResult log_likelihood(
    const Model& model,
    const NoiseProcess& process,
    const torch::Tensor& x,
    const LikelihoodOptions& o) {
  const char* where = "log_likelihood";
  sbgm::detail::check_floating(x, "x", where);
  TORCH_CHECK(
      x.dim() >= 1 && x.numel() >= 1,
      where,
      ": x must have shape [N, ...] with N >= 1, got ",
      sbgm::detail::shape_str(x));
  sbgm::detail::check_finite(x, "x", where);
  TORCH_CHECK(
      o.method() != ODEMethod::Euler,
      where,
      ": use Heun or Dopri5 (Euler is too inaccurate for a likelihood)");
  TORCH_CHECK(
      o.num_steps() >= 1,
      where,
      ": num_steps must be >= 1, got ",
      o.num_steps());
  detail::check_tolerances(o.rtol(), o.atol(), o.max_steps(), where);
  TORCH_CHECK(
      o.num_bits() >= 0, where, ": num_bits must be >= 0, got ", o.num_bits());
  TORCH_CHECK(
      o.data_width() > 0 && std::isfinite(o.data_width()),
      where,
      ": data_width must be finite and > 0, got ",
      o.data_width());
  const double t0 = o.t_end() ? *o.t_end() : process.t_min();
  TORCH_CHECK(
      t0 < process.t_max() && t0 != process.data_time(),
      where,
      ": t_end must lie below t_max = ",
      process.t_max(),
      " and above the data time, got ",
      t0);
  process.check_time(t0, where);
  torch::AutoGradMode grad_on(true);
  const int64_t n = x.size(0);
  auto x0 = x.detach().clone();
  auto gen = sbgm::detail::to_c10(o.generator());
  torch::Tensor v;
  if (o.probe() == Probe::Rademacher) {
    v = torch::randint(0, 2, x0.sizes(), gen, x0.options()).mul_(2).sub_(1);
  } else {
    v = torch::randn(x0.sizes(), gen, x0.options());
  }
  ModelCaller call(model, process, where);
  const Prediction p = model.prediction();
  detail::RHS f = [&](double t, const detail::State& y) -> detail::State {
    auto xr = y[0].detach().requires_grad_(true);
    const ProcessPoint at = process.at(t);
    auto score = convert_prediction(
        call(xr, t), p, Prediction::Score, xr, at.alpha, at.sigma);
    auto drift = update::probability_flow(
        xr, score, process.drift_coeff(t), process.diffusion_sq(t));
    auto vjp = torch::autograd::grad({(drift * v).sum()}, {xr})[0];
    auto div = (vjp * v).reshape({n, -1}).sum(1);
    return {drift.detach(), div.detach()};
  };
  detail::State y{x0, torch::zeros({n}, x0.options())};
  const int64_t total = o.method() == ODEMethod::Heun ? o.num_steps() : 0;
  const detail::OnStep on_step = [&](int64_t step, const detail::State&) {
    if (o.progress()) {
      o.progress()(step, total);
    }
  };
  if (o.method() == ODEMethod::Heun) {
    detail::heun(f, y, t0, process.t_max(), o.num_steps(), on_step);
  } else {
    detail::dopri5(
        f,
        y,
        t0,
        process.t_max(),
        o.rtol(),
        o.atol(),
        o.max_steps(),
        on_step,
        where);
  }
  check_finite(y[0], where);
  check_finite(y[1], where);
  LikelihoodResult r;
  r.prior_sample = y[0];
  r.log_prob = process.prior_log_prob(y[0]) + y[1];
  const double dim = static_cast<double>(x.numel() / n);
  double offset = 0.0;
  if (o.num_bits() > 0) {
    offset = static_cast<double>(o.num_bits()) - std::log2(o.data_width());
  }
  r.bits_per_dim = -r.log_prob / (dim * std::log(2.0)) + offset;
  r.nfe = call.nfe();
  return r;
}

}  // namespace sbgm::samplers
