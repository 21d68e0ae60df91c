// Every sampler on exact scores: a 2-D Gaussian mixture whose perturbed
// marginals (VP, VE, sub-VP, the DDPM chain) are again mixtures with a
// closed-form score and eps.

#include <cmath>

#include "sbgm/gmm.h"
#include "sbgm/metrics/distances.h"
#include "sbgm/samplers/ancestral.h"
#include "sbgm/samplers/ode.h"
#include "sbgm/samplers/sde_samplers.h"
#include "sbgm/schedule.h"
#include "sbgm/sde.h"
#include "support.h"

namespace ss = sbgm::samplers;
using sbgm::GaussianMixture;
using sbgm::Prediction;

namespace {

constexpr int64_t kN = 2000;  // samples per check

GaussianMixture mixture() {
  return GaussianMixture(
      torch::tensor({0.2, 0.3, 0.5}, torch::kDouble),
      torch::tensor({{-2.0, 0.0}, {2.0, 0.0}, {0.0, 2.5}}, torch::kDouble),
      torch::tensor({0.3, 0.4, 0.35}, torch::kDouble));
}

/// The data mixture perturbed by x = m x0 + s z: what a sampler that stops
/// at t = eps targets.
GaussianMixture perturbed(const GaussianMixture& g, double m, double s) {
  return GaussianMixture(
      g.weights(), g.means() * m, (g.stds() * m).square().add(s * s).sqrt());
}

torch::Generator gen(uint64_t seed) {
  return torch::make_generator<torch::CPUGeneratorImpl>(seed);
}

/// Mean, covariance and weights within Monte-Carlo error (plus a small
/// allowance `bias` for the sampler's discretization), and MMD^2 against
/// exact samples below a threshold from the spread of MMD^2 between exact
/// sample sets.
void check_samples(
    const torch::Tensor& samples,
    const GaussianMixture& target,
    double bias = 0.0) {
  const int64_t D = target.dim();
  ASSERT_EQ(samples.dim(), 2);
  ASSERT_EQ(samples.size(1), D);
  const int64_t N = samples.size(0);
  auto x = samples.to(torch::kDouble);
  const double n = static_cast<double>(N);
  // Mean: 4 standard errors.
  auto mean = x.mean(0);
  auto se_mean = (target.covariance().diagonal() / n).sqrt();
  auto err_mean = (mean - target.mean()).abs();
  EXPECT_TRUE((err_mean <= 4 * se_mean + bias).all().item<bool>())
      << "mean " << mean << " vs " << target.mean();
  // Covariance: 5 standard errors of each entry (estimated from the samples).
  auto xc = x - target.mean();
  for (int64_t i = 0; i < D; ++i) {
    for (int64_t j = 0; j < D; ++j) {
      auto prod = xc.select(1, i) * xc.select(1, j);
      double est = prod.mean().item<double>() -
                   (mean[i] - target.mean()[i]).item<double>() *
                       (mean[j] - target.mean()[j]).item<double>();
      double se = prod.std().item<double>() / std::sqrt(n);
      double ref = target.covariance()[i][j].item<double>();
      EXPECT_NEAR(est, ref, 5 * se + bias) << "cov[" << i << "][" << j << "]";
    }
  }
  // Weights: assign each sample to the nearest mean; 4 binomial errors.
  auto d = torch::cdist(x, target.means());
  auto comp = d.argmin(1);
  for (int64_t k = 0; k < target.num_components(); ++k) {
    double w = target.weights()[k].item<double>();
    double frac = (comp == k).to(torch::kDouble).mean().item<double>();
    EXPECT_NEAR(frac, w, 4 * std::sqrt(w * (1 - w) / n) + bias)
        << "weight of component " << k;
  }
  // MMD^2 (unbiased, first 1000 samples) against exact samples; threshold
  // from 3 null draws.
  const int64_t M = std::min<int64_t>(N, 1000);
  auto ref = target.sample(M, gen(1000), torch::kDouble);
  double null_max = 0;
  for (uint64_t r = 0; r < 3; ++r) {
    auto a = target.sample(M, gen(2000 + r), torch::kDouble);
    auto b = target.sample(M, gen(3000 + r), torch::kDouble);
    null_max = std::max(
        null_max, std::abs(sbgm::metrics::mmd_rbf(a, b).item<double>()));
  }
  double mmd = sbgm::metrics::mmd_rbf(x.slice(0, 0, M), ref).item<double>();
  EXPECT_LT(mmd, 4 * null_max + bias * 0.1) << "null max " << null_max;
}

std::shared_ptr<sbgm::SDE> make_sde(const std::string& name) {
  if (name == "vp")
    return std::make_shared<sbgm::VPSDE>();
  if (name == "subvp")
    return std::make_shared<sbgm::SubVPSDE>();
  return std::make_shared<sbgm::VESDE>(25.0);
}

GaussianMixture target_at_eps(const sbgm::SDE& sde, double eps) {
  return perturbed(mixture(), sde.mean_coeff(eps), sde.std(eps));
}

ss::CommonOptions common(uint64_t seed) {
  return ss::CommonOptions().generator(gen(seed)).dtype(torch::kDouble);
}

}  // namespace

