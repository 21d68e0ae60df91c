// The losses on any noise process, every target and weighting, against hand
// computations; EDM's preconditioning.

#include "sbgm/losses.h"

#include <cmath>

#include "sbgm/precondition.h"
#include "sbgm/processes/discrete.h"
#include "sbgm/processes/edm.h"
#include "sbgm/processes/ve.h"
#include "sbgm/processes/vp.h"
#include "sbgm/random.h"
#include "sbgm/schedule.h"
#include "support.h"

namespace sbgm {
namespace {

class Losses : public test::SeededTest {};

// VP by hand: B(t) = b0 t + t^2 (b1 - b0) / 2.
double vp_B(double t, double b0, double b1) {
  return b0 * t + 0.5 * t * t * (b1 - b0);
}

TEST_F(Losses, EpsilonLossOnAScheduleMatchesHandComputation) {
  const std::vector<double> betas = {0.1, 0.2, 0.3, 0.4};
  DiscreteProcess process(Schedule::from_betas(betas));
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
  // An eps model eps_hat = 0.5 x + 0.1 t; it must see the integer steps.
  Model model(
      [](const torch::Tensor& x, const torch::Tensor& tt) {
        EXPECT_EQ(tt.scalar_type(), torch::kLong);
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
  auto loss = diffusion_loss(model, process, x0, t, z);
  EXPECT_EQ(loss.dim(), 0);
  EXPECT_NEAR(loss.item<double>(), want, 1e-12);
  // Float times of integer value give the same.
  EXPECT_NEAR(
      diffusion_loss(model, process, x0, t.to(torch::kDouble), z)
          .item<double>(),
      want,
      1e-12);
}

// Every target and weighting on the VP SDE, computed here per sample from
// the closed forms with an eps model eps_hat = 0.4 x + 0.2 t: the target's
// estimate from eps_hat by the textbook formulas, and the weights as the
// papers write them.
TEST_F(Losses, EveryTargetAndWeightingMatchesHandComputation) {
  const double b0 = 0.1, b1 = 20.0, gamma = 5.0, sd = 0.5;
  VPSDE vp(b0, b1);
  const int64_t n = 6;
  auto x0 = torch::randn({n, 3}, torch::kDouble);
  auto z = torch::randn({n, 3}, torch::kDouble);
  auto t = torch::tensor({0.002, 0.05, 0.2, 0.5, 0.8, 1.0}, torch::kDouble);
  Model model(
      [](const torch::Tensor& x, const torch::Tensor& tt) {
        return 0.4 * x + 0.2 * tt.unsqueeze(1);
      },
      Prediction::Epsilon);
  for (auto target :
       {Prediction::Epsilon,
        Prediction::X0,
        Prediction::V,
        Prediction::Score}) {
    for (auto w :
         {LossWeighting::Unit,
          LossWeighting::SigmaSquared,
          LossWeighting::Likelihood,
          LossWeighting::MinSNR,
          LossWeighting::EDM}) {
      double want = 0;
      for (int64_t i = 0; i < n; ++i) {
        const double ti = t[i].item<double>();
        const double B = vp_B(ti, b0, b1), beta = b0 + ti * (b1 - b0);
        const double a = std::exp(-B / 2), s = std::sqrt(1 - std::exp(-B));
        const double snr = a * a / (s * s);
        auto xt = a * x0[i] + s * z[i];
        auto e_hat = 0.4 * xt + 0.2 * ti;
        auto x0_hat = (xt - s * e_hat) / a;
        torch::Tensor hat, tgt;
        switch (target) {
          case Prediction::Epsilon:
            hat = e_hat, tgt = z[i];
            break;
          case Prediction::X0:
            hat = x0_hat, tgt = x0[i];
            break;
          case Prediction::V:
            hat = a * e_hat - s * x0_hat, tgt = a * z[i] - s * x0[i];
            break;
          case Prediction::Score:
            hat = -e_hat / s, tgt = -z[i] / s;
            break;
        }
        const double mse = (hat - tgt).square().mean().item<double>();
        // The objective in x0-MSE terms, then converted to the target's.
        const double c = target == Prediction::Epsilon ? snr
                         : target == Prediction::X0    ? 1.0
                         : target == Prediction::V     ? 1.0 / (s * s)
                                                       : a * a / std::pow(s, 4);
        double lam = 1.0;
        switch (w) {
          case LossWeighting::Unit:
            lam = c;
            break;
          case LossWeighting::SigmaSquared:  // sigma^2 on the score MSE
            lam = s * s * a * a / std::pow(s, 4);
            break;
          case LossWeighting::Likelihood:  // g^2 = beta on the score MSE
            lam = beta * a * a / std::pow(s, 4);
            break;
          case LossWeighting::MinSNR:
            lam = std::min(snr, gamma);
            break;
          case LossWeighting::EDM: {
            const double ss = s / a;
            lam = (ss * ss + sd * sd) / (ss * ss * sd * sd);
            break;
          }
        }
        want += lam / c * mse / n;
      }
      auto got = diffusion_loss(
          model,
          vp,
          x0,
          t,
          z,
          LossOptions().target(target).weighting(w).min_snr_gamma(gamma));
      EXPECT_NEAR(got.item<double>(), want, 1e-9 * std::max(1.0, want))
          << to_string(target) << " weighting " << static_cast<int>(w);
    }
  }
}

TEST_F(Losses, WeightedObjectivesDoNotDependOnTheTarget) {
  // Min-SNR-5 gives one objective whether the squared error is taken on
  // eps, x0 or v (min(SNR, 5) / SNR on eps and min(SNR, 5) / (SNR + 1) on v
  // for VP, Hang et al. 2023); sigma^2-weighted DSM equals the eps loss.
  VPSDE vp;
  auto x0 = torch::randn({32, 2}, torch::kDouble);
  auto z = torch::randn({32, 2}, torch::kDouble);
  auto t = torch::rand({32}, torch::kDouble) * 0.99 + 0.005;
  Model v_model(
      [](const torch::Tensor& x, const torch::Tensor& tt) {
        return torch::tanh(x) * tt.unsqueeze(1);
      },
      Prediction::V);
  auto loss = [&](Prediction target, LossWeighting w) {
    return diffusion_loss(
               v_model, vp, x0, t, z, LossOptions().target(target).weighting(w))
        .item<double>();
  };
  const double eps = loss(Prediction::Epsilon, LossWeighting::MinSNR);
  EXPECT_NEAR(loss(Prediction::X0, LossWeighting::MinSNR), eps, 1e-10);
  EXPECT_NEAR(loss(Prediction::V, LossWeighting::MinSNR), eps, 1e-10);
  EXPECT_NEAR(
      loss(Prediction::Score, LossWeighting::SigmaSquared),
      loss(Prediction::Epsilon, LossWeighting::Unit),
      1e-10);
  // The drawing overload of DSM is that objective with its own draws.
  EXPECT_EQ(
      dsm_loss(v_model, vp, x0, false, LossOptions(), make_generator(3))
          .item<double>(),
      diffusion_loss(
          v_model,
          vp,
          x0,
          LossOptions()
              .target(Prediction::Score)
              .weighting(LossWeighting::SigmaSquared),
          make_generator(3))
          .item<double>());
}

TEST_F(Losses, DSMOfTheExactGaussianScoreReachesItsMinimum) {
  // x0 ~ N(0, c^2 I) under the VP SDE: p_t = N(0, v I), v = a^2 c^2 + s^2,
  // score -x / v, and E[(s score + z)^2] = a^2 c^2 / v per dimension.
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
  auto dsm = LossOptions()
                 .target(Prediction::Score)
                 .weighting(LossWeighting::SigmaSquared);
  auto m2c2 = torch::exp(-B) * c * c;
  const double want = (m2c2 / v.squeeze(1)).mean().item<double>();
  const double got =
      diffusion_loss(make(1.0), sde, x0, t, z, dsm).item<double>();
  EXPECT_NEAR(got, want, 0.01 * want);
  EXPECT_GT(diffusion_loss(make(1.2), sde, x0, t, z, dsm).item<double>(), got);
  EXPECT_GT(diffusion_loss(make(0.8), sde, x0, t, z, dsm).item<double>(), got);
}

TEST_F(Losses, TimeSampling) {
  DiscreteProcess disc(Schedule::linear(50));
  auto u = sample_times(disc, 9, LossOptions(), torch::kCPU);
  EXPECT_EQ(u.scalar_type(), torch::kDouble);
  EXPECT_TRUE(torch::equal(u, u.round()));
  EXPECT_GE(u.min().item<double>(), 0);
  EXPECT_LE(u.max().item<double>(), 49);
  auto a = sample_times(
      disc, 9, LossOptions().sampling(TimeSampling::Antithetic), torch::kCPU);
  ASSERT_EQ(a.numel(), 9);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(a[i].item<double>() + a[i + 5].item<double>(), 49);
  }
  VPSDE vp;
  auto f = sample_times(
      vp, 8, LossOptions().sampling(TimeSampling::Antithetic), torch::kCPU);
  ASSERT_EQ(f.numel(), 8);
  for (int i = 0; i < 4; ++i) {
    EXPECT_NEAR(f[i].item<double>() + f[i + 4].item<double>(), 1.001, 1e-12);
  }
  EXPECT_GE(f.min().item<double>(), 1e-3);
  EXPECT_LE(f.max().item<double>(), 1.0);
  // EDM's log-normal levels: ln sigma ~ N(-1.2, 1.2^2).
  EDMProcess edm;
  auto ln = sample_times(
                edm,
                100000,
                LossOptions().sampling(TimeSampling::LogNormal),
                torch::kCPU)
                .log();
  EXPECT_NEAR(ln.mean().item<double>(), -1.2, 0.02);
  EXPECT_NEAR(ln.std().item<double>(), 1.2, 0.02);
  // ... and on VP the same levels of sigma / alpha, mapped through lambda.
  auto tv = sample_times(
      vp, 100000, LossOptions().sampling(TimeSampling::LogNormal), torch::kCPU);
  auto lam = vp.lambda(tv);
  // (clamping at t_min = 1e-3 moves the few levels below sigma / alpha =
  // 0.045; compare the median instead of the mean)
  EXPECT_NEAR(-lam.median().item<double>(), -1.2, 0.03);
  // A generator makes the draws reproducible.
  EXPECT_TRUE(torch::equal(
      sample_times(vp, 5, LossOptions(), torch::kCPU, make_generator(7)),
      sample_times(vp, 5, LossOptions(), torch::kCPU, make_generator(7))));
}

TEST_F(Losses, DrawingOverloadsGiveFiniteDifferentiableLosses) {
  DiscreteProcess disc(Schedule::linear(100));
  VPSDE vp;
  VESDE ve(25.0);
  EDMProcess edm;
  auto w = torch::ones({1}, torch::requires_grad());
  Model eps(
      [w](const torch::Tensor& x, const torch::Tensor&) { return w * x; },
      Prediction::Epsilon);
  Model score(
      [w](const torch::Tensor& x, const torch::Tensor&) { return -w * x; },
      Prediction::Score);
  auto x0 = torch::randn({16, 2});
  for (auto sampling :
       {TimeSampling::Uniform,
        TimeSampling::Antithetic,
        TimeSampling::LogNormal}) {
    auto o = LossOptions().sampling(sampling);
    std::vector<torch::Tensor> losses = {
        epsilon_loss(eps, disc, x0, o),
        x0_loss(eps, vp, x0, o),
        v_loss(eps, vp, x0, o),
        dsm_loss(score, disc, x0, false, o),
        dsm_loss(score, vp, x0, false, o),
        dsm_loss(score, ve, x0, true, o),
        diffusion_loss(
            eps,
            edm,
            x0,
            LossOptions(o)
                .target(Prediction::X0)
                .weighting(LossWeighting::EDM)),
        epsilon_loss(
            eps, vp, x0, LossOptions(o).weighting(LossWeighting::MinSNR)),
    };
    for (auto& l : losses) {
      EXPECT_EQ(l.dim(), 0);
      EXPECT_TRUE(std::isfinite(l.item<double>()));
      auto g = torch::autograd::grad({l}, {w});
      EXPECT_TRUE(std::isfinite(g[0].item<double>()));
    }
  }
}

// ---- EDM preconditioning
// ------------------------------------------------------

TEST(Precondition, EDMCoefficientsAndWrapper) {
  // Karras et al. Table 1 at sigma = 0.7, sigma_data = 0.5.
  const auto c = edm_coefficients(0.7, 0.5);
  EXPECT_NEAR(c.c_skip, 0.25 / (0.49 + 0.25), 1e-15);
  EXPECT_NEAR(c.c_out, 0.7 * 0.5 / std::sqrt(0.74), 1e-15);
  EXPECT_NEAR(c.c_in, 1 / std::sqrt(0.74), 1e-15);
  EXPECT_NEAR(c.c_noise, 0.25 * std::log(0.7), 1e-15);
  // The wrapper under EDM (alpha = 1) and VP (x / alpha, sigma / alpha).
  auto raw = [](const torch::Tensor& x, const torch::Tensor& cn) {
    return torch::sin(x) + cn.unsqueeze(1);
  };
  auto x = torch::randn({3, 2}, torch::kDouble);
  for (std::shared_ptr<NoiseProcess> p :
       {std::shared_ptr<NoiseProcess>(std::make_shared<EDMProcess>()),
        std::shared_ptr<NoiseProcess>(std::make_shared<VPSDE>())}) {
    auto model = edm_precondition(raw, p, 0.5);
    EXPECT_EQ(model.prediction(), Prediction::X0);
    const double t = p->name() == "edm" ? 0.7 : 0.3;
    const auto pt = p->at(t);
    const auto k = edm_coefficients(pt.sigma / pt.alpha, 0.5);
    auto xs = x / pt.alpha;
    auto want = k.c_skip * xs + k.c_out * (torch::sin(k.c_in * xs) + k.c_noise);
    auto got = model(x, torch::full({3}, t, torch::kDouble));
    EXPECT_TRUE(test::all_close(got, want, 1e-12, 1e-12)) << p->describe();
  }
  EXPECT_THROW_MSG(
      edm_precondition(
          raw, std::make_shared<DiscreteProcess>(Schedule::linear(10))),
      "feeds integer steps; EDM's preconditioning needs continuous times");
  EXPECT_THROW_MSG(
      edm_coefficients(0.0, 0.5),
      "the noise level must be finite and > 0, got 0");
}

TEST_F(Losses, RejectBadInput) {
  DiscreteProcess disc(Schedule::linear(10));
  VPSDE vp;
  Model eps(
      [](const torch::Tensor& x, const torch::Tensor&) { return x.clone(); },
      Prediction::Epsilon);
  auto x0 = torch::randn({4, 2});
  auto z = torch::randn({4, 2});
  auto ti = torch::zeros({4}, torch::kLong);
  auto tf = torch::full({4}, 0.5);
  EXPECT_THROW_MSG(
      diffusion_loss(eps, disc, x0, ti, torch::randn({4, 3})),
      "noise has shape [4, 3] but x0 has shape [4, 2]");
  EXPECT_THROW_MSG(
      diffusion_loss(eps, disc, x0, ti, z.to(torch::kDouble)),
      "noise has dtype Double but x0 has dtype Float");
  EXPECT_THROW_MSG(
      diffusion_loss(eps, disc, x0, torch::full({4}, 10, torch::kLong), z),
      "times must lie in the range of the discrete(linear, T=10) process, [0, "
      "9], got values in [10, 10]");
  EXPECT_THROW_MSG(
      diffusion_loss(eps, disc, x0, torch::zeros({3}, torch::kLong), z),
      "t has 3 entries but x has shape [4, 2]");
  EXPECT_THROW_MSG(
      diffusion_loss(eps, disc, torch::zeros({4, 2}, torch::kLong), ti, z),
      "x0 must be a floating-point tensor, got dtype Long");
  EXPECT_THROW_MSG(
      epsilon_loss(eps, disc, torch::randn({0, 2})), "non-empty batch");
  EXPECT_THROW_MSG(
      diffusion_loss(eps, vp, x0, torch::full({4}, 1.5), z),
      "times must lie in the range of the vp(beta_min=0.1, beta_max=20) "
      "process, [0, 1], got values in [1.5, 1.5]");
  EXPECT_THROW_MSG(
      epsilon_loss(eps, vp, x0, LossOptions().t_min(2.0)),
      "t_min must lie in [0, 1] for the vp(beta_min=0.1, beta_max=20) "
      "process, got 2");
  EXPECT_THROW_MSG(
      epsilon_loss(eps, vp, x0, LossOptions().min_snr_gamma(0)),
      "min_snr_gamma must be finite and > 0, got 0");
  EXPECT_THROW_MSG(
      epsilon_loss(eps, vp, x0, LossOptions().p_std(-1)),
      "p_std must be finite and > 0");
  EXPECT_THROW_MSG(
      sample_times(vp, 0, LossOptions(), torch::kCPU), "n must be > 0, got 0");
  // A step network under a continuous process.
  Model steps(
      [](const torch::Tensor& x, const torch::Tensor&) { return x.clone(); },
      Prediction::Epsilon,
      /*discrete_steps=*/10);
  EXPECT_THROW_MSG(
      diffusion_loss(steps, vp, x0, tf, z),
      "diffusion_loss: the model takes integer step indices in [0, 10)");
  // A model whose output has the wrong shape.
  Model bad(
      [](const torch::Tensor& x, const torch::Tensor&) { return x.sum(1); },
      Prediction::Epsilon);
  EXPECT_THROW_MSG(
      diffusion_loss(bad, vp, x0, tf, z), "the model returned shape [4]");
}

}  // namespace
}  // namespace sbgm
