#include "sbgm/gmm.h"

#include <cmath>

#include "sbgm/processes/discrete.h"
#include "sbgm/processes/edm.h"
#include "sbgm/processes/ve.h"
#include "sbgm/processes/vp.h"
#include "sbgm/schedule.h"
#include "support.h"

using sbgm::GaussianMixture;
using sbgm::test::all_close;

namespace {

GaussianMixture two_d() {
  return GaussianMixture(
      torch::tensor({0.25, 0.75}, torch::kDouble),
      torch::tensor({{-2.0, 0.5}, {1.5, -1.0}}, torch::kDouble),
      torch::tensor({{0.5, 0.8}, {0.3, 0.4}}, torch::kDouble));
}

// Independent float64 hand computation of log p_t(x) and its gradient for
// one point, component by component.
void hand(
    const GaussianMixture& g,
    const std::vector<double>& x,
    double m,
    double s,
    double* logp,
    std::vector<double>* grad) {
  auto w = g.weights().cpu();
  auto mu = g.means().cpu();
  auto sd = g.stds().cpu();
  const int64_t K = g.num_components(), D = g.dim();
  std::vector<double> comp(K);
  double mx = -1e300;
  for (int64_t k = 0; k < K; ++k) {
    double l = std::log(w[k].item<double>());
    for (int64_t d = 0; d < D; ++d) {
      double v = m * m * std::pow(sd[k][d].item<double>(), 2) + s * s;
      double r = x[d] - m * mu[k][d].item<double>();
      l += -0.5 * (r * r / v + std::log(2 * M_PI * v));
    }
    comp[k] = l;
    mx = std::max(mx, l);
  }
  double z = 0;
  for (auto l : comp)
    z += std::exp(l - mx);
  *logp = mx + std::log(z);
  grad->assign(D, 0.0);
  for (int64_t k = 0; k < K; ++k) {
    double r = std::exp(comp[k] - *logp);
    for (int64_t d = 0; d < D; ++d) {
      double v = m * m * std::pow(sd[k][d].item<double>(), 2) + s * s;
      (*grad)[d] += -r * (x[d] - m * mu[k][d].item<double>()) / v;
    }
  }
}

}  // namespace

TEST(GaussianMixture, MatchesHandComputation) {
  auto g = two_d();
  auto x =
      torch::tensor({{0.3, -0.2}, {-2.5, 1.0}, {4.0, -3.0}}, torch::kDouble);
  for (auto [m, s] : {std::pair{1.0, 0.0}, {0.8, 0.6}, {0.1, 0.99}}) {
    auto lp = g.log_prob(x, m, s);
    auto sc = g.score(x, m, s);
    for (int64_t i = 0; i < 3; ++i) {
      double ref;
      std::vector<double> grad;
      hand(
          g,
          {x[i][0].item<double>(), x[i][1].item<double>()},
          m,
          s,
          &ref,
          &grad);
      EXPECT_NEAR(lp[i].item<double>(), ref, 1e-12);
      EXPECT_NEAR(sc[i][0].item<double>(), grad[0], 1e-12);
      EXPECT_NEAR(sc[i][1].item<double>(), grad[1], 1e-12);
    }
  }
}

TEST(GaussianMixture, ScoreIsTheGradientOfLogProb) {
  auto g = two_d();
  auto x = torch::randn({5, 2}, torch::kDouble) * 2;
  const double m = 0.7, s = 0.5, h = 1e-6;
  auto sc = g.score(x, m, s);
  for (int64_t d = 0; d < 2; ++d) {
    auto e = torch::zeros({1, 2}, torch::kDouble);
    e[0][d] = h;
    auto fd = (g.log_prob(x + e, m, s) - g.log_prob(x - e, m, s)) / (2 * h);
    EXPECT_TRUE(all_close(sc.select(1, d), fd, 1e-6, 1e-7));
  }
  // Far from every component the score stays finite (softmax, not ratios).
  auto far = torch::tensor({{300.0, -400.0}}, torch::kFloat);
  EXPECT_TRUE(g.score(far, 1.0, 0.0).isfinite().all().item<bool>());
}

