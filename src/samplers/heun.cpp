// EDM's sampler (Karras et al. 2022, Alg. 2): churn, an Euler step and
// Heun's correction in the scaled variables of any process; "euler" is the
// same with order 1.

#include <c10/core/InferenceMode.h>

#include <cmath>

#include "../internal.h"
#include "affine.h"
#include "checks.h"
#include "options.h"
#include "sbgm/samplers/samplers.h"

namespace sbgm::samplers {

using detail::check_noise;

SampleResult heun(
    const Model& model,
    const NoiseProcess& process,
    torch::IntArrayRef shape,
    const HeunOptions& o) {
  const char* where = o.order() == 1 ? "euler" : "heun";
  const auto& common = o.common();
  detail::check_no_cuda_graph(common, where);
  TORCH_CHECK(
      o.order() == 1 || o.order() == 2,
      where,
      ": order must be 1 (Euler) or 2 (Heun), got ",
      o.order());
  TORCH_CHECK(
      o.s_churn() >= 0 && std::isfinite(o.s_churn()),
      where,
      ": s_churn must be finite and >= 0, got ",
      o.s_churn());
  TORCH_CHECK(
      o.s_tmin() >= 0 && o.s_tmin() <= o.s_tmax(),
      where,
      ": need 0 <= s_tmin <= s_tmax, got s_tmin = ",
      o.s_tmin(),
      ", s_tmax = ",
      o.s_tmax());
  check_noise(o.s_noise(), where);
  const auto pts =
      detail::grid_points(model, process, o.grid(), detail::kHeunSteps, where);
  const Prediction p = model.prediction();
  c10::InferenceMode guard;
  auto x = initial_state(process, pts.front().t, shape, common, where);
  const auto n = static_cast<int64_t>(pts.size()) - 1;
  SamplerLoop loop(common, n, where);
  loop.start(x);
  ModelCaller call(batch_invariant_model(model, common), process, where);
  NoiseSource source(common);
  for (int64_t i = 0; i < n; ++i) {
    const ProcessPoint& from = pts[i];
    const ProcessPoint& to = pts[i + 1];
    // Churn: raise the noise level to s^ = s (1 + gamma), clamped to the
    // process's range.
    ProcessPoint hat = from;
    const double gamma = update::edm_gamma(
        from.scaled_sigma(), n, o.s_churn(), o.s_tmin(), o.s_tmax());
    if (gamma > 0) {
      const double sh = from.scaled_sigma() * (1.0 + gamma);
      hat = process.at(process.t_of_lambda(-std::log(sh)));
      if (hat.scaled_sigma() > from.scaled_sigma()) {
        x = update::edm_churn(
            x, source.randn(x.sizes(), x.options()), from, hat, o.s_noise());
      } else {
        hat = from;  // at t_max already
      }
    }
    const auto x0 = update::x0_of(x, call(x, hat.t), p, hat);
    auto x_pred = update::euler(x, x0, hat, to);
    if (o.order() == 2 && !to.is_data()) {
      const auto x0_pred = update::x0_of(x_pred, call(x_pred, to.t), p, to);
      x = update::heun_correct(x, x0, x_pred, x0_pred, hat, to);
    } else {
      x = std::move(x_pred);
    }
    loop.step(i + 1, to.t, x, x0);
  }
  return loop.finish(x, call.nfe());
}

// ---- registry lines
// ----------------------------------------------------------

void detail::register_heun(Registry<Sampler>& table) {
  for (const char* name : {"euler", "heun"}) {
    table.add(
        name,
        [name](const Config& c) {
          detail::OptionReader r(
              c, name, {"s_churn", "s_tmin", "s_tmax", "s_noise"});
          HeunOptions o;
          o.order(std::string(name) == "heun" ? 2 : 1)
              .s_churn(r.number("s_churn", o.s_churn()))
              .s_tmin(r.number("s_tmin", o.s_tmin()))
              .s_tmax(r.number("s_tmax", o.s_tmax()))
              .s_noise(r.number("s_noise", o.s_noise()));
          return detail::make_sampler(
              o, ::sbgm::samplers::heun, detail::steps(detail::kHeunSteps));
        },
        std::string(name) == "heun" ? "EDM's Heun (Karras et al. 2022, Alg. 2)"
                                    : "Euler with EDM's churn");
  }
}

}  // namespace sbgm::samplers
