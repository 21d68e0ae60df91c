// The few-step solvers: Euler-ancestral, EDM's Heun (and Euler) with churn,
// DPM-Solver++ 1/2M/3M and its SDE variant. The step math is in
// sbgm/samplers/updates.h; the single-evaluation linear steps are folded
// into per-step coefficient tables evaluated from those functions.

#include <c10/core/InferenceMode.h>

#include <array>
#include <cmath>

#include "../internal.h"
#include "affine.h"
#include "checks.h"
#include "options.h"
#include "sbgm/samplers/samplers.h"

namespace sbgm::samplers {

namespace {

constexpr int64_t kAncestralSteps = 50;

void check_noise(double s_noise, const char* where) {
  TORCH_CHECK(
      s_noise > 0 && std::isfinite(s_noise),
      where,
      ": s_noise must be finite and > 0, got ",
      s_noise);
}

}  // namespace

SampleResult euler_ancestral(
    const Model& model,
    const NoiseProcess& process,
    torch::IntArrayRef shape,
    const EulerAncestralOptions& o) {
  const char* where = "euler_ancestral";
  detail::check_eta(o.eta(), where);
  check_noise(o.s_noise(), where);
  const auto pts =
      detail::grid_points(model, process, o.grid(), kAncestralSteps, where);
  const Prediction p = model.prediction();
  const size_t n = pts.size() - 1;
  auto st = std::make_shared<detail::AffineSteps>(n);
  st->integer_time = process.integer_model_time();
  for (size_t i = 0; i < n; ++i) {
    const auto& from = pts[i];
    const auto& to = pts[i + 1];
    st->set_point(i, process, p, from, to.t);
    const auto c = detail::fold([&](double x, double u, double z) {
      const auto d = update::denoised(x, u, p, from);
      return update::euler_ancestral(
          x, d.x0, z, from, to, o.eta(), o.s_noise());
    });
    st->c_x[i] = c.x;
    st->c_out[i] = c.u;
    st->c_noise[i] = c.z;
  }
  c10::InferenceMode guard;
  auto x = initial_state(process, pts.front().t, shape, o.common(), where);
  return detail::run_affine(
      model, std::move(st), std::move(x), o.common(), where);
}

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

SampleResult dpm_solver(
    const Model& model,
    const NoiseProcess& process,
    torch::IntArrayRef shape,
    const DPMSolverOptions& o) {
  const char* where = o.sde() ? "dpmpp_sde" : "dpm_solver";
  const auto& common = o.common();
  detail::check_no_cuda_graph(common, where);
  TORCH_CHECK(
      o.order() >= 1 && o.order() <= (o.sde() ? 2 : 3),
      where,
      o.sde() ? ": the SDE variant supports order 1 or 2, got "
              : ": order must be 1, 2 or 3, got ",
      o.order());
  const auto pts =
      detail::grid_points(model, process, o.grid(), detail::kDPMSteps, where);
  const auto n = static_cast<int64_t>(pts.size()) - 1;
  TORCH_CHECK(
      n >= o.order(),
      where,
      ": order ",
      o.order(),
      " needs a grid of at least ",
      o.order(),
      " steps for its multistep start, got ",
      n);
  const Prediction p = model.prediction();
  const bool to_data = pts.back().is_data();
  // Each step folded from the update functions: x <- c0 x + c1 m0 + c2 m1 +
  // c3 m2 + c4 z with m0 = x0_x x + x0_out out, i.e. c_x = c0 + c1 x0_x and
  // c_out = c1 x0_out on the shared stepper.
  auto st = std::make_shared<detail::AffineSteps>(static_cast<size_t>(n));
  st->integer_time = process.integer_model_time();
  st->history = true;
  for (int64_t i = 0; i < n; ++i) {
    const auto k = static_cast<size_t>(i);
    const auto& from = pts[k];
    const auto& to = pts[k + 1];
    int64_t order = std::min<int64_t>(o.order(), i + 1);
    if (to_data && (o.lower_order_final() || to.is_data())) {
      if (to.is_data()) {
        order = 1;  // h is infinite: only the first-order step is defined
      } else if (i + 2 == n) {
        order = std::min<int64_t>(order, 2);
      }
    }
    const ProcessPoint& prev = i >= 1 ? pts[k - 1] : from;
    const ProcessPoint& prev2 = i >= 2 ? pts[k - 2] : prev;
    const auto c =
        detail::fold5([&](double x, double m0, double m1, double m2, double z) {
          if (o.sde()) {
            return order == 1
                       ? update::dpmpp_1_sde(x, m0, z, from, to)
                       : update::dpmpp_2m_sde(x, m0, m1, z, prev, from, to);
          }
          switch (order) {
            case 1:
              return update::dpmpp_1(x, m0, from, to);
            case 2:
              return update::dpmpp_2m(x, m0, m1, prev, from, to);
            default:
              return update::dpmpp_3m(x, m0, m1, m2, prev2, prev, from, to);
          }
        });
    st->set_point(k, process, p, from, to.t);
    st->c_x[k] = c[0] + c[1] * st->x0_x[k];
    st->c_out[k] = c[1] * st->x0_out[k];
    st->c_m1[k] = c[2];
    st->c_m2[k] = c[3];
    st->c_noise[k] = c[4];
  }
  c10::InferenceMode guard;
  auto x = initial_state(process, pts.front().t, shape, common, where);
  return detail::run_affine(model, std::move(st), std::move(x), common, where);
}

// ---- registry lines
// ----------------------------------------------------------

void detail::register_solvers(Registry<Sampler>& table) {
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
              o, heun, detail::steps(detail::kHeunSteps));
        },
        std::string(name) == "heun" ? "EDM's Heun (Karras et al. 2022, Alg. 2)"
                                    : "Euler with EDM's churn");
  }
  table.add(
      "euler_ancestral",
      [](const Config& c) {
        detail::OptionReader r(c, "euler_ancestral", {"eta", "s_noise"});
        EulerAncestralOptions o;
        o.eta(r.number("eta", o.eta()))
            .s_noise(r.number("s_noise", o.s_noise()));
        return detail::make_sampler(
            o, euler_ancestral, detail::steps(kAncestralSteps));
      },
      "k-diffusion's Euler-ancestral");
  struct DPM {
    const char* name;
    int64_t order;
    bool sde;
  };
  for (const DPM d :
       {DPM{"dpmpp_2m", 2, false},
        DPM{"dpmpp_3m", 3, false},
        DPM{"dpmpp_2m_sde", 2, true}}) {
    table.add(
        d.name,
        [d](const Config& c) {
          detail::OptionReader r(c, d.name, {"lower_order_final"});
          DPMSolverOptions o;
          o.order(d.order).sde(d.sde).lower_order_final(
              r.flag("lower_order_final", o.lower_order_final()));
          return detail::make_sampler(
              o, dpm_solver, detail::steps(detail::kDPMSteps));
        },
        "DPM-Solver++ (Lu et al. 2022)");
  }
}

}  // namespace sbgm::samplers
