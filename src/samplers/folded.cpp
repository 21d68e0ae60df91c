// The folded samplers: each step linear in the state, the model's output,
// the x0 estimates of the two steps before and fresh noise (DDPM, DDIM,
// Euler-Maruyama, Euler-ancestral, DPM-Solver++ 1/2M/3M and its SDE
// variant). Each folds its update functions (sbgm/samplers/updates.h) into
// one per-step coefficient table on the host that the shared stepper
// (affine.h) runs; tests/folded_samplers_test.cpp checks every one against
// its readable loop.

#include <c10/core/InferenceMode.h>

#include <array>
#include <cmath>

#include "../internal.h"
#include "affine.h"
#include "checks.h"
#include "options.h"
#include "sbgm/samplers/samplers.h"

namespace sbgm::samplers {

using detail::check_noise;
using detail::kDefaultSteps;

namespace {

constexpr int64_t kDDIMSteps = 50;
constexpr int64_t kAncestralSteps = 50;

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

}  // namespace

void register_folded(Registry<Sampler>& table) {
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

}  // namespace detail

}  // namespace sbgm::samplers