// ---- discrete samplers ------------------------------------------------------

TEST(Samplers, DDPMAncestralBothVariances) {
  auto sched = sbgm::Schedule::linear(500);
  auto g = mixture();
  auto model = g.schedule_model(sched, Prediction::Epsilon);
  auto r = ss::ddpm(model, sched, {kN, 2}, {}, common(1));
  EXPECT_EQ(r.nfe, 500);
  check_samples(r.samples, g);
  // A score model under the ancestral sampler, posterior variance.
  auto score_model = g.schedule_model(sched, Prediction::Score);
  auto r2 = ss::ddpm(
      score_model,
      sched,
      {kN, 2},
      ss::DDPMOptions().variance(ss::DDPMVariance::Posterior),
      common(2));
  check_samples(r2.samples, g);
}

TEST(Samplers, DDPMClippingKeepsSamplesInRange) {
  auto sched = sbgm::Schedule::linear(200);
  auto g = mixture();
  auto model = g.schedule_model(sched, Prediction::X0);
  auto r = ss::ddpm(
      model,
      sched,
      {500, 2},
      ss::DDPMOptions().clip_x0(true).clip_range(1.0),
      common(3));
  // The last step returns clip(x0) exactly (coef1 = 1, coef2 = 0 at t = 0).
  EXPECT_LE(r.samples.abs().max().item<double>(), 1.0 + 1e-12);
}

TEST(Samplers, DDIMDeterministicAndStochastic) {
  auto sched = sbgm::Schedule::linear(1000);
  auto g = mixture();
  auto model = g.schedule_model(sched, Prediction::Epsilon);
  auto r0 = ss::ddim(
      model, sched, {kN, 2}, ss::DDIMOptions().num_steps(100), common(4));
  EXPECT_EQ(r0.nfe, 100);
  check_samples(r0.samples, g, 0.02);
  auto r1 = ss::ddim(
      model,
      sched,
      {kN, 2},
      ss::DDIMOptions().num_steps(200).eta(1.0),
      common(5));
  check_samples(r1.samples, g, 0.02);
  // eta = 0 is deterministic given the start.
  auto x_init = torch::randn({10, 2}, torch::kDouble);
  auto a = ss::ddim(
      model,
      sched,
      {10, 2},
      ss::DDIMOptions().num_steps(20),
      ss::CommonOptions().x_init(x_init).generator(gen(1)));
  auto b = ss::ddim(
      model,
      sched,
      {10, 2},
      ss::DDIMOptions().num_steps(20),
      ss::CommonOptions().x_init(x_init).generator(gen(2)));
  EXPECT_TRUE(torch::equal(a.samples, b.samples));
}

