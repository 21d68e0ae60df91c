#pragma once

/// \file
/// The step math of every sampler, as readable update functions.
///
/// Each function moves a state x at the grid point `from` to the next point
/// `to` (from.t > to.t; `to` may be the data, alpha = 1, sigma = 0), given
/// what the model said at `from` (as x0 and eps, or as the score) and fresh
/// noise z ~ N(0, I) (which may be left undefined where a step adds no
/// noise). They are templates over T = torch::Tensor (what a
/// sampler of your own calls) and T = double: the built-in samplers fold
/// each step into a few per-step coefficients by evaluating these very
/// functions on doubles (every step below is linear in x, the model's
/// output and z), so the fast path and these formulas cannot drift apart;
/// tests check both against independent float64 computations.
///
/// Notation: a = alpha, s = sigma at `from`; a', s' at `to`.

#include <algorithm>
#include <cmath>

#include "sbgm/model.h"
#include "sbgm/process.h"

namespace sbgm::samplers {

/// The variance of the DDPM ancestral step.
enum class DDPMVariance {
  /// sigma^2 = s^2 - (a / a')^2 s'^2, the forward variance from `to` to
  /// `from` (beta_t between consecutive DDPM steps; Ho et al.).
  Beta,
  /// sigma^2 = that times s'^2 / s^2, the variance of q(x_to | x_from, x0)
  /// (beta~_t between consecutive steps).
  Posterior,
};

namespace update {

/// The model's output read as x0 and eps at a point (x = a x0 + s eps).
template <class T>
struct Denoised {
  T x0;
  T eps;
};

/// x0 and eps from a model output that predicts `p`, through the one
/// conversion of the library (prediction_coeffs).
template <class T>
Denoised<T> denoised(
    const T& x, const T& out, Prediction p, const ProcessPoint& at) {
  const auto to_x0 = prediction_coeffs(p, Prediction::X0, at.alpha, at.sigma);
  const auto to_eps =
      prediction_coeffs(p, Prediction::Epsilon, at.alpha, at.sigma);
  return {
      to_x0.x_coeff * x + to_x0.out_coeff * out,
      to_eps.x_coeff * x + to_eps.out_coeff * out};
}

/// Only x0 (what the scaled-variable solvers need).
template <class T>
T x0_of(const T& x, const T& out, Prediction p, const ProcessPoint& at) {
  if (p == Prediction::X0) {
    return out;
  }
  const auto c = prediction_coeffs(p, Prediction::X0, at.alpha, at.sigma);
  return c.x_coeff * x + c.out_coeff * out;
}

/// The ancestral step of DDPM (Ho et al. 2020, eq. 6-7, Alg. 2) between any
/// two times (Kingma et al. 2021, App. A): the mean of q(x_to | x_from, x0),
///   mean = (a/a') s'^2 / s^2 x + a' v / s^2 x0,  v = s^2 - (a/a')^2 s'^2,
/// plus noise of the chosen variance (none into the data). Between
/// consecutive DDPM steps the mean is (x - beta / sqrt(1 - abar) eps) /
/// sqrt(alpha).
template <class T>
T ddpm(
    const T& x,
    const T& x0,
    const T& z,
    const ProcessPoint& from,
    const ProcessPoint& to,
    DDPMVariance variance) {
  const double a_ts = from.alpha / to.alpha;  // alpha_{t|s}
  const double s2 = from.sigma * from.sigma, s2_to = to.sigma * to.sigma;
  const double v = s2 - a_ts * a_ts * s2_to;  // sigma^2_{t|s}
  const double mean_x = a_ts * s2_to / s2;
  const double mean_x0 = to.alpha * v / s2;
  const double var = to.is_data()                          ? 0.0
                     : variance == DDPMVariance::Posterior ? v * s2_to / s2
                                                           : v;
  const T mean = mean_x * x + mean_x0 * x0;
  return var > 0.0 ? mean + std::sqrt(var) * z : mean;
}

/// DDIM (Song, Meng & Ermon 2021, eq. 12) between any two times:
///   x_to = a' x0 + sqrt(s'^2 - c^2) eps + c z,
///   c = eta * sqrt(v s'^2 / s^2), v = s^2 - (a/a')^2 s'^2
/// (eta = 1: the DDPM posterior; eta = 0: deterministic, the first-order
/// exponential integrator of the probability-flow ODE in lambda).
template <class T>
T ddim(
    const T& x0,
    const T& eps,
    const T& z,
    const ProcessPoint& from,
    const ProcessPoint& to,
    double eta) {
  const double a_ts = from.alpha / to.alpha;
  const double s2 = from.sigma * from.sigma, s2_to = to.sigma * to.sigma;
  const double v = s2 - a_ts * a_ts * s2_to;
  const double c = eta * std::sqrt(std::max(v * s2_to / s2, 0.0));
  const T x_to = to.alpha * x0 + std::sqrt(std::max(s2_to - c * c, 0.0)) * eps;
  return c > 0.0 ? x_to + c * z : x_to;
}

/// Euler-Maruyama on the reverse SDE dx = [f x - g^2 score] dt + g dw_bar,
/// one step of length h > 0 backwards in time:
///   x <- x - (f x - g^2 score) h + g sqrt(h) z.
template <class T>
T euler_maruyama(
    const T& x, const T& score, const T& z, double f, double g2, double h) {
  const T mean = x - (f * x - g2 * score) * h;
  return g2 * h > 0.0 ? mean + std::sqrt(g2 * h) * z : mean;
}

/// The reverse-diffusion predictor of Song et al. (2021, eq. 46; score_sde's
/// ReverseDiffusionPredictor) with the process's own discretization: over
/// the step the forward process scales by k = a / a' and adds variance G^2
/// = s^2 - k^2 s'^2; then
///   x <- x - (k - 1) x + G^2 score + G z.
template <class T>
T reverse_diffusion(
    const T& x,
    const T& score,
    const T& z,
    const ProcessPoint& from,
    const ProcessPoint& to) {
  const double k = from.alpha / to.alpha;
  const double G2 =
      std::max(from.sigma * from.sigma - k * k * to.sigma * to.sigma, 0.0);
  const T mean = (2.0 - k) * x + G2 * score;
  return G2 > 0.0 ? mean + std::sqrt(G2) * z : mean;
}

/// The drift of the probability-flow ODE (Song et al. 2021, eq. 13):
///   dx/dt = f x - g^2 score / 2.
template <class T>
T probability_flow(const T& x, const T& score, double f, double g2) {
  return f * x - (0.5 * g2) * score;
}

// ---- solvers in the scaled variables of EDM and k-diffusion ----------------
// With x~ = x / alpha and s~ = sigma / alpha = exp(-lambda) (ProcessPoint::
// scaled_sigma), every process's probability-flow ODE is dx~/ds~ = (x~ -
// D) / s~, D the model's x0 (Karras et al. 2022, eq. 4 with s(t) = alpha).
// The functions below take and return x itself (not x~): they scale at
// `from` and unscale at `to`.

/// k-diffusion's ancestral split of a step from s~_from to s~_to:
/// sigma_up = min(s~_to, eta sqrt(s~_to^2 (s~_from^2 - s~_to^2) / s~_from^2)),
/// sigma_down = sqrt(s~_to^2 - sigma_up^2).
struct AncestralSplit {
  double sigma_down;
  double sigma_up;
};
inline AncestralSplit ancestral_split(
    double sigma_from, double sigma_to, double eta = 1.0) {
  if (sigma_to == 0.0 || eta == 0.0) {
    return {sigma_to, 0.0};
  }
  const double up = std::min(
      sigma_to,
      eta * std::sqrt(
                sigma_to * sigma_to *
                (sigma_from * sigma_from - sigma_to * sigma_to) /
                (sigma_from * sigma_from)));
  return {std::sqrt(sigma_to * sigma_to - up * up), up};
}

/// Euler-ancestral (k-diffusion's sample_euler_ancestral): in the scaled
/// variables, d = (x~ - D) / s~, x~ <- x~ + (sigma_down - s~) d + sigma_up
/// s_noise z.
template <class T>
T euler_ancestral(
    const T& x,
    const T& x0,
    const T& z,
    const ProcessPoint& from,
    const ProcessPoint& to,
    double eta = 1.0,
    double s_noise = 1.0) {
  const double s = from.scaled_sigma();
  const auto split = ancestral_split(s, to.scaled_sigma(), eta);
  const T xs = x * (1.0 / from.alpha);
  const T d = (xs - x0) * (1.0 / s);
  const T moved = xs + (split.sigma_down - s) * d;
  const double up = split.sigma_up * s_noise;
  return to.alpha * (up > 0.0 ? moved + up * z : moved);
}

/// One Euler step of the probability-flow ODE in the scaled variables from
/// s~_from to s~_to with the denoised D at `from`: x~ + (s~_to - s~_from)
/// (x~ - D) / s~_from (the same map as DDIM with eta = 0).
template <class T>
T euler(
    const T& x, const T& x0, const ProcessPoint& from, const ProcessPoint& to) {
  const double s = from.scaled_sigma();
  const T xs = x * (1.0 / from.alpha);
  return to.alpha * (xs + (to.scaled_sigma() - s) * ((xs - x0) * (1.0 / s)));
}

/// EDM's churn (Karras et al. 2022, Alg. 2, lines 5-6): gamma = min(s_churn
/// / N, sqrt(2) - 1) while s~ lies in [s_tmin, s_tmax], else 0; the noise
/// level rises to s^ = s~ (1 + gamma).
inline double edm_gamma(
    double scaled_sigma,
    int64_t num_steps,
    double s_churn,
    double s_tmin,
    double s_tmax) {
  if (s_churn <= 0.0 || scaled_sigma < s_tmin || scaled_sigma > s_tmax) {
    return 0.0;
  }
  return std::min(
      s_churn / static_cast<double>(num_steps), std::sqrt(2.0) - 1.0);
}

/// The churned state at the higher noise level: x^ = alpha^ (x~ +
/// sqrt(s^^2 - s~^2) s_noise z) for x at `from` and the point `hat` (at s^).
template <class T>
T edm_churn(
    const T& x,
    const T& z,
    const ProcessPoint& from,
    const ProcessPoint& hat,
    double s_noise) {
  const double s = from.scaled_sigma(), sh = hat.scaled_sigma();
  const double add = std::sqrt(std::max(sh * sh - s * s, 0.0)) * s_noise;
  const T xs = x * (1.0 / from.alpha);
  return hat.alpha * (add > 0.0 ? xs + add * z : xs);
}

/// Heun's correction (EDM Alg. 2, lines 9-11): from x^ at `hat` (denoised
/// D^) and the Euler prediction x' at `to` (denoised D'), x~ <- x~^ + (s~_to
/// - s^) (d + d') / 2 with d = (x~^ - D^) / s^, d' = (x~' - D') / s~_to.
/// Into the data (s~_to = 0, where d' is undefined) the Euler step x'
/// itself.
template <class T>
T heun_correct(
    const T& x_hat,
    const T& x0_hat,
    const T& x_pred,
    const T& x0_pred,
    const ProcessPoint& hat,
    const ProcessPoint& to) {
  if (to.is_data()) {
    return x_pred;
  }
  const double sh = hat.scaled_sigma(), st = to.scaled_sigma();
  const T xh = x_hat * (1.0 / hat.alpha);
  const T d = (xh - x0_hat) * (1.0 / sh);
  const T dp = (x_pred * (1.0 / to.alpha) - x0_pred) * (1.0 / st);
  return to.alpha * (xh + (0.5 * (st - sh)) * (d + dp));
}

// ---- DPM-Solver++ (Lu et al. 2022), data prediction -----------------------
// Multistep updates from the current point `from` (x and the model's x0 m0
// there) to `to`, with earlier x0 estimates m1 at `prev` and m2 at `prev2`;
// h = lambda_to - lambda_from, h_0 = lambda_from - lambda_prev,
// h_1 = lambda_prev - lambda_prev2, r0 = h_0 / h, r1 = h_1 / h.

/// First order (DDIM with eta = 0): x_to = (s_to / s) x - a_to (e^-h - 1)
/// m0. Into the data (h = inf): x_to = m0.
template <class T>
T dpmpp_1(
    const T& x, const T& m0, const ProcessPoint& from, const ProcessPoint& to) {
  if (to.is_data()) {
    return m0;
  }
  const double h = to.lambda() - from.lambda();
  return (to.sigma / from.sigma) * x - (to.alpha * std::expm1(-h)) * m0;
}

/// DPM-Solver++(2M) (Alg. 2): x_to = (s_to / s) x - a_to (e^-h - 1) (m0 +
/// (m0 - m1) / (2 r0)). Into the data (h = inf) the first-order step: m0.
template <class T>
T dpmpp_2m(
    const T& x,
    const T& m0,
    const T& m1,
    const ProcessPoint& prev,
    const ProcessPoint& from,
    const ProcessPoint& to) {
  if (to.is_data()) {
    return m0;
  }
  const double h = to.lambda() - from.lambda();
  const double r0 = (from.lambda() - prev.lambda()) / h;
  const double e = std::expm1(-h);
  return (to.sigma / from.sigma) * x - (to.alpha * e) * m0 -
         (0.5 * to.alpha * e / r0) * (m0 - m1);
}

/// DPM-Solver++(3M), the third-order multistep exponential integrator of
/// the data prediction: with the divided differences
///   D1_0 = (m0 - m1) / r0, D1_1 = (m1 - m2) / r1,
///   D1 = D1_0 + r0 / (r0 + r1) (D1_0 - D1_1)   (h D'),
///   D2 = 2 (D1_0 - D1_1) / (r0 + r1)          (h^2 D''),
///   x_to = (s_to / s) x - a_to (e^-h - 1) m0 + a_to ((e^-h - 1) / h + 1) D1
///          - a_to ((e^-h - 1 + h) / h^2 - 1/2) D2,
/// the Taylor expansion of m(lambda) to second order integrated exactly, so
/// a data prediction quadratic in lambda is followed exactly. (The
/// reference implementation, diffusers and k-diffusion take D2 without the
/// factor 2, which halves the second-derivative term and leaves the method
/// second order; see the solver tests.) Into the data (h = inf) the
/// first-order step: m0.
template <class T>
T dpmpp_3m(
    const T& x,
    const T& m0,
    const T& m1,
    const T& m2,
    const ProcessPoint& prev2,
    const ProcessPoint& prev,
    const ProcessPoint& from,
    const ProcessPoint& to) {
  if (to.is_data()) {
    return m0;
  }
  const double h = to.lambda() - from.lambda();
  const double r0 = (from.lambda() - prev.lambda()) / h;
  const double r1 = (prev.lambda() - prev2.lambda()) / h;
  const T d10 = (m0 - m1) * (1.0 / r0);
  const T d11 = (m1 - m2) * (1.0 / r1);
  const T d1 = d10 + (r0 / (r0 + r1)) * (d10 - d11);
  const T d2 = (d10 - d11) * (2.0 / (r0 + r1));
  const double e = std::expm1(-h);
  return (to.sigma / from.sigma) * x - (to.alpha * e) * m0 +
         (to.alpha * (e / h + 1.0)) * d1 -
         (to.alpha * ((e + h) / (h * h) - 0.5)) * d2;
}

/// SDE-DPM-Solver++, first order (Lu et al. 2022, App.; diffusers'
/// sde-dpmsolver++): x_to = (s_to / s) e^-h x + a_to (1 - e^-2h) m0 + s_to
/// sqrt(1 - e^-2h) z. Into the data: x_to = m0 (no noise).
template <class T>
T dpmpp_1_sde(
    const T& x,
    const T& m0,
    const T& z,
    const ProcessPoint& from,
    const ProcessPoint& to) {
  if (to.is_data()) {
    return m0;
  }
  const double h = to.lambda() - from.lambda();
  const double k = -std::expm1(-2.0 * h);  // 1 - e^-2h
  const T mean =
      (to.sigma / from.sigma * std::exp(-h)) * x + (to.alpha * k) * m0;
  return mean + (to.sigma * std::sqrt(k)) * z;
}

/// SDE-DPM-Solver++(2M) (diffusers' midpoint form): the first-order step
/// plus a_to (1 - e^-2h) (m0 - m1) / (2 r0). Into the data (h = inf) the
/// first-order step: m0 (no noise).
template <class T>
T dpmpp_2m_sde(
    const T& x,
    const T& m0,
    const T& m1,
    const T& z,
    const ProcessPoint& prev,
    const ProcessPoint& from,
    const ProcessPoint& to) {
  if (to.is_data()) {
    return m0;
  }
  const double h = to.lambda() - from.lambda();
  const double r0 = (from.lambda() - prev.lambda()) / h;
  const double k = -std::expm1(-2.0 * h);
  return dpmpp_1_sde(x, m0, z, from, to) +
         (0.5 * to.alpha * k / r0) * (m0 - m1);
}

}  // namespace update

}  // namespace sbgm::samplers
