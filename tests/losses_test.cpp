// Eps-prediction and denoising-score-matching losses.

#include "sbgm/losses.h"

#include <cmath>

#include "sbgm/schedule.h"
#include "sbgm/sde.h"
#include "support.h"

namespace sbgm {
namespace {

class Losses : public test::SeededTest {};

// VP kernel by hand: B(t) = b0 t + t^2 (b1 - b0) / 2.
double vp_B(double t, double b0, double b1) {
  return b0 * t + 0.5 * t * t * (b1 - b0);
}

TEST_F(Losses, EpsilonLossOnAScheduleMatchesHandComputation) {
  const std::vector<double> betas = {0.1, 0.2, 0.3, 0.4};
  auto schedule = Schedule::from_betas(betas);
  std::vector<double> abar;
  double prod = 1.0;
  for (double b : betas) {
    prod *= 1.0 - b;
    abar.push_back(prod);
  }
  auto x0 = torch::tensor({1.0, -2.0, 0.5, 3.0, 0.0, 1.5}, torch::kDouble)
                .reshape({3, 2});
  auto z = torch::tensor({0.3, 0.1, -1.0, 2.0, 0.7, -0.4}, torch::kDouble)
               .reshape({3, 2});
  auto t = torch::tensor({0, 3, 1}, torch::kLong);
  // An eps model eps_hat = 0.5 x + 0.1 t.
  Model model(
      [](const torch::Tensor& x, const torch::Tensor& tt) {
        return 0.5 * x + 0.1 * tt.to(x.scalar_type()).unsqueeze(1);
      },
      Prediction::Epsilon);
  double want = 0;
  for (int i = 0; i < 3; ++i) {
    const int64_t ti = t[i].item<int64_t>();
    const double m = std::sqrt(abar[ti]), s = std::sqrt(1 - abar[ti]);
    double per = 0;
    for (int d = 0; d < 2; ++d) {
      const double xt =
          m * x0[i][d].item<double>() + s * z[i][d].item<double>();
      const double e = 0.5 * xt + 0.1 * ti - z[i][d].item<double>();
      per += e * e / 2;
    }
    want += per / 3;
  }
  auto loss = epsilon_loss(model, schedule, x0, t, z);
  EXPECT_EQ(loss.dim(), 0);
  EXPECT_NEAR(loss.item<double>(), want, 1e-12);
}

TEST_F(Losses, LossesOnTheVPSDEMatchHandComputation) {
  const double b0 = 0.1, b1 = 20.0;
  VPSDE sde(b0, b1);
  auto x0 =
      torch::tensor({1.0, -2.0, 0.5, 3.0}, torch::kDouble).reshape({2, 2});
  auto z = torch::tensor({0.3, 0.1, -1.0, 2.0}, torch::kDouble).reshape({2, 2});
  const std::vector<double> ts = {0.2, 0.7};
  auto t = torch::tensor(ts, torch::kDouble);
  // A score model s_hat = -x; an eps model eps_hat = x.
  Model score(
      [](const torch::Tensor& x, const torch::Tensor&) { return -x; },
      Prediction::Score);
  Model eps(
      [](const torch::Tensor& x, const torch::Tensor&) { return x.clone(); },
      Prediction::Epsilon);
  double dsm = 0, dsm_lik = 0, epsl = 0;
  for (int i = 0; i < 2; ++i) {
    const double B = vp_B(ts[i], b0, b1);
    const double m = std::exp(-0.5 * B), s = std::sqrt(1 - std::exp(-B));
    const double g2 = b0 + ts[i] * (b1 - b0);
    double per = 0, per_eps = 0;
    for (int d = 0; d < 2; ++d) {
      const double zi = z[i][d].item<double>();
      const double xt = m * x0[i][d].item<double>() + s * zi;
      per += std::pow(s * (-xt) + zi, 2) / 2;
      per_eps += std::pow(xt - zi, 2) / 2;
    }
    dsm += per / 2;
    dsm_lik += g2 / (s * s) * per / 2;
    epsl += per_eps / 2;
  }
  EXPECT_NEAR(dsm_loss(score, sde, x0, t, z).item<double>(), dsm, 1e-10);
  EXPECT_NEAR(
      dsm_loss(
          score, sde, x0, t, z, SDELossOptions().likelihood_weighting(true))
          .item<double>(),
      dsm_lik,
      1e-9);
  EXPECT_NEAR(epsilon_loss(eps, sde, x0, t, z).item<double>(), epsl, 1e-10);
  // In the eps parameterization the two losses agree: an eps model sampled
  // with DSM gives the same number.
  EXPECT_NEAR(dsm_loss(eps, sde, x0, t, z).item<double>(), epsl, 1e-10);
}

TEST_F(Losses, DSMOfTheExactGaussianScoreReachesItsMinimum) {
  // x0 ~ N(0, c^2 I) under the VP SDE: p_t = N(0, v I), v = m^2 c^2 + s^2,
  // score -x / v, and E[(s score + z)^2] = m^2 c^2 / v per dimension.
  const double c = 0.7, b0 = 0.1, b1 = 20.0;
  VPSDE sde(b0, b1);
  const int64_t n = 200000, d = 2;
  auto x0 = torch::randn({n, d}, torch::kDouble) * c;
  auto z = torch::randn({n, d}, torch::kDouble);
  auto t = torch::rand({n}, torch::kDouble) * 0.999 + 0.001;
  auto B = t * b0 + 0.5 * t.square() * (b1 - b0);
  auto v = (torch::exp(-B) * c * c + (1 - torch::exp(-B))).unsqueeze(1);
  auto make = [v](double k) {
    return Model(
        [v, k](const torch::Tensor& x, const torch::Tensor&) {
          return -k * x / v;
        },
        Prediction::Score);
  };
  // The minimum averaged over the sampled t (the same t as the loss).
  auto m2c2 = torch::exp(-B) * c * c;
  const double want = (m2c2 / v.squeeze(1)).mean().item<double>();
  const double got = dsm_loss(make(1.0), sde, x0, t, z).item<double>();
  EXPECT_NEAR(got, want, 0.01 * want);
  // Any other score does worse.
  EXPECT_GT(dsm_loss(make(1.2), sde, x0, t, z).item<double>(), got);
  EXPECT_GT(dsm_loss(make(0.8), sde, x0, t, z).item<double>(), got);
}

TEST_F(Losses, TimeSampling) {
  auto u = sample_timesteps(9, 50, TimeSampling::Uniform, torch::kCPU);
  EXPECT_EQ(u.scalar_type(), torch::kLong);
  EXPECT_EQ(u.numel(), 9);
  EXPECT_GE(u.min().item<int64_t>(), 0);
  EXPECT_LT(u.max().item<int64_t>(), 50);
  auto a = sample_timesteps(9, 50, TimeSampling::Antithetic, torch::kCPU);
  ASSERT_EQ(a.numel(), 9);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(a[i].item<int64_t>() + a[i + 5].item<int64_t>(), 49);
  }
  auto f = sample_times(
      8, 1e-3, TimeSampling::Antithetic, torch::TensorOptions(torch::kDouble));
  ASSERT_EQ(f.numel(), 8);
  for (int i = 0; i < 4; ++i) {
    EXPECT_NEAR(f[i].item<double>() + f[i + 4].item<double>(), 1.001, 1e-12);
  }
  EXPECT_GE(f.min().item<double>(), 1e-3);
  EXPECT_LE(f.max().item<double>(), 1.0);
  // A generator makes the draws reproducible.
  auto g1 = at::detail::createCPUGenerator(7);
  auto g2 = at::detail::createCPUGenerator(7);
  EXPECT_TRUE(torch::equal(
      sample_times(5, 0.0, TimeSampling::Uniform, torch::kFloat, g1),
      sample_times(5, 0.0, TimeSampling::Uniform, torch::kFloat, g2)));
}

TEST_F(Losses, DrawingOverloadsGiveFiniteDifferentiableLosses) {
  auto schedule = Schedule::linear(100);
  VPSDE vp;
  VESDE ve(25.0);
  auto w = torch::ones({1}, torch::requires_grad());
  Model eps(
      [w](const torch::Tensor& x, const torch::Tensor&) { return w * x; },
      Prediction::Epsilon);
  Model score(
      [w](const torch::Tensor& x, const torch::Tensor&) { return -w * x; },
      Prediction::Score);
  auto x0 = torch::randn({16, 2});
  for (auto sampling : {TimeSampling::Uniform, TimeSampling::Antithetic}) {
    std::vector<torch::Tensor> losses = {
        epsilon_loss(
            eps, schedule, x0, ScheduleLossOptions().sampling(sampling)),
        dsm_loss(score, schedule, x0, ScheduleLossOptions().sampling(sampling)),
        epsilon_loss(eps, vp, x0, SDELossOptions().sampling(sampling)),
        dsm_loss(score, vp, x0, SDELossOptions().sampling(sampling)),
        dsm_loss(
            score,
            ve,
            x0,
            SDELossOptions().sampling(sampling).likelihood_weighting(true)),
    };
    for (auto& l : losses) {
      EXPECT_EQ(l.dim(), 0);
      EXPECT_TRUE(std::isfinite(l.item<double>()));
      auto g = torch::autograd::grad({l}, {w});
      EXPECT_TRUE(std::isfinite(g[0].item<double>()));
    }
  }
}

TEST_F(Losses, RejectBadInput) {
  auto schedule = Schedule::linear(10);
  VPSDE sde;
  Model eps(
      [](const torch::Tensor& x, const torch::Tensor&) { return x.clone(); },
      Prediction::Epsilon);
  auto x0 = torch::randn({4, 2});
  auto z = torch::randn({4, 2});
  auto ti = torch::zeros({4}, torch::kLong);
  auto tf = torch::full({4}, 0.5);
  EXPECT_THROW_MSG(
      epsilon_loss(eps, schedule, x0, ti, torch::randn({4, 3})),
      "noise has shape [4, 3]");
  EXPECT_THROW_MSG(
      epsilon_loss(eps, schedule, x0, ti, z.to(torch::kDouble)), "dtype");
  EXPECT_THROW_MSG(epsilon_loss(eps, schedule, x0, tf, z), "integer");
  EXPECT_THROW_MSG(
      epsilon_loss(eps, schedule, x0, torch::full({4}, 10, torch::kLong), z),
      "10");
  EXPECT_THROW_MSG(
      epsilon_loss(eps, schedule, x0, torch::zeros({3}, torch::kLong), z), "3");
  EXPECT_THROW_MSG(
      epsilon_loss(eps, schedule, torch::zeros({4, 2}, torch::kLong), ti, z),
      "x0");
  EXPECT_THROW_MSG(
      epsilon_loss(eps, schedule, torch::randn({0, 2})), "non-empty batch");
  EXPECT_THROW_MSG(dsm_loss(eps, sde, x0, ti, z), "floating");
  EXPECT_THROW_MSG(
      dsm_loss(eps, sde, x0, torch::full({4}, 1.5), z), "t must lie in [0, 1]");
  EXPECT_THROW_MSG(
      dsm_loss(eps, sde, x0, SDELossOptions().eps(1.0)),
      "eps must lie in [0, 1), got 1");
  EXPECT_THROW_MSG(
      epsilon_loss(eps, sde, x0, SDELossOptions().eps(NAN)),
      "eps must lie in [0, 1)");
  EXPECT_THROW_MSG(
      sample_timesteps(0, 10, TimeSampling::Uniform, torch::kCPU),
      "n must be > 0, got 0");
  EXPECT_THROW_MSG(
      sample_timesteps(3, 0, TimeSampling::Uniform, torch::kCPU),
      "num_timesteps must be > 0, got 0");
  EXPECT_THROW_MSG(
      sample_times(3, -0.5, TimeSampling::Uniform, torch::kFloat),
      "eps must lie in [0, 1), got -0.5");
  EXPECT_THROW_MSG(
      sample_times(3, 0.0, TimeSampling::Uniform, torch::kLong),
      "floating dtype");
  // A model whose output has the wrong shape.
  Model bad(
      [](const torch::Tensor& x, const torch::Tensor&) { return x.sum(1); },
      Prediction::Epsilon);
  EXPECT_THROW(epsilon_loss(bad, sde, x0, tf, z), c10::Error);
}

}  // namespace
}  // namespace sbgm
