#include "sbgm/sde.h"

#include <cmath>

#include "sbgm/schedule.h"
#include "support.h"

namespace sbgm {
namespace {

using test::all_close;

// Closed forms, written out independently of the library.
double vp_B(double t, double b0, double b1) {
  return b0 * t + 0.5 * (b1 - b0) * t * t;
}
double ve_var(double t, double sigma) {
  return (std::pow(sigma, 2 * t) - 1) / (2 * std::log(sigma));
}

TEST(VPSDE, ClosedForms) {
  VPSDE sde(0.1, 20.0);
  for (double t : {0.0, 1e-3, 0.1, 0.5, 0.77, 1.0}) {
    const double B = vp_B(t, 0.1, 20.0);
    const double beta = 0.1 + t * 19.9;
    EXPECT_NEAR(sde.beta(t), beta, 1e-12);
    EXPECT_NEAR(sde.drift_coeff(t), -0.5 * beta, 1e-12);
    EXPECT_NEAR(sde.diffusion(t), std::sqrt(beta), 1e-12);
    EXPECT_NEAR(sde.mean_coeff(t), std::exp(-0.5 * B), 1e-14);
    EXPECT_NEAR(sde.std(t), std::sqrt(1 - std::exp(-B)), 1e-12);
  }
  EXPECT_EQ(sde.prior_std(), 1.0);
  EXPECT_EQ(sde.default_eps(), 1e-3);
  // Variance preserving: m^2 + s^2 = 1 at every t.
  auto t = torch::linspace(0, 1, 11, torch::kDouble);
  auto m = sde.mean_coeff(t), s = sde.std(t);
  EXPECT_TRUE(all_close(m * m + s * s, torch::ones_like(t), 1e-12, 1e-12));
}

TEST(SubVPSDE, ClosedForms) {
  SubVPSDE sde(0.1, 20.0);
  for (double t : {1e-3, 0.3, 1.0}) {
    const double B = vp_B(t, 0.1, 20.0);
    const double beta = 0.1 + t * 19.9;
    EXPECT_NEAR(sde.mean_coeff(t), std::exp(-0.5 * B), 1e-14);
    EXPECT_NEAR(sde.std(t), 1 - std::exp(-B), 1e-12);
    EXPECT_NEAR(
        sde.diffusion(t), std::sqrt(beta * (1 - std::exp(-2 * B))), 1e-12);
    EXPECT_NEAR(sde.drift_coeff(t), -0.5 * beta, 1e-12);
  }
}

TEST(VESDE, ClosedForms) {
  VESDE sde(25.0);
  for (double t : {1e-5, 0.01, 0.5, 1.0}) {
    EXPECT_NEAR(sde.diffusion(t), std::pow(25.0, t), 1e-12);
    EXPECT_NEAR(
        sde.std(t) * sde.std(t),
        ve_var(t, 25.0),
        1e-10 * ve_var(t, 25.0) + 1e-15);
    EXPECT_EQ(sde.mean_coeff(t), 1.0);
    EXPECT_EQ(sde.drift_coeff(t), 0.0);
  }
  EXPECT_NEAR(
      sde.prior_std(), std::sqrt((625.0 - 1) / (2 * std::log(25.0))), 1e-12);
  EXPECT_EQ(sde.std(0.0), 0.0);
  // d/dt s(t)^2 = g(t)^2 (no drift): central difference.
  const double t = 0.4, h = 1e-6;
  const double dvar = (ve_var(t + h, 25) - ve_var(t - h, 25)) / (2 * h);
  EXPECT_NEAR(dvar, std::pow(sde.diffusion(t), 2), 1e-5 * dvar);
}

TEST(VESDE, TensorFormsMatchDoubleForms) {
  VESDE ve(25.0);
  VPSDE vp;
  SubVPSDE svp;
  auto t = torch::tensor({1e-5, 0.2, 0.9, 1.0}, torch::kDouble);
  for (const SDE* sde :
       {static_cast<const SDE*>(&ve),
        static_cast<const SDE*>(&vp),
        static_cast<const SDE*>(&svp)}) {
    auto m = sde->mean_coeff(t), s = sde->std(t), g = sde->diffusion(t),
         a = sde->drift_coeff(t);
    for (int64_t i = 0; i < t.size(0); ++i) {
      const double ti = t[i].item<double>();
      EXPECT_NEAR(m[i].item<double>(), sde->mean_coeff(ti), 1e-13)
          << sde->name();
      EXPECT_NEAR(s[i].item<double>(), sde->std(ti), 1e-12 * sde->std(ti))
          << sde->name();
      EXPECT_NEAR(g[i].item<double>(), sde->diffusion(ti), 1e-12)
          << sde->name();
      EXPECT_NEAR(a[i].item<double>(), sde->drift_coeff(ti), 1e-12)
          << sde->name();
    }
  }
}

TEST(VPSDE, FromScheduleAgreesInTheLimit) {
  // alpha_bar_i of the linear DDPM chain vs m(t_i)^2 at t_i = (i + 1) / T.
  // The error shrinks like 1/T.
  double prev_err = 0;
  for (int64_t T : {100, 1000, 10000}) {
    auto sch = Schedule::linear(T, 1e-4 * 1000 / T, 0.02 * 1000 / T);
    auto sde = VPSDE::from_schedule(sch);
    EXPECT_NEAR(sde.beta_min(), 0.1, 1e-12);
    EXPECT_NEAR(sde.beta_max(), 20.0, 1e-12);
    double err = 0;
    for (int64_t i = 0; i < T; i += T / 50) {
      const double t = static_cast<double>(i + 1) / T;
      err = std::max(
          err, std::abs(sch.alpha_bar(i) - std::pow(sde.mean_coeff(t), 2)));
    }
    if (T > 100) {
      EXPECT_LT(err, prev_err / 5) << "T = " << T;
    }
    prev_err = err;
  }
  EXPECT_LT(prev_err, 1e-3);
  EXPECT_THROW_MSG(
      VPSDE::from_schedule(Schedule::cosine(10)),
      "only a linear schedule has a VP SDE limit, got a cosine schedule");
}

TEST(SDE, DiscretizeMatchesKernel) {
  // VE: one exact step from t to t+dt adds exactly the variance increment.
  VESDE ve(25.0);
  auto st = ve.discretize(0.3, 0.1);
  EXPECT_EQ(st.f, 0.0);
  EXPECT_NEAR(st.G * st.G, ve_var(0.4, 25) - ve_var(0.3, 25), 1e-12);
  // VP: DDPM step with beta_i = beta(t) dt.
  VPSDE vp;
  auto sv = vp.discretize(0.5, 1e-3);
  const double b = vp.beta(0.5) * 1e-3;
  EXPECT_NEAR(sv.f, std::sqrt(1 - b) - 1, 1e-15);
  EXPECT_NEAR(sv.G, std::sqrt(b), 1e-15);
  // Sub-VP uses Euler.
  SubVPSDE svp;
  auto ss = svp.discretize(0.5, 1e-3);
  EXPECT_NEAR(ss.f, svp.drift_coeff(0.5) * 1e-3, 1e-15);
  EXPECT_NEAR(ss.G, svp.diffusion(0.5) * std::sqrt(1e-3), 1e-15);
}

TEST(SDE, PriorLogProbIsGaussian) {
  VESDE ve(25.0);
  auto z = torch::randn({3, 1, 2, 2}, torch::kDouble) * 5;
  auto lp = ve.prior_log_prob(z);
  ASSERT_EQ(lp.sizes(), torch::IntArrayRef({3}));
  const double s2 = ve_var(1.0, 25);
  for (int64_t i = 0; i < 3; ++i) {
    double acc = 0;
    auto zi = z[i].reshape({-1});
    for (int64_t j = 0; j < 4; ++j) {
      const double v = zi[j].item<double>();
      acc += -0.5 * v * v / s2 - 0.5 * std::log(2 * M_PI * s2);
    }
    EXPECT_NEAR(lp[i].item<double>(), acc, 1e-10);
  }
  VPSDE vp;
  EXPECT_NEAR(
      vp.prior_log_prob(torch::zeros({5}, torch::kDouble)).item<double>(),
      -2.5 * std::log(2 * M_PI),
      1e-12);
}

TEST(SDE, ReverseDriftOfGaussianData) {
  // Data N(0, I) under VP stays N(0, I): score = -x, so the reverse drift is
  // -1/2 beta x + beta x = 1/2 beta x, and the ODE drift is 0.
  VPSDE vp;
  auto x = torch::randn({6, 2}, torch::kDouble);
  const double t = 0.35;
  auto r = vp.reverse_drift(x, t, -x);
  EXPECT_TRUE(all_close(r, x * (0.5 * vp.beta(t)), 1e-12, 1e-12));
  auto ode = vp.reverse_drift(x, t, -x, /*probability_flow=*/true);
  EXPECT_LT(ode.abs().max().item<double>(), 1e-12);
  // Batched t gives the same per row.
  auto tb = torch::full({6}, t, torch::kDouble);
  EXPECT_TRUE(all_close(vp.reverse_drift(x, tb, -x), r, 1e-12, 1e-12));
}

class SDEDevice : public test::DeviceTest {};

TEST_P(SDEDevice, PerturbationMomentsVE) {
  VESDE ve(25.0);
  const int64_t n = 100000;
  auto x0 = torch::full({n, 1}, 3.0, f64());
  auto t = torch::full({n}, 0.6, f64());
  auto xt = ve.perturb(x0, t, torch::randn({n, 1}, f64()));
  const double v = ve_var(0.6, 25);
  EXPECT_NEAR(xt.mean().item<double>(), 3.0, 4 * std::sqrt(v / n));
  EXPECT_NEAR(xt.var().item<double>(), v, 4 * v * std::sqrt(2.0 / n));
}

TEST_P(SDEDevice, PerturbationMomentsVPWithBatchedTimes) {
  // Half the batch at t = 0.1, half at t = 0.9, images N x C x H x W.
  VPSDE vp;
  const int64_t n = 50000;
  auto x0 = torch::full({2 * n, 1, 2, 2}, 1.5, f64());
  auto t =
      torch::cat({torch::full({n}, 0.1, f64()), torch::full({n}, 0.9, f64())});
  auto xt = vp.perturb(x0, t, torch::randn_like(x0));
  for (int k = 0; k < 2; ++k) {
    const double tk = k == 0 ? 0.1 : 0.9;
    auto part = xt.slice(0, k * n, (k + 1) * n);
    const double m = std::exp(-0.5 * vp_B(tk, 0.1, 20));
    const double v = 1 - std::exp(-vp_B(tk, 0.1, 20));
    const double N = static_cast<double>(part.numel());
    EXPECT_NEAR(part.mean().item<double>(), 1.5 * m, 4 * std::sqrt(v / N));
    EXPECT_NEAR(part.var().item<double>(), v, 4 * v * std::sqrt(2.0 / N));
  }
  // A 0-dim t is the same as a full batch of it.
  auto noise = torch::randn_like(x0);
  auto a = vp.perturb(x0, torch::tensor(0.3, f64()), noise);
  auto b = vp.perturb(x0, 0.3, noise);
  EXPECT_TRUE(all_close(a, b, 1e-12, 1e-12));
}

TEST_P(SDEDevice, KernelScoreAndPriorSample) {
  VESDE ve(25.0);
  auto x0 = torch::randn({4, 3}, f32());
  auto z = torch::randn({4, 3}, f32());
  auto t = torch::full({4}, 0.5, f32());
  auto xt = ve.perturb(x0, t, z);
  // grad log p_0t = -z / s.
  EXPECT_TRUE(
      all_close(ve.kernel_score(xt, x0, t), -z / ve.std(0.5), 1e-4, 1e-4));
  torch::Generator gen = torch::make_generator<torch::CPUGeneratorImpl>(7);
  if (device().is_cpu()) {
    auto p = ve.prior_sample({20000, 2}, f32(), gen);
    EXPECT_NEAR(p.std().item<double>(), ve.prior_std(), 0.02 * ve.prior_std());
    // Same seed, same samples.
    torch::Generator g2 = torch::make_generator<torch::CPUGeneratorImpl>(7);
    auto q = ve.prior_sample({20000, 2}, f32(), g2);
    EXPECT_TRUE(torch::equal(p, q));
  } else {
    auto p = ve.prior_sample({20000, 2}, f32());
    EXPECT_EQ(p.device(), device());
  }
}

SBGM_INSTANTIATE_DEVICES(SDEDevice);

TEST(SDEErrors, BadParameters) {
  EXPECT_THROW_MSG(
      VPSDE(20.0, 0.1),
      "beta_min must be smaller than beta_max, got beta_min = 20, beta_max = "
      "0.1");
  EXPECT_THROW_MSG(VPSDE(1.0, 1.0), "beta_min = 1, beta_max = 1");
  EXPECT_THROW_MSG(
      VPSDE(-0.1, 1.0),
      "beta_min must be finite and >= 0, got beta_min = -0.1");
  EXPECT_THROW_MSG(
      SubVPSDE(5.0, 2.0), "beta_min must be smaller than beta_max");
  EXPECT_THROW_MSG(VESDE(1.0), "sigma must be > 1, got 1");
  EXPECT_THROW_MSG(VESDE(0.5), "sigma must be > 1, got 0.5");
}

TEST(SDEErrors, BadTimes) {
  VPSDE vp;
  VESDE ve;
  auto x = torch::randn({4, 2});
  EXPECT_THROW_MSG(vp.std(1.5), "t must lie in [0, 1], got 1.5");
  EXPECT_THROW_MSG(ve.diffusion(-0.1), "t must lie in [0, 1], got -0.1");
  EXPECT_THROW_MSG(
      ve.perturb(x, torch::tensor({0.1, 0.2, 1.2, 0.3}), x),
      "t must lie in [0, 1], got values in [0.1, 1.2]");
  EXPECT_THROW_MSG(
      vp.perturb(x, torch::tensor({0.1, 0.2, 0.3}), x),
      "t has 3 entries but x has shape [4, 2]");
  EXPECT_THROW_MSG(
      vp.perturb(x, torch::tensor({1, 0, 1, 0}), x),
      "continuous time t must be a floating-point tensor, got dtype Long");
  EXPECT_THROW_MSG(
      vp.perturb(torch::ones({4, 2}, torch::kInt), 0.5, x),
      "x0 must be a floating-point tensor, got dtype Int");
  EXPECT_THROW_MSG(
      vp.perturb(x, 0.5, torch::randn({2, 4})),
      "noise has shape [2, 4] but x0 has shape [4, 2]");
  EXPECT_THROW_MSG(
      vp.perturb(
          x,
          torch::zeros({4}, torch::dtype(torch::kFloat).device(torch::kMeta)),
          x),
      "t is on meta but x is on cpu");
  EXPECT_THROW_MSG(vp.discretize(0.5, 0.0), "dt must be > 0, got 0");
  EXPECT_THROW_MSG(vp.discretize(0.99, 0.5), "beta(t) dt = ");
  EXPECT_THROW_MSG(vp.prior_sample({2, -1}), "negative size in shape [2, -1]");
}

}  // namespace
}  // namespace sbgm