TEST(GaussianMixture, PerSampleCoefficientsAndModels) {
  auto g = two_d();
  auto x = torch::randn({4, 2}, torch::kDouble);
  auto m = torch::tensor({0.99, 0.8, 0.5, 0.1}, torch::kDouble);
  auto s = (1 - m * m).sqrt();
  auto sc = g.score(x, m, s);
  auto eps = g.epsilon(x, m, s);
  for (int64_t i = 0; i < 4; ++i) {
    const double mi = m[i].item<double>(), si = s[i].item<double>();
    EXPECT_TRUE(all_close(sc[i], g.score(x.slice(0, i, i + 1), mi, si)[0]));
    EXPECT_TRUE(all_close(eps[i], -si * sc[i]));
  }
  // Under a process: alpha(t), sigma(t) at each t.
  auto sde = std::make_shared<sbgm::VPSDE>();
  auto t = torch::tensor({0.1, 0.5, 0.9, 1.0}, torch::kDouble);
  auto mt = sde->alpha(t), st = sde->sigma(t);
  auto model_eps = g.model(sde, sbgm::Prediction::Epsilon);
  auto model_x0 = g.model(sde, sbgm::Prediction::X0);
  auto model_v = g.model(sde, sbgm::Prediction::V);
  auto ref = g.score(x, mt, st);
  auto eps_ref = -ref * st.view({-1, 1});
  auto x0_ref = (x + st.square().view({-1, 1}) * ref) / mt.view({-1, 1});
  EXPECT_TRUE(all_close(model_eps(x, t), eps_ref, 1e-10));
  EXPECT_TRUE(all_close(model_x0(x, t), x0_ref, 1e-10));
  EXPECT_TRUE(all_close(
      model_v(x, t),
      mt.view({-1, 1}) * eps_ref - st.view({-1, 1}) * x0_ref,
      1e-10));
  // A discrete schedule: sqrt(alpha_bar_t), sqrt(1 - alpha_bar_t) at the
  // (integer) steps the process feeds.
  auto sched = sbgm::Schedule::linear(100);
  auto ti = torch::tensor({0, 10, 50, 99}, torch::kLong);
  auto ab = sched.alphas_cumprod().index_select(0, ti);
  auto model_s = g.model(
      std::make_shared<sbgm::DiscreteProcess>(sched), sbgm::Prediction::Score);
  EXPECT_TRUE(
      all_close(model_s(x, ti), g.score(x, ab.sqrt(), (1 - ab).sqrt()), 1e-10));
}

TEST(GaussianMixture, SamplesAndMoments) {
  auto g = two_d();
  auto gen = torch::make_generator<torch::CPUGeneratorImpl>(3);
  auto [x, comp] = g.sample_with_components(200000, gen, torch::kDouble);
  EXPECT_EQ(x.sizes(), (std::vector<int64_t>{200000, 2}));
  EXPECT_NEAR(comp.to(torch::kDouble).mean().item<double>(), 0.75, 0.005);
  // Exact moments by hand.
  auto mean = torch::tensor(
      {0.25 * -2.0 + 0.75 * 1.5, 0.25 * 0.5 - 0.75}, torch::kDouble);
  EXPECT_TRUE(all_close(g.mean(), mean, 1e-12));
  EXPECT_TRUE(all_close(x.mean(0), mean, 0, 0.02));
  auto xc = x - x.mean(0);
  auto cov = xc.t().matmul(xc) / x.size(0);
  EXPECT_TRUE(all_close(cov, g.covariance(), 0, 0.03));
  // log_prob integrates to one on a grid.
  auto lin = torch::linspace(-6, 6, 401, torch::kDouble);
  auto grid =
      torch::stack(torch::meshgrid({lin, lin}, "ij"), -1).reshape({-1, 2});
  double mass = g.log_prob(grid).exp().sum().item<double>() * std::pow(0.03, 2);
  EXPECT_NEAR(mass, 1.0, 1e-3);
}

TEST(GaussianMixtureErrors, BadInput) {
  auto w = torch::tensor({0.5, 0.5}, torch::kDouble);
  auto mu = torch::zeros({2, 2}, torch::kDouble);
  auto sd = torch::ones({2}, torch::kDouble);
  EXPECT_THROW_MSG(
      GaussianMixture(w, torch::zeros({3, 2}), sd),
      "means must have shape [K, D]");
  EXPECT_THROW_MSG(
      GaussianMixture(w, mu, torch::ones({2, 3})), "stds must have shape");
  EXPECT_THROW_MSG(
      GaussianMixture(torch::zeros({2, 2}), mu, sd),
      "weights must have shape [K]");
  EXPECT_THROW_MSG(
      GaussianMixture(-w, mu, sd), "weights must be finite and > 0");
  EXPECT_THROW_MSG(GaussianMixture(w, mu, -sd), "stds must be finite and > 0");
  EXPECT_THROW_MSG(GaussianMixture(w, mu * NAN, sd), "means must be finite");
  EXPECT_THROW_MSG(
      GaussianMixture(torch::tensor({1, 1}), mu, sd), "floating-point");
  GaussianMixture g(w, mu, sd);
  EXPECT_THROW_MSG(
      g.score(torch::zeros({3, 3}), 1.0, 0.5), "x must have shape [N, 2]");
  EXPECT_THROW_MSG(
      g.score(torch::zeros({3, 2}), -1.0, 0.5), "must be finite and >= 0");
  EXPECT_THROW_MSG(
      g.score(torch::zeros({3, 2}), torch::ones({2}), torch::ones({3})),
      "m and s must be 0-dim or have shape [N]");
  EXPECT_THROW_MSG(
      g.score(torch::zeros({3, 2}), torch::ones({3}), -torch::ones({3})),
      "s must be >= 0");
  EXPECT_THROW_MSG(
      g.epsilon(torch::zeros({3, 2}), 1.0, 0.0), "s must be finite and > 0");
  EXPECT_THROW_MSG(g.sample(-1), "n must be >= 0");
  EXPECT_THROW_MSG(
      g.sample(2, std::nullopt, torch::kLong), "dtype must be floating");
  EXPECT_THROW_MSG(g.model(nullptr), "process is null");
  auto model = g.model(
      std::make_shared<sbgm::DiscreteProcess>(sbgm::Schedule::linear(10)));
  EXPECT_THROW_MSG(
      model(torch::zeros({2, 2}), torch::tensor({0, 10})),
      "times must lie in the range of the discrete(linear, T=10) process, "
      "[0, 9], got values in [0, 10]");
}
