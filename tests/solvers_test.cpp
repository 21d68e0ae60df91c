// The few-step solvers: their update functions against independent
// computations, their convergence order measured on an exact-score mixture,
// their equivalences and their bad-input errors.

#include <cmath>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "sbgm/gmm.h"
#include "sbgm/processes/discrete.h"
#include "sbgm/processes/edm.h"
#include "sbgm/processes/ve.h"
#include "sbgm/processes/vp.h"
#include "sbgm/random.h"
#include "sbgm/samplers/samplers.h"
#include "sbgm/schedule.h"
#include "support.h"

namespace ss = sbgm::samplers;
using sbgm::GaussianMixture;
using sbgm::Prediction;
using sbgm::ProcessPoint;
using sbgm::TimeGrid;

namespace {

GaussianMixture mixture() {
  return GaussianMixture(
      torch::tensor({0.2, 0.3, 0.5}, torch::kDouble),
      torch::tensor({{-2.0, 0.0}, {2.0, 0.0}, {0.0, 2.5}}, torch::kDouble),
      torch::tensor({0.3, 0.4, 0.35}, torch::kDouble));
}

ss::CommonOptions common(uint64_t seed) {
  return ss::CommonOptions()
      .generator(sbgm::make_generator(seed))
      .dtype(torch::kDouble);
}

// ---- update functions against independent computations ----------------------

TEST(SolverUpdates, DPMSolver2MIsAlgorithmTwo) {
  // Lu et al. (2022) Alg. 2 as design.md writes it: D = (1 + 1/(2r)) m0 -
  // 1/(2r) m1, x_i = (s_i / s_{i-1}) x + a_i (1 - e^-h) D, on a VP process.
  sbgm::VPSDE vp;
  const auto prev = vp.at(0.8), from = vp.at(0.6), to = vp.at(0.35);
  auto x = torch::randn({5, 2}, torch::kDouble);
  auto m0 = torch::randn({5, 2}, torch::kDouble);
  auto m1 = torch::randn({5, 2}, torch::kDouble);
  const double l_prev = std::log(prev.alpha / prev.sigma);
  const double l_from = std::log(from.alpha / from.sigma);
  const double l_to = std::log(to.alpha / to.sigma);
  const double h = l_to - l_from, r = (l_from - l_prev) / h;
  auto D = (1 + 1 / (2 * r)) * m0 - 1 / (2 * r) * m1;
  auto want = (to.sigma / from.sigma) * x + to.alpha * (1 - std::exp(-h)) * D;
  EXPECT_TRUE(sbgm::test::all_close(
      ss::update::dpmpp_2m(x, m0, m1, prev, from, to), want, 1e-12, 1e-12));
  // First order is DDIM with eta = 0.
  auto d = ss::update::denoised(x, m0, Prediction::X0, from);
  EXPECT_TRUE(sbgm::test::all_close(
      ss::update::dpmpp_1(x, m0, from, to),
      ss::update::ddim(m0, d.eps, torch::Tensor(), from, to, 0.0),
      1e-12,
      1e-12));
}

TEST(SolverUpdates, DPMSolver3MIsExactForAQuadraticDenoiser) {
  // With the data prediction D(lambda) = c0 + c1 lambda + c2 lambda^2 (no x
  // dependence), the ODE dx/dlambda = -x + ... has the exact solution
  //   x_t = (s_t / s_s) x_s + s_t int_{l_s}^{l_t} e^l D(l) dl
  // (Lu et al. 2022, eq. 9), and the third-order multistep update, whose
  // divided differences of a quadratic are exact, must reproduce it.
  sbgm::VPSDE vp;
  const auto p2 = vp.at(0.9), p1 = vp.at(0.7), p0 = vp.at(0.5), pt = vp.at(0.3);
  const double c0 = 0.4, c1 = -0.3, c2 = 0.05;
  auto D = [&](const ProcessPoint& p) {
    const double l = p.lambda();
    return torch::full({3}, c0 + c1 * l + c2 * l * l, torch::kDouble);
  };
  // int e^l (c0 + c1 l + c2 l^2) dl = e^l (c0 + c1 (l - 1) + c2 (l^2 - 2l + 2))
  auto F = [&](double l) {
    return std::exp(l) * (c0 + c1 * (l - 1) + c2 * (l * l - 2 * l + 2));
  };
  auto x = torch::randn({3}, torch::kDouble);
  auto exact =
      (pt.sigma / p0.sigma) * x + pt.sigma * (F(pt.lambda()) - F(p0.lambda()));
  auto got = ss::update::dpmpp_3m(x, D(p0), D(p1), D(p2), p2, p1, p0, pt);
  EXPECT_TRUE(sbgm::test::all_close(got, exact, 1e-10, 1e-12));
  // The first-order step is exact for a constant one.
  auto k = torch::full({3}, 0.7, torch::kDouble);
  auto exact1 =
      (pt.sigma / p0.sigma) * x +
      pt.sigma * 0.7 * (std::exp(pt.lambda()) - std::exp(p0.lambda()));
  EXPECT_TRUE(sbgm::test::all_close(
      ss::update::dpmpp_1(x, k, p0, pt), exact1, 1e-12, 1e-12));
}

TEST(SolverUpdates, HeunIsEDMAlgorithmTwo) {
  // One step of Karras et al. Alg. 2 on the EDM process, by hand, with
  // churn: gamma = min(S_churn / N, sqrt 2 - 1).
  sbgm::EDMProcess edm;
  const double s_i = 2.0, s_next = 1.2, churn = 3.0, s_noise = 1.007;
  const int64_t N = 10;
  const double gamma = std::min(churn / N, std::sqrt(2.0) - 1);
  EXPECT_EQ(ss::update::edm_gamma(s_i, N, churn, 0.0, 1e9), gamma);
  EXPECT_EQ(ss::update::edm_gamma(s_i, N, churn, 5.0, 1e9), 0.0);
  const double s_hat = s_i * (1 + gamma);
  auto x = torch::randn({4, 2}, torch::kDouble);
  auto z = torch::randn({4, 2}, torch::kDouble);
  auto x_hat_ref = x + std::sqrt(s_hat * s_hat - s_i * s_i) * s_noise * z;
  auto x_hat = ss::update::edm_churn(x, z, edm.at(s_i), edm.at(s_hat), s_noise);
  EXPECT_TRUE(sbgm::test::all_close(x_hat, x_hat_ref, 1e-12, 1e-12));
  // A denoiser D(x, s) = x / (1 + s^2) (data N(0, 1)).
  auto D = [](const torch::Tensor& v, double s) { return v / (1 + s * s); };
  auto d = (x_hat - D(x_hat, s_hat)) / s_hat;
  auto x_p = x_hat + (s_next - s_hat) * d;
  auto d_p = (x_p - D(x_p, s_next)) / s_next;
  auto want = x_hat + (s_next - s_hat) * 0.5 * (d + d_p);
  auto pred =
      ss::update::euler(x_hat, D(x_hat, s_hat), edm.at(s_hat), edm.at(s_next));
  EXPECT_TRUE(sbgm::test::all_close(pred, x_p, 1e-12, 1e-12));
  auto got = ss::update::heun_correct(
      x_hat,
      D(x_hat, s_hat),
      pred,
      D(pred, s_next),
      edm.at(s_hat),
      edm.at(s_next));
  EXPECT_TRUE(sbgm::test::all_close(got, want, 1e-12, 1e-12));
}

TEST(SolverUpdates, AncestralSplitIsKDiffusions) {
  const double from = 3.0, to = 1.5;
  const double up =
      std::sqrt(to * to * (from * from - to * to) / (from * from));
  auto s = ss::update::ancestral_split(from, to);
  EXPECT_NEAR(s.sigma_up, up, 1e-15);
  EXPECT_NEAR(s.sigma_down, std::sqrt(to * to - up * up), 1e-15);
  auto half = ss::update::ancestral_split(from, to, 0.5);
  EXPECT_NEAR(half.sigma_up, 0.5 * up, 1e-15);
  auto last = ss::update::ancestral_split(from, 0.0);
  EXPECT_EQ(last.sigma_up, 0.0);
  EXPECT_EQ(last.sigma_down, 0.0);
}

// ---- equivalences
// ------------------------------------------------------------

TEST(Solvers, FirstOrderSolversAreDDIM) {
  // In the scaled variables, Euler is DDIM with eta = 0, Euler-ancestral
  // with eta is DDIM with eta, and DPM-Solver++ of order 1 is DDIM too.
  auto vp = std::make_shared<sbgm::VPSDE>();
  auto model = mixture().model(vp, Prediction::Epsilon);
  auto x_init = torch::randn({64, 2}, torch::kDouble);
  auto grid = sbgm::grids::log_snr(*vp, 15);
  auto ddim = [&](double eta) {
    return ss::ddim(
               model,
               *vp,
               {64, 2},
               ss::DDIMOptions().grid(grid).eta(eta).common(
                   common(3).x_init(x_init)))
        .samples;
  };
  auto euler = ss::heun(
      model,
      *vp,
      {64, 2},
      ss::HeunOptions().grid(grid).order(1).common(common(3).x_init(x_init)));
  EXPECT_TRUE(sbgm::test::all_close(euler.samples, ddim(0.0), 1e-10, 1e-10));
  EXPECT_EQ(euler.nfe, 15);
  auto dpm1 = ss::dpm_solver(
      model,
      *vp,
      {64, 2},
      ss::DPMSolverOptions().grid(grid).order(1).common(
          common(3).x_init(x_init)));
  EXPECT_TRUE(sbgm::test::all_close(dpm1.samples, ddim(0.0), 1e-10, 1e-10));
  for (double eta : {0.5, 1.0}) {
    auto ea = ss::euler_ancestral(
        model,
        *vp,
        {64, 2},
        ss::EulerAncestralOptions().grid(grid).eta(eta).common(
            common(3).x_init(x_init)));
    EXPECT_TRUE(sbgm::test::all_close(ea.samples, ddim(eta), 1e-10, 1e-10))
        << eta;
  }
}

// ---- convergence order
// ---------------------------------------------------------

// The endpoint error of each deterministic solver against a Dopri5 solution
// (rtol = atol = 1e-12) of the same probability-flow ODE, from the same 64
// starting points over the same span (t = 1 down to the grid's smallest
// positive time 0.01, no final step to the data), at NFE 8 to 256 on
// log-SNR-uniform grids, in float64. The least-squares slope of log error
// (the median over the points) against log NFE is the order: 1 for Euler
// and DDIM, 2 for Heun and DPM-Solver++ 2M, 3 for 3M (within +-0.3).
// The slope of log(error) against log(NFE) of a sampler (by name, with its
// options) on the exact eps model of the mixture under VP, from t = 1
// (lambda = -5) down to t = 0.01 (sigma / alpha = 0.14), on log-SNR grids
// of 8 to 256 evaluations, against Dopri5 at 1e-12; prints the errors.
double measured_order(
    const std::string& sampler,
    const sbgm::Config& options,
    int evals_per_step,
    const std::string& label) {
  auto vp = std::make_shared<sbgm::VPSDE>();
  const auto g = mixture();
  auto model = g.model(vp, Prediction::Epsilon);
  const auto x1 = GaussianMixture(
                      g.weights(),
                      g.means() * vp->alpha(1.0),
                      (g.stds() * vp->alpha(1.0))
                          .square()
                          .add(std::pow(vp->sigma(1.0), 2))
                          .sqrt())
                      .sample(64, sbgm::make_generator(5), torch::kDouble);
  const double t_end = 0.01;
  static const auto ref = ss::ode(
                              model,
                              *vp,
                              {64, 2},
                              ss::ODEOptions()
                                  .grid(TimeGrid({1.0, t_end}))
                                  .rtol(1e-12)
                                  .atol(1e-12)
                                  .max_steps(100000)
                                  .common(common(0).x_init(x1)))
                              .samples;
  std::vector<double> lx, ly;
  for (int64_t nfe : {8, 16, 32, 64, 128, 256}) {
    const int64_t steps = nfe / evals_per_step;
    auto grid = sbgm::grids::log_snr(
        *vp, steps, sbgm::GridOptions().to_data(false).t_end(t_end));
    auto r = ss::sample(
        model,
        *vp,
        {64, 2},
        ss::SampleOptions()
            .sampler(sampler)
            .options(options)
            .time_grid(grid)
            .common(common(0).x_init(x1)));
    EXPECT_EQ(r.nfe, nfe) << label;
    // The median over the points of each point's error: a point near the
    // boundary between two components can flip to the other one at
    // coarse steps (an O(1) error that says nothing about the order).
    const double err =
        (r.samples - ref).square().sum(1).sqrt().median().item<double>();
    lx.push_back(std::log(static_cast<double>(nfe)));
    ly.push_back(std::log(err));
  }
  const double n = static_cast<double>(lx.size());
  double mx = 0, my = 0;
  for (size_t i = 0; i < lx.size(); ++i) {
    mx += lx[i] / n;
    my += ly[i] / n;
  }
  double sxy = 0, sxx = 0;
  for (size_t i = 0; i < lx.size(); ++i) {
    sxy += (lx[i] - mx) * (ly[i] - my);
    sxx += (lx[i] - mx) * (lx[i] - mx);
  }
  const double slope = -sxy / sxx;
  std::printf("%-10s order %.2f (errors", label.c_str(), slope);
  for (double v : ly) {
    std::printf(" %.2e", std::exp(v));
  }
  std::printf(")\n");
  return slope;
}

TEST(Solvers, ConvergenceOrdersOnExactScores) {
  struct Case {
    std::string sampler;
    int evals_per_step;
    double order;
  };
  for (const auto& c : std::vector<Case>{
           {"euler", 1, 1.0},
           {"ddim", 1, 1.0},
           {"heun", 2, 2.0},
           {"dpmpp_2m", 1, 2.0},
           {"dpmpp_3m", 1, 3.0}}) {
    const double slope =
        measured_order(c.sampler, sbgm::Config(), c.evals_per_step, c.sampler);
    EXPECT_NEAR(slope, c.order, 0.3) << c.sampler;
  }
}

TEST(Solvers, UniPCConvergenceOrdersOnExactScores) {
  // UniP-p with UniC: order p + 1 (Zhao et al. 2023, Thm. 3.1).
  for (int64_t p : {1, 2, 3}) {
    const double slope = measured_order(
        "unipc", sbgm::Config{{"order", p}}, 1, "unipc-" + std::to_string(p));
    EXPECT_NEAR(slope, static_cast<double>(p + 1), 0.3) << "order " << p;
  }
}

// ---- stochastic EDM sampling with churn
// ------------------------------------------

TEST(Solvers, HeunWithChurnLandsOnTheMixture) {
  auto edm = std::make_shared<sbgm::EDMProcess>();
  const auto g = mixture();
  auto r = ss::heun(
      g.model(edm, Prediction::X0),
      *edm,
      {2000, 2},
      ss::HeunOptions()
          .grid(40)
          .s_churn(40)
          .s_tmin(0.05)
          .s_tmax(50)
          .s_noise(1.003)
          .common(common(8)));
  EXPECT_EQ(r.nfe, 2 * 39 + 1);
  // Weights and moments (the deterministic map would carry the prior's
  // mismatch; churn re-noises).
  auto x = r.samples;
  auto comp = g.responsibilities(x).argmax(1);
  for (int64_t k = 0; k < 3; ++k) {
    const double w = g.weights()[k].item<double>();
    EXPECT_NEAR(
        (comp == k).to(torch::kDouble).mean().item<double>(),
        w,
        4 * std::sqrt(w * (1 - w) / 2000) + 0.02);
  }
  EXPECT_TRUE(sbgm::test::all_close(x.mean(0), g.mean(), 0, 0.12));
}

// ---- bad input
// -------------------------------------------------------------------

TEST(SolversErrors, BadInput) {
  auto vp = std::make_shared<sbgm::VPSDE>();
  auto model = mixture().model(vp);
  EXPECT_THROW_MSG(
      ss::dpm_solver(model, *vp, {4, 2}, ss::DPMSolverOptions().order(4)),
      "dpm_solver: order must be 1, 2 or 3, got 4");
  EXPECT_THROW_MSG(
      ss::dpm_solver(
          model, *vp, {4, 2}, ss::DPMSolverOptions().order(3).sde(true)),
      "dpmpp_sde: the SDE variant supports order 1 or 2, got 3");
  EXPECT_THROW_MSG(
      ss::dpm_solver(
          model, *vp, {4, 2}, ss::DPMSolverOptions().order(3).grid(2)),
      "order 3 needs a grid of at least 3 steps for its multistep start, got "
      "2");
  EXPECT_THROW_MSG(
      ss::heun(model, *vp, {4, 2}, ss::HeunOptions().s_churn(-1)),
      "heun: s_churn must be finite and >= 0, got -1");
  EXPECT_THROW_MSG(
      ss::heun(model, *vp, {4, 2}, ss::HeunOptions().s_noise(0)),
      "heun: s_noise must be finite and > 0, got 0");
  EXPECT_THROW_MSG(
      ss::heun(model, *vp, {4, 2}, ss::HeunOptions().order(3)),
      "heun: order must be 1 (Euler) or 2 (Heun), got 3");
  EXPECT_THROW_MSG(
      ss::heun(model, *vp, {4, 2}, ss::HeunOptions().s_tmin(2).s_tmax(1)),
      "need 0 <= s_tmin <= s_tmax, got s_tmin = 2, s_tmax = 1");
  EXPECT_THROW_MSG(
      ss::euler_ancestral(
          model, *vp, {4, 2}, ss::EulerAncestralOptions().s_noise(-1)),
      "euler_ancestral: s_noise must be finite and > 0, got -1");
  EXPECT_THROW_MSG(
      ss::euler_ancestral(
          model, *vp, {4, 2}, ss::EulerAncestralOptions().eta(-0.5)),
      "eta must be finite and >= 0, got -0.5");
  EXPECT_THROW_MSG(
      ss::sample(
          model,
          *vp,
          {4, 2},
          ss::SampleOptions().sampler("heun").set("s_churn", -2)),
      "s_churn must be finite and >= 0, got -2");
}

}  // namespace
