#pragma once

// Private: explicit ODE integrators over a state of several tensors (the
// samples, and for the likelihood also the accumulated divergence), shared
// by the probability-flow sampler and log_likelihood.

#include <torch/types.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <initializer_list>
#include <utility>
#include <vector>

namespace sbgm::samplers::detail {

using State = std::vector<torch::Tensor>;
using RHS = std::function<State(double t, const State& y)>;
using OnStep = std::function<void(int64_t step, const State& y)>;

/// y + h * sum_j c_j k_j, entry by entry.
inline State combine(
    const State& y,
    double h,
    std::initializer_list<std::pair<double, const State*>> terms) {
  State out;
  out.reserve(y.size());
  for (size_t i = 0; i < y.size(); ++i) {
    auto acc = y[i].clone();
    for (const auto& [c, k] : terms) {
      if (c != 0.0) {
        acc.add_((*k)[i], h * c);
      }
    }
    out.push_back(std::move(acc));
  }
  return out;
}

/// One Euler step from t0 to t1; returns the number of evaluations.
inline int64_t euler(const RHS& f, State& y, double t0, double t1) {
  auto k1 = f(t0, y);
  y = combine(y, t1 - t0, {{1.0, &k1}});
  return 1;
}

/// Heun from t0 to t1 in n equal steps; returns the number of evaluations.
inline int64_t heun(
    const RHS& f,
    State& y,
    double t0,
    double t1,
    int64_t n,
    const OnStep& on_step) {
  const double h = (t1 - t0) / static_cast<double>(n);
  for (int64_t i = 0; i < n; ++i) {
    const double t = t0 + static_cast<double>(i) * h;
    const double tn = i == n - 1 ? t1 : t + h;
    auto k1 = f(t, y);
    auto yp = combine(y, tn - t, {{1.0, &k1}});
    auto k2 = f(tn, yp);
    y = combine(y, tn - t, {{0.5, &k1}, {0.5, &k2}});
    on_step(i + 1, y);
  }
  return 2 * n;
}

/// RMS over all entries of a / (atol + rtol * max(|y0|, |y1|)) as a 0-dim
/// float64 tensor.
inline torch::Tensor scaled_rms(
    const State& a,
    const State& y0,
    const State& y1,
    double rtol,
    double atol) {
  torch::Tensor total;
  int64_t count = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    auto scale = torch::max(y0[i].abs(), y1[i].abs()).mul_(rtol).add_(atol);
    auto s = (a[i] / scale).to(torch::kDouble).square().sum();
    total = total.defined() ? total + s : s;
    count += a[i].numel();
  }
  return (total / static_cast<double>(count)).sqrt();
}

/// Dormand–Prince 5(4) with FSAL; returns the number of evaluations.
inline int64_t dopri5(
    const RHS& f,
    State& y,
    double t0,
    double t1,
    double rtol,
    double atol,
    int64_t max_steps,
    const OnStep& on_step,
    const char* where) {
  constexpr double c2 = 1.0 / 5, c3 = 3.0 / 10, c4 = 4.0 / 5, c5 = 8.0 / 9;
  constexpr double a21 = 1.0 / 5;
  constexpr double a31 = 3.0 / 40, a32 = 9.0 / 40;
  constexpr double a41 = 44.0 / 45, a42 = -56.0 / 15, a43 = 32.0 / 9;
  constexpr double a51 = 19372.0 / 6561, a52 = -25360.0 / 2187,
                   a53 = 64448.0 / 6561, a54 = -212.0 / 729;
  constexpr double a61 = 9017.0 / 3168, a62 = -355.0 / 33, a63 = 46732.0 / 5247,
                   a64 = 49.0 / 176, a65 = -5103.0 / 18656;
  constexpr double b1 = 35.0 / 384, b3 = 500.0 / 1113, b4 = 125.0 / 192,
                   b5 = -2187.0 / 6784, b6 = 11.0 / 84;
  // b - b* (5th minus 4th order weights).
  constexpr double e1 = 71.0 / 57600, e3 = -71.0 / 16695, e4 = 71.0 / 1920,
                   e5 = -17253.0 / 339200, e6 = 22.0 / 525, e7 = -1.0 / 40;
  const double dir = t1 > t0 ? 1.0 : -1.0;
  const double span = std::abs(t1 - t0);
  auto k1 = f(t0, y);
  int64_t nfe = 1;
  // Initial step (Hairer, Norsett & Wanner, II.4).
  double h;
  {
    const double d0 = scaled_rms(y, y, y, rtol, atol).item<double>();
    const double d1 = scaled_rms(k1, y, y, rtol, atol).item<double>();
    TORCH_CHECK(
        std::isfinite(d0) && std::isfinite(d1),
        where,
        ": the model produced non-finite values (NaN or Inf) at t = ",
        t0);
    h = (d0 < 1e-5 || d1 < 1e-5) ? 1e-6 : 0.01 * d0 / d1;
    h = std::min(h, span);
  }
  double t = t0;
  int64_t tries = 0;
  int64_t accepted = 0;
  while (dir * (t1 - t) > 0) {
    TORCH_CHECK(
        tries < max_steps,
        where,
        ": Dopri5 did not reach t = ",
        t1,
        " within max_steps = ",
        max_steps,
        " steps (stopped at t = ",
        t,
        ", step ",
        h,
        ")");
    ++tries;
    const bool last = h >= dir * (t1 - t);
    if (last) {
      h = dir * (t1 - t);
    }
    const double hs = dir * h;
    auto k2 = f(t + c2 * hs, combine(y, hs, {{a21, &k1}}));
    auto k3 = f(t + c3 * hs, combine(y, hs, {{a31, &k1}, {a32, &k2}}));
    auto k4 =
        f(t + c4 * hs, combine(y, hs, {{a41, &k1}, {a42, &k2}, {a43, &k3}}));
    auto k5 =
        f(t + c5 * hs,
          combine(y, hs, {{a51, &k1}, {a52, &k2}, {a53, &k3}, {a54, &k4}}));
    auto k6 =
        f(t + hs,
          combine(
              y,
              hs,
              {{a61, &k1}, {a62, &k2}, {a63, &k3}, {a64, &k4}, {a65, &k5}}));
    auto y5 =
        combine(y, hs, {{b1, &k1}, {b3, &k3}, {b4, &k4}, {b5, &k5}, {b6, &k6}});
    const double tn = last ? t1 : t + hs;
    auto k7 = f(tn, y5);
    nfe += 6;
    State zero;
    for (const auto& v : y) {
      zero.push_back(torch::zeros_like(v));
    }
    auto err = combine(
        zero,
        hs,
        {{e1, &k1}, {e3, &k3}, {e4, &k4}, {e5, &k5}, {e6, &k6}, {e7, &k7}});
    const double en = scaled_rms(err, y, y5, rtol, atol).item<double>();
    TORCH_CHECK(
        std::isfinite(en),
        where,
        ": the model produced non-finite values (NaN or Inf) at t = ",
        t);
    if (en <= 1.0) {
      t = tn;
      y = std::move(y5);
      k1 = std::move(k7);
      on_step(++accepted, y);
    }
    const double factor =
        en == 0.0 ? 10.0 : std::clamp(0.9 * std::pow(en, -0.2), 0.2, 10.0);
    h *= factor;
  }
  return nfe;
}

}  // namespace sbgm::samplers::detail