TEST(Samplers, DDIMTimestepSubsets) {
  using V = std::vector<int64_t>;
  // round(i (T-1) / (S-1)), worked out by hand.
  EXPECT_EQ(ss::ddim_timesteps(10, 4), (V{0, 3, 6, 9}));
  EXPECT_EQ(ss::ddim_timesteps(10, 3), (V{0, 5, 9}));  // 4.5 rounds up
  EXPECT_EQ(ss::ddim_timesteps(10, 10), (V{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
  EXPECT_EQ(ss::ddim_timesteps(10, 1), (V{9}));
  EXPECT_EQ(ss::ddim_timesteps(10, 2), (V{0, 9}));
  EXPECT_EQ(ss::ddim_timesteps(1000, 7), (V{0, 167, 333, 500, 666, 833, 999}));
  EXPECT_EQ(ss::ddim_timesteps(7, 5), (V{0, 2, 3, 5, 6}));  // 1.5, 4.5 up
  // Distinct and in range for every step count.
  for (int64_t s = 1; s <= 100; ++s) {
    auto tau = ss::ddim_timesteps(100, s);
    ASSERT_EQ(static_cast<int64_t>(tau.size()), s);
    EXPECT_EQ(tau.back(), 99);
    for (size_t i = 1; i < tau.size(); ++i) {
      EXPECT_LT(tau[i - 1], tau[i]);
    }
  }
}

// ---- continuous samplers ----------------------------------------------------

class SDESamplers : public ::testing::TestWithParam<std::string> {};

TEST_P(SDESamplers, EulerMaruyama) {
  auto sde = make_sde(GetParam());
  auto g = mixture();
  // An eps model under the SDE sampler exercises the conversion.
  auto model = g.sde_model(sde, Prediction::Epsilon);
  auto r = ss::euler_maruyama(
      model,
      *sde,
      {kN, 2},
      ss::EulerMaruyamaOptions().num_steps(500),
      common(6));
  EXPECT_EQ(r.nfe, 500);
  check_samples(r.samples, target_at_eps(*sde, sde->default_eps()), 0.02);
}

TEST_P(SDESamplers, PredictorCorrector) {
  auto sde = make_sde(GetParam());
  auto g = mixture();
  auto model = g.sde_model(sde, Prediction::Score);
  auto r = ss::predictor_corrector(
      model,
      *sde,
      {kN, 2},
      ss::PredictorCorrectorOptions().num_steps(250),
      common(7));
  EXPECT_EQ(r.nfe, 500);
  check_samples(r.samples, target_at_eps(*sde, sde->default_eps()), 0.02);
  auto r2 = ss::predictor_corrector(
      model,
      *sde,
      {kN, 2},
      ss::PredictorCorrectorOptions()
          .num_steps(250)
          .predictor(ss::Predictor::EulerMaruyama)
          .corrector_steps(2)
          .snr(0.1),
      common(8));
  EXPECT_EQ(r2.nfe, 750);
  check_samples(r2.samples, target_at_eps(*sde, sde->default_eps()), 0.02);
}

TEST_P(SDESamplers, ProbabilityFlowODE) {
  // The ODE is a deterministic map, so it carries any mismatch between the
  // prior and the true marginal at t = 1 to the end (large for VE, whose
  // prior ignores the data's spread); start it from the exact p_1.
  auto sde = make_sde(GetParam());
  auto g = mixture();
  auto model = g.sde_model(sde, Prediction::Score);
  auto target = target_at_eps(*sde, sde->default_eps());
  auto x1 = perturbed(g, sde->mean_coeff(1.0), sde->std(1.0))
                .sample(kN, gen(90), torch::kDouble);
  auto heun = ss::ode(
      model,
      *sde,
      {kN, 2},
      ss::ODEOptions().method(ss::ODEMethod::Heun).num_steps(100),
      common(9).x_init(x1));
  EXPECT_EQ(heun.nfe, 200);
  check_samples(heun.samples, target, 0.02);
  auto rk = ss::ode(
      model,
      *sde,
      {kN, 2},
      ss::ODEOptions().rtol(1e-5).atol(1e-5),
      common(9).x_init(x1));
  check_samples(rk.samples, target, 0.02);
  // Same start: the two solvers agree closely.
  EXPECT_LT(sbgm::test::max_abs_diff(heun.samples, rk.samples), 0.05);
}

INSTANTIATE_TEST_SUITE_P(
    Kinds,
    SDESamplers,
    ::testing::Values("vp", "ve", "subvp"),
    [](const auto& info) { return info.param; });

TEST(Samplers, EulerMaruyamaWeakOrderOne) {
  // 1-D Gaussian data N(0, 0.5^2) under VP: the exact score is linear,
  // -x / v(t) with v = m^2 0.25 + s^2, so Euler–Maruyama is the linear
  // recursion x <- A_k x + B_k z and E[x_n^2] = V_n with
  // V_{k+1} = A_k^2 V_k + B_k^2, V_0 = 1 (computed here in float64 from the
  // formulas). (1) The sampler's second moment matches V_n within Monte-Carlo
  // error; (2) |V_n - v(eps)| falls at order 1 in the step size.
  auto sde = std::make_shared<sbgm::VPSDE>();
  GaussianMixture g(
      torch::ones({1}, torch::kDouble),
      torch::zeros({1, 1}, torch::kDouble),
      torch::full({1}, 0.5, torch::kDouble));
  auto model = g.sde_model(sde, Prediction::Score);
  const double eps = 1e-3;
  auto v = [&](double t) {
    return std::pow(sde->mean_coeff(t) * 0.5, 2) + std::pow(sde->std(t), 2);
  };
  auto em_moment = [&](int64_t n) {
    const double h = (1.0 - eps) / static_cast<double>(n);
    double V = 1.0;
    for (int64_t i = 0; i < n; ++i) {
      const double t = 1.0 - static_cast<double>(i) * h;
      const double gg = std::pow(sde->diffusion(t), 2);
      const double A = 1.0 + 0.5 * sde->beta(t) * h - gg * h / v(t);
      V = A * A * V + gg * h;
    }
    return V;
  };
  const int64_t N = 200000;
  for (int64_t n : {10, 40}) {
    auto r = ss::euler_maruyama(
        model,
        *sde,
        {N, 1},
        ss::EulerMaruyamaOptions().num_steps(n).eps(eps).denoise(false),
        common(11 + static_cast<uint64_t>(n)));
    const double V = em_moment(n);
    const double est = r.samples.square().mean().item<double>();
    // E[x^2] of a centred Gaussian has standard error V sqrt(2 / N).
    EXPECT_NEAR(est, V, 4 * V * std::sqrt(2.0 / N)) << "n = " << n;
    // ... and the discretization error is well above that noise.
    if (n == 10) {
      EXPECT_GT(std::abs(est - v(eps)), 10 * V * std::sqrt(2.0 / N));
    }
  }
  std::vector<double> err;
  for (int64_t n : {50, 100, 200, 400, 800}) {
    err.push_back(std::abs(em_moment(n) - v(eps)));
  }
  for (size_t i = 1; i < err.size(); ++i) {
    const double order = std::log(err[i - 1] / err[i]) / std::log(2.0);
    EXPECT_NEAR(order, 1.0, 0.15) << "halving " << i;
  }
}

TEST(Samplers, SameSeedSameSamplesTrajectoryAndProgress) {
  auto sde = std::make_shared<sbgm::VPSDE>();
  auto model = mixture().sde_model(sde);
  auto opts = ss::EulerMaruyamaOptions().num_steps(10);
  auto a = ss::euler_maruyama(model, *sde, {64, 2}, opts, common(5));
  auto b = ss::euler_maruyama(model, *sde, {64, 2}, opts, common(5));
  auto c = ss::euler_maruyama(model, *sde, {64, 2}, opts, common(6));
  EXPECT_TRUE(torch::equal(a.samples, b.samples));
  EXPECT_FALSE(torch::equal(a.samples, c.samples));
  std::vector<std::pair<int64_t, int64_t>> calls;
  auto r = ss::euler_maruyama(
      model,
      *sde,
      {64, 2},
      opts,
      common(5).trajectory_every(3).progress(
          [&](int64_t s, int64_t t) { calls.emplace_back(s, t); }));
  // Start, steps 3, 6, 9, and the end (step 10).
  ASSERT_EQ(r.trajectory.size(), 5u);
  EXPECT_TRUE(torch::equal(r.trajectory.back(), r.samples));
  EXPECT_TRUE(torch::equal(r.samples, a.samples));
  ASSERT_EQ(calls.size(), 10u);
  EXPECT_EQ(calls.front(), (std::pair<int64_t, int64_t>(1, 10)));
  EXPECT_EQ(calls.back(), (std::pair<int64_t, int64_t>(10, 10)));
}

TEST(Samplers, DDPMStepMatchesFormula) {
  auto sched = sbgm::Schedule::linear(50);
  auto g = mixture();
  auto model = g.schedule_model(sched, Prediction::Epsilon);
  ss::DDPMSampler sampler(model, sched, {}, gen(41));
  auto x = torch::randn({64, 2}, torch::kDouble);
  for (int64_t t : {0, 7}) {
    auto tt = torch::full({64}, t, torch::kLong);
    auto eps = model(x, tt);
    const double beta = 1e-4 + (0.02 - 1e-4) * t / 49.0;
    double ab = 1;
    for (int64_t k = 0; k <= t; ++k) {
      ab *= 1 - (1e-4 + (0.02 - 1e-4) * k / 49.0);
    }
    auto mean = (x - beta / std::sqrt(1 - ab) * eps) / std::sqrt(1 - beta);
    auto y = x.clone();
    sampler.step(y, t);
    if (t == 0) {
      EXPECT_TRUE(sbgm::test::all_close(y, mean, 1e-12, 1e-12));
    } else {
      // sigma_t = sqrt(beta_t); the noise is N(0, I) from the generator.
      auto z = (y - mean) / std::sqrt(beta);
      EXPECT_NEAR(z.mean().item<double>(), 0.0, 0.3);
      EXPECT_NEAR(z.std().item<double>(), 1.0, 0.2);
      EXPECT_GT(z.abs().max().item<double>(), 0.5);
    }
  }
  EXPECT_THROW_MSG(sampler.step(x, 50), "t must lie in [0, 50)");
  EXPECT_THROW_MSG(sampler.step(x, -1), "t must lie in [0, 50)");
}

TEST(Samplers, EveryPredictionGivesTheSameSamples) {
  // eps, score and x0 models of the same exact mixture: the samplers fold
  // the conversion into their coefficients; the results must agree.
  auto g = mixture();
  auto sched = sbgm::Schedule::linear(100);
  auto sde = std::make_shared<sbgm::VPSDE>();
  auto x_init = torch::randn({256, 2}, torch::kDouble);
  auto init = [&](uint64_t seed) {
    return ss::CommonOptions().generator(gen(seed)).x_init(x_init);
  };
  std::vector<torch::Tensor> ddpm, ddpm_clip, em, ode;
  for (auto p : {Prediction::Epsilon, Prediction::Score, Prediction::X0}) {
    auto dm = g.schedule_model(sched, p);
    ddpm.push_back(ss::ddpm(dm, sched, {256, 2}, {}, init(1)).samples);
    ddpm_clip.push_back(
        ss::ddpm(dm, sched, {256, 2}, ss::DDPMOptions().clip_x0(true), init(1))
            .samples);
    auto cm = g.sde_model(sde, p);
    em.push_back(ss::euler_maruyama(
                     cm,
                     *sde,
                     {256, 2},
                     ss::EulerMaruyamaOptions().num_steps(100),
                     init(2))
                     .samples);
    ode.push_back(
        ss::ode(
            cm,
            *sde,
            {256, 2},
            ss::ODEOptions().method(ss::ODEMethod::Heun).num_steps(20),
            init(3))
            .samples);
  }
  for (size_t k = 1; k < 3; ++k) {
    EXPECT_TRUE(sbgm::test::all_close(ddpm[k], ddpm[0], 1e-6, 1e-6)) << k;
    EXPECT_TRUE(sbgm::test::all_close(ddpm_clip[k], ddpm_clip[0], 1e-6, 1e-6))
        << k;
    EXPECT_TRUE(sbgm::test::all_close(em[k], em[0], 1e-6, 1e-6)) << k;
    EXPECT_TRUE(sbgm::test::all_close(ode[k], ode[0], 1e-6, 1e-6)) << k;
  }
}

TEST(Samplers, GaussianInEightDimensions) {
  // A single anisotropic Gaussian in 8-D: the samplers' moments match.
  auto mu = torch::linspace(-1.0, 1.0, 8, torch::kDouble).unsqueeze(0);
  auto sd = torch::linspace(0.3, 1.2, 8, torch::kDouble).unsqueeze(0);
  GaussianMixture g(torch::ones({1}, torch::kDouble), mu, sd);
  auto sde = std::make_shared<sbgm::VPSDE>();
  const double eps = 1e-3;
  auto target = perturbed(g, sde->mean_coeff(eps), sde->std(eps));
  auto model = g.sde_model(sde, Prediction::Epsilon);
  auto em = ss::euler_maruyama(
      model,
      *sde,
      {2000, 8},
      ss::EulerMaruyamaOptions().num_steps(200).eps(eps),
      common(51));
  check_samples(em.samples, target, 0.03);
  auto sched = sbgm::Schedule::linear(500);
  auto ddim = ss::ddim(
      g.schedule_model(sched),
      sched,
      {2000, 8},
      ss::DDIMOptions().num_steps(50),
      common(52));
  check_samples(ddim.samples, g, 0.03);
}

TEST(Samplers, EulerMaruyamaSamplerStepsLikeTheDriver) {
  auto sde = std::make_shared<sbgm::VPSDE>();
  auto model = mixture().sde_model(sde, Prediction::Epsilon);
  auto opts = ss::EulerMaruyamaOptions().num_steps(20);
  auto x0 = torch::randn({32, 2}, torch::kDouble);
  auto ref =
      ss::euler_maruyama(model, *sde, {32, 2}, opts, common(61).x_init(x0));
  ss::EulerMaruyamaSampler sampler(model, *sde, opts, gen(61));
  EXPECT_EQ(sampler.num_steps(), 20);
  EXPECT_DOUBLE_EQ(sampler.time(0), 1.0);
  EXPECT_NEAR(sampler.time(19), 1.0 - 19 * (1.0 - 1e-3) / 20, 1e-15);
  auto x = x0.clone();
  for (int64_t i = 0; i < sampler.num_steps(); ++i) {
    sampler.step(x, i);
  }
  EXPECT_TRUE(torch::equal(x, ref.samples));
  EXPECT_THROW_MSG(sampler.step(x, 20), "step must lie in [0, 20)");
  EXPECT_THROW_MSG(
      ss::EulerMaruyamaSampler(
          model, *sde, ss::EulerMaruyamaOptions().num_steps(0)),
      "num_steps must be >= 1");
}

// ---- likelihood -------------------------------------------------------------

TEST(Likelihood, GaussianDataMatchesClosedForm) {
  // Data N(mu, 0.6^2 I) in 3-D under VP: p_eps is N(m mu, (m^2 0.36 + s^2) I).
  auto sde = std::make_shared<sbgm::VPSDE>();
  auto mu = torch::tensor({{0.5, -1.0, 0.2}}, torch::kDouble);
  GaussianMixture g(
      torch::ones({1}, torch::kDouble),
      mu,
      torch::full({1}, 0.6, torch::kDouble));
  auto model = g.sde_model(sde, Prediction::Epsilon);
  auto x = g.sample(16, gen(21), torch::kDouble);
  const double eps = 1e-3;
  auto exact = g.log_prob(x, sde->mean_coeff(eps), sde->std(eps));
  auto opts = ss::LikelihoodOptions().ode(
      ss::ODEOptions().rtol(1e-7).atol(1e-7).eps(eps));
  auto r = ss::log_likelihood(model, *sde, x, opts, common(22));
  // log p_eps(x) = log p_1(x(1)) + int div F: the estimate uses the prior
  // N(0, I) for p_1, the exact marginal at t = 1 differs slightly (its mean
  // m(1) mu); swap the one for the other in the reference.
  auto z = r.prior_sample;
  exact = exact + sde->prior_log_prob(z) -
          g.log_prob(z, sde->mean_coeff(1.0), sde->std(1.0));
  // The drift is linear with Jacobian c(t) I: Rademacher probes are exact.
  EXPECT_TRUE(sbgm::test::all_close(r.log_prob, exact, 0, 1e-4));
  EXPECT_GT(r.nfe, 0);
  // Bits per dim: -log p / (D ln 2) (+ 7 for 8-bit data in [-1, 1]).
  EXPECT_TRUE(sbgm::test::all_close(
      r.bits_per_dim, -exact / (3 * std::log(2.0)), 0, 1e-4));
  auto r8 = ss::log_likelihood(model, *sde, x, opts.num_bits(8), common(22));
  EXPECT_TRUE(sbgm::test::all_close(
      r8.bits_per_dim, -exact / (3 * std::log(2.0)) + 7.0, 0, 1e-4));
  // Heun agrees too.
  auto rh = ss::log_likelihood(
      model,
      *sde,
      x,
      ss::LikelihoodOptions().ode(
          ss::ODEOptions().method(ss::ODEMethod::Heun).num_steps(200).eps(eps)),
      common(22));
  EXPECT_TRUE(sbgm::test::all_close(rh.log_prob, exact, 0, 2e-3));
}

TEST(Likelihood, GaussianProbesAreUnbiased) {
  auto sde = std::make_shared<sbgm::VPSDE>();
  auto g = mixture();
  auto model = g.sde_model(sde, Prediction::Score);
  auto x = g.sample(256, gen(31), torch::kDouble);
  const double eps = 1e-3;
  auto exact = g.log_prob(x, sde->mean_coeff(eps), sde->std(eps));
  auto r = ss::log_likelihood(
      model,
      *sde,
      x,
      ss::LikelihoodOptions()
          .probe(ss::Probe::Gaussian)
          .ode(ss::ODEOptions().rtol(1e-5).atol(1e-5).eps(eps)),
      common(32));
  auto diff = r.log_prob - exact;
  double m = diff.mean().item<double>();
  double se = diff.std().item<double>() / std::sqrt(256.0);
  EXPECT_LT(std::abs(m), 4 * se + 1e-3) << "mean error " << m << " se " << se;
}

// ---- bad input --------------------------------------------------------------

TEST(SamplersErrors, BadInput) {
  auto sde = std::make_shared<sbgm::VPSDE>();
  auto sched = sbgm::Schedule::linear(10);
  auto g = mixture();
  auto cont = g.sde_model(sde);
  auto disc = g.schedule_model(sched);
  EXPECT_THROW_MSG(
      ss::ddim(disc, sched, {4, 2}, ss::DDIMOptions().num_steps(0)),
      "num_steps must lie in [1, T]");
  EXPECT_THROW_MSG(
      ss::ddim(disc, sched, {4, 2}, ss::DDIMOptions().num_steps(11)),
      "num_steps must lie in [1, T]");
  EXPECT_THROW_MSG(ss::ddim_timesteps(0, 1), "num_timesteps must be >= 1");
  EXPECT_THROW_MSG(
      ss::ddim(disc, sched, {4, 2}, ss::DDIMOptions().eta(-1)),
      "eta must be finite and >= 0");
  EXPECT_THROW_MSG(
      ss::ddpm(
          disc, sched, {4, 2}, ss::DDPMOptions().clip_x0(true).clip_range(0)),
      "clip_range must be finite and > 0");
  EXPECT_THROW_MSG(
      ss::euler_maruyama(
          cont, *sde, {4, 2}, ss::EulerMaruyamaOptions().num_steps(0)),
      "num_steps must be >= 1");
  for (double e : {0.0, 1.0, -0.1, 1.5}) {
    EXPECT_THROW_MSG(
        ss::euler_maruyama(
            cont, *sde, {4, 2}, ss::EulerMaruyamaOptions().eps(e)),
        "eps must lie in (0, 1)");
    EXPECT_THROW_MSG(
        ss::ode(cont, *sde, {4, 2}, ss::ODEOptions().eps(e)),
        "eps must lie in (0, 1)");
  }
  EXPECT_THROW_MSG(ss::ddpm(disc, sched, {}), "at least one dimension");
  EXPECT_THROW_MSG(ss::ddpm(disc, sched, {0, 2}), "every size in shape");
  EXPECT_THROW_MSG(
      ss::ddpm(
          disc,
          sched,
          {4, 2},
          {},
          ss::CommonOptions().x_init(torch::zeros({3, 2}))),
      "x_init has shape");
  EXPECT_THROW_MSG(
      ss::ddpm(
          disc, sched, {4, 2}, {}, ss::CommonOptions().dtype(torch::kLong)),
      "dtype must be floating point");
  EXPECT_THROW_MSG(
      ss::ddpm(
          disc, sched, {4, 2}, {}, ss::CommonOptions().trajectory_every(-1)),
      "trajectory_every must be >= 0");
  // The mixture model refuses data of the wrong dimension.
  EXPECT_THROW_MSG(
      ss::euler_maruyama(cont, *sde, {4, 3}), "x must have shape [N, 2]");
  EXPECT_THROW_MSG(
      ss::predictor_corrector(
          cont, *sde, {4, 2}, ss::PredictorCorrectorOptions().snr(0)),
      "snr must be finite and > 0");
  EXPECT_THROW_MSG(
      ss::predictor_corrector(
          cont,
          *sde,
          {4, 2},
          ss::PredictorCorrectorOptions().corrector_steps(-1)),
      "corrector_steps must be >= 0");
  EXPECT_THROW_MSG(
      ss::ode(cont, *sde, {4, 2}, ss::ODEOptions().rtol(0)),
      "rtol and atol must be > 0");
  EXPECT_THROW_MSG(
      ss::ode(cont, *sde, {4, 2}, ss::ODEOptions().max_steps(0)),
      "max_steps must be >= 1");
  EXPECT_THROW_MSG(
      ss::ode(
          cont,
          *sde,
          {4, 2},
          ss::ODEOptions().max_steps(2).rtol(1e-9).atol(1e-9)),
      "did not reach");
  auto x = torch::randn({4, 2}, torch::kDouble);
  EXPECT_THROW_MSG(
      ss::log_likelihood(cont, *sde, x, ss::LikelihoodOptions().num_bits(-1)),
      "num_bits must be >= 0");
  EXPECT_THROW_MSG(
      ss::log_likelihood(cont, *sde, x, ss::LikelihoodOptions().data_width(0)),
      "data_width must be finite and > 0");
  EXPECT_THROW_MSG(
      ss::log_likelihood(cont, *sde, torch::ones({4, 2}, torch::kLong)),
      "floating-point");
}

TEST(SamplersErrors, BadModelOutput) {
  auto sde = std::make_shared<sbgm::VPSDE>();
  auto sched = sbgm::Schedule::linear(10);
  sbgm::Model wrong_shape(
      [](const torch::Tensor& x, const torch::Tensor&) {
        return x.slice(1, 0, 1).clone();
      },
      Prediction::Score);
  EXPECT_THROW_MSG(
      ss::euler_maruyama(wrong_shape, *sde, {4, 2}),
      "the model returned shape");
  EXPECT_THROW_MSG(
      ss::ddpm(wrong_shape, sched, {4, 2}), "the model returned shape");
  sbgm::Model nan_model(
      [](const torch::Tensor& x, const torch::Tensor&) {
        return torch::full_like(x, NAN);
      },
      Prediction::Epsilon);
  const char* msg = "the model produced non-finite values";
  EXPECT_THROW_MSG(ss::ddpm(nan_model, sched, {4, 2}), msg);
  EXPECT_THROW_MSG(
      ss::ddim(nan_model, sched, {4, 2}, ss::DDIMOptions().num_steps(5)), msg);
  EXPECT_THROW_MSG(
      ss::euler_maruyama(
          nan_model, *sde, {4, 2}, ss::EulerMaruyamaOptions().num_steps(5)),
      msg);
  EXPECT_THROW_MSG(
      ss::predictor_corrector(
          nan_model,
          *sde,
          {4, 2},
          ss::PredictorCorrectorOptions().num_steps(50)),
      msg);
  EXPECT_THROW_MSG(ss::ode(nan_model, *sde, {4, 2}), msg);
  EXPECT_THROW_MSG(
      ss::ode(
          nan_model,
          *sde,
          {4, 2},
          ss::ODEOptions().method(ss::ODEMethod::Heun).num_steps(5)),
      msg);
  // Trajectory record points check too.
  EXPECT_THROW_MSG(
      ss::euler_maruyama(
          nan_model,
          *sde,
          {4, 2},
          ss::EulerMaruyamaOptions().num_steps(5),
          ss::CommonOptions().trajectory_every(1)),
      msg);
}
