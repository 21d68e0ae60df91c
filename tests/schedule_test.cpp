#include "sbgm/schedule.h"

#include <cmath>
#include <vector>

#include "internal.h"
#include "sbgm/warnings.h"
#include "support.h"

namespace sbgm {
namespace {

using test::all_close;

// Independent float64 computation of every DDPM table from a beta list.
struct Reference {
  std::vector<double> beta, alpha, abar, abar_prev, post_var, post_logvar,
      coef1, coef2;
  explicit Reference(const std::vector<double>& b) : beta(b) {
    const size_t T = b.size();
    double prod = 1.0;
    for (size_t i = 0; i < T; ++i) {
      alpha.push_back(1.0 - b[i]);
      abar_prev.push_back(prod);
      prod *= 1.0 - b[i];
      abar.push_back(prod);
    }
    for (size_t i = 0; i < T; ++i) {
      post_var.push_back(b[i] * (1.0 - abar_prev[i]) / (1.0 - abar[i]));
      coef1.push_back(b[i] * std::sqrt(abar_prev[i]) / (1.0 - abar[i]));
      coef2.push_back(
          (1.0 - abar_prev[i]) * std::sqrt(alpha[i]) / (1.0 - abar[i]));
    }
    for (size_t i = 0; i < T; ++i) {
      post_logvar.push_back(
          std::log(i == 0 ? (T > 1 ? post_var[1] : b[0]) : post_var[i]));
    }
  }
};

torch::Tensor vec(const std::vector<double>& v) {
  return torch::tensor(v, torch::kDouble);
}

void expect_tables(const Schedule& s, const std::vector<double>& betas) {
  Reference r(betas);
  EXPECT_TRUE(all_close(s.betas(), vec(r.beta), 1e-12, 1e-15));
  EXPECT_TRUE(all_close(s.alphas(), vec(r.alpha), 1e-12, 1e-15));
  EXPECT_TRUE(all_close(s.alphas_cumprod(), vec(r.abar), 1e-10, 1e-15));
  EXPECT_TRUE(
      all_close(s.alphas_cumprod_prev(), vec(r.abar_prev), 1e-10, 1e-15));
  EXPECT_TRUE(all_close(s.posterior_variance(), vec(r.post_var), 1e-10, 1e-15));
  EXPECT_TRUE(all_close(
      s.posterior_log_variance_clipped(), vec(r.post_logvar), 1e-10, 1e-12));
  EXPECT_TRUE(all_close(s.posterior_mean_coef1(), vec(r.coef1), 1e-10, 1e-15));
  EXPECT_TRUE(all_close(s.posterior_mean_coef2(), vec(r.coef2), 1e-10, 1e-15));
  std::vector<double> sa, s1a, sra;
  for (size_t i = 0; i < betas.size(); ++i) {
    sa.push_back(std::sqrt(r.abar[i]));
    s1a.push_back(std::sqrt(1.0 - r.abar[i]));
    sra.push_back(1.0 / std::sqrt(r.alpha[i]));
  }
  EXPECT_TRUE(all_close(s.sqrt_alphas_cumprod(), vec(sa), 1e-10, 1e-15));
  EXPECT_TRUE(
      all_close(s.sqrt_one_minus_alphas_cumprod(), vec(s1a), 1e-10, 1e-15));
  EXPECT_TRUE(all_close(s.sqrt_recip_alphas(), vec(sra), 1e-12, 1e-15));
  // Host accessors agree with the tables.
  for (int64_t t : {int64_t{0}, s.num_timesteps() / 2, s.num_timesteps() - 1}) {
    const auto i = static_cast<size_t>(t);
    EXPECT_DOUBLE_EQ(s.beta(t), r.beta[i]);
    EXPECT_NEAR(s.alpha_bar(t), r.abar[i], 1e-12);
    EXPECT_NEAR(s.alpha_bar_prev(t), r.abar_prev[i], 1e-12);
    EXPECT_NEAR(s.posterior_variance(t), r.post_var[i], 1e-12);
  }
}

TEST(Schedule, LinearMatchesClosedForm) {
  const int64_t T = 1000;
  std::vector<double> b;
  for (int64_t i = 0; i < T; ++i) {
    b.push_back(1e-4 + (0.02 - 1e-4) * static_cast<double>(i) / (T - 1));
  }
  auto s = Schedule::linear(T, 1e-4, 0.02);
  EXPECT_EQ(s.num_timesteps(), T);
  EXPECT_EQ(s.kind(), ScheduleKind::Linear);
  EXPECT_EQ(s.betas().scalar_type(), torch::kDouble);
  expect_tables(s, b);
  // alpha_bar_T = prod(1 - beta) ~ 4.0358e-5 for the DDPM default.
  EXPECT_NEAR(s.terminal_alpha_bar(), 4.0358e-5, 1e-8);
  EXPECT_TRUE(s.reaches_prior());
}

TEST(Schedule, SigmoidMatchesClosedForm) {
  const int64_t T = 150;
  std::vector<double> b;
  for (int64_t i = 0; i < T; ++i) {
    const double x = -6.0 + 12.0 * static_cast<double>(i) / (T - 1);
    b.push_back(1.0 / (1.0 + std::exp(-x)) * (5e-3 - 1e-5) + 1e-5);
  }
  auto s = Schedule::sigmoid(T, 1e-5, 5e-3);
  expect_tables(s, b);
}

TEST(Schedule, SeedScheduleStopsShortOfThePrior) {
  // The swiss-roll seed: T = 150 sigmoid 1e-5 -> 5e-3. alpha_bar_T is the
  // product computed above; about 0.69.
  auto s = Schedule::sigmoid(150, 1e-5, 5e-3);
  double prod = 1.0;
  for (int64_t i = 0; i < 150; ++i) {
    const double x = -6.0 + 12.0 * static_cast<double>(i) / 149;
    prod *= 1.0 - (1.0 / (1.0 + std::exp(-x)) * (5e-3 - 1e-5) + 1e-5);
  }
  EXPECT_NEAR(s.terminal_alpha_bar(), prod, 1e-12);
  EXPECT_NEAR(s.terminal_alpha_bar(), 0.69, 0.01);
  EXPECT_NEAR(s.terminal_snr(), prod / (1 - prod), 1e-9);
  EXPECT_FALSE(s.reaches_prior());
}

TEST(Schedule, WarnsOnceWhenFarFromPriorThroughTheHandler) {
  // The default handler prints one line to stderr.
  detail::prior_warning_issued() = false;
  ::testing::internal::CaptureStderr();
  Schedule::sigmoid(150, 1e-5, 5e-3);
  Schedule::sigmoid(150, 1e-5, 5e-3);
  Schedule::linear(1000);  // reaches the prior: no warning
  auto err = ::testing::internal::GetCapturedStderr();
  const std::string key = "sbgm: warning: this sigmoid schedule";
  auto first = err.find(key);
  ASSERT_NE(first, std::string::npos) << err;
  EXPECT_NE(err.find("alpha_bar_T = 0.686"), std::string::npos) << err;
  EXPECT_EQ(err.find(key, first + 1), std::string::npos)
      << "warned more than once:\n"
      << err;
  // A handler of the program's own receives it instead; none silences it.
  std::vector<std::string> got;
  auto previous =
      set_warning_handler([&](const std::string& m) { got.push_back(m); });
  detail::prior_warning_issued() = false;
  ::testing::internal::CaptureStderr();
  Schedule::sigmoid(150, 1e-5, 5e-3);
  EXPECT_EQ(::testing::internal::GetCapturedStderr(), "");
  ASSERT_EQ(got.size(), 1u);
  EXPECT_NE(got[0].find("alpha_bar_T = 0.686"), std::string::npos) << got[0];
  set_warning_handler(nullptr);
  detail::prior_warning_issued() = false;
  ::testing::internal::CaptureStderr();
  Schedule::sigmoid(150, 1e-5, 5e-3);
  EXPECT_EQ(::testing::internal::GetCapturedStderr(), "");
  EXPECT_EQ(got.size(), 1u);
  set_warning_handler(previous);
}

TEST(Schedule, CosineEndpoints) {
  const int64_t T = 1000;
  const double s = 0.008;
  auto f = [&](double t) {
    const double c = std::cos((t / T + s) / (1 + s) * M_PI / 2);
    return c * c;
  };
  auto sch = Schedule::cosine(T);
  // First step: alpha_bar_0 = f(1)/f(0).
  EXPECT_NEAR(sch.alpha_bar(0), f(1) / f(0), 1e-14);
  EXPECT_NEAR(sch.beta(0), 1 - f(1) / f(0), 1e-14);
  // Mid-way the unclipped product telescopes to f(t+1)/f(0).
  EXPECT_NEAR(sch.alpha_bar(499), f(500) / f(0), 1e-12);
  // f(T) = cos^2(pi/2) = 0 so the last beta is clipped at 0.999.
  EXPECT_DOUBLE_EQ(sch.beta(T - 1), 0.999);
  EXPECT_LE(sch.betas().max().item<double>(), 0.999);
  EXPECT_TRUE(sch.reaches_prior());
  std::vector<double> b;
  for (int64_t i = 0; i < T; ++i) {
    b.push_back(std::min(1 - f(i + 1) / f(i), 0.999));
  }
  expect_tables(sch, b);
}

TEST(Schedule, CustomBetasAndSingleStep) {
  std::vector<double> b = {0.1, 0.2, 0.5};
  auto s = Schedule::from_betas(b);
  EXPECT_EQ(s.kind(), ScheduleKind::Custom);
  expect_tables(s, b);
  EXPECT_NEAR(s.terminal_alpha_bar(), 0.9 * 0.8 * 0.5, 1e-15);
  auto one = Schedule::from_betas(torch::tensor({0.3}, torch::kFloat));
  expect_tables(one, {static_cast<double>(0.3f)});
  EXPECT_DOUBLE_EQ(one.posterior_variance(0), 0.0);
}

TEST(Schedule, CopiesShareTables) {
  auto s = Schedule::linear(10);
  auto c = s;
  EXPECT_TRUE(c.betas().is_same(s.betas()));
}

TEST(ScheduleErrors, BadConstruction) {
  using test::all_close;
  EXPECT_THROW_MSG(
      Schedule::linear(0), "num_timesteps must be at least 1, got 0");
  EXPECT_THROW_MSG(Schedule::cosine(-3), "got -3");
  EXPECT_THROW_MSG(
      Schedule::linear(10, 0.0, 0.02), "beta_start must lie in (0, 1), got 0");
  EXPECT_THROW_MSG(
      Schedule::linear(10, 1e-4, 1.5), "beta_end must lie in (0, 1), got 1.5");
  EXPECT_THROW_MSG(Schedule::sigmoid(10, -1e-5, 5e-3), "got -1e-05");
  EXPECT_THROW_MSG(
      Schedule::from_betas(std::vector<double>{0.1, 1.0, 0.2}), "beta[1] = 1");
  EXPECT_THROW_MSG(
      Schedule::from_betas(std::vector<double>{0.1, -0.2}), "beta[1] = -0.2");
  EXPECT_THROW_MSG(
      Schedule::from_betas(std::vector<double>{0.1, std::nan("")}),
      "beta[1] = nan");
  EXPECT_THROW_MSG(
      Schedule::from_betas(std::vector<double>{}), "at least 1, got 0");
  EXPECT_THROW_MSG(
      Schedule::from_betas(torch::tensor({1, 2})),
      "must be floating point, got dtype Long");
  EXPECT_THROW_MSG(
      Schedule::from_betas(torch::full({2, 2}, 0.1)),
      "must be 1-dim, got shape [2, 2]");
  EXPECT_THROW_MSG(
      Schedule::cosine(10, 0.008, 1.0), "max_beta must lie in (0, 1), got 1");
}

TEST(ScheduleErrors, BadTimesteps) {
  auto s = Schedule::linear(10);
  auto x = torch::randn({4, 2});
  EXPECT_THROW_MSG(s.beta(10), "timestep 10 is outside [0, 10)");
  EXPECT_THROW_MSG(s.alpha_bar(-1), "timestep -1 is outside [0, 10)");
  EXPECT_THROW_MSG(
      s.extract(s.betas(), torch::tensor({0, 1, 2, 10}), x),
      "timesteps must lie in [0, 10), got values in [0, 10]");
  EXPECT_THROW_MSG(
      s.extract(s.betas(), torch::tensor({0, 1, 2}), x),
      "t has 3 entries but x has shape [4, 2]");
  EXPECT_THROW_MSG(
      s.extract(s.betas(), torch::tensor({0.5, 1.0, 2.0, 3.0}), x),
      "discrete timesteps t must be an integer tensor, got dtype Float");
  EXPECT_THROW_MSG(
      s.q_sample(
          torch::ones({4, 2}, torch::kLong), torch::tensor({0, 1, 2, 3}), x),
      "x0 must be a floating-point tensor, got dtype Long");
  EXPECT_THROW_MSG(
      s.q_sample(x, torch::tensor({0, 1, 2, 3}), torch::randn({4, 3})),
      "noise has shape [4, 3] but x0 has shape [4, 2]");
  // A tensor on another device (the meta device needs no GPU).
  EXPECT_THROW_MSG(
      s.extract(
          s.betas(),
          torch::zeros({4}, torch::dtype(torch::kLong).device(torch::kMeta)),
          x),
      "t is on meta but x is on cpu");
}

class ScheduleDevice : public test::DeviceTest {};

TEST_P(ScheduleDevice, ExtractBroadcastsOverAnyShape) {
  auto s = Schedule::cosine(50).to(device());
  EXPECT_EQ(s.device(), device());
  EXPECT_EQ(s.betas().device(), device());
  auto img = torch::randn({3, 1, 4, 4}, f32());
  auto t =
      torch::tensor({0, 7, 49}, torch::dtype(torch::kLong).device(device()));
  auto v = s.extract(s.alphas_cumprod(), t, img);
  EXPECT_EQ(v.sizes(), torch::IntArrayRef({3, 1, 1, 1}));
  EXPECT_EQ(v.scalar_type(), torch::kFloat);
  EXPECT_NEAR(v[1].item<double>(), s.alpha_bar(7), 1e-7);
  auto pts = torch::randn({3, 2}, f32());
  EXPECT_EQ(s.extract(s.betas(), t, pts).sizes(), torch::IntArrayRef({3, 1}));
  auto scalar_t = torch::tensor(7, torch::dtype(torch::kLong).device(device()));
  auto v0 = s.extract(s.alphas_cumprod(), scalar_t, img);
  EXPECT_EQ(v0.dim(), 0);
  // A scalar t broadcasts over the whole batch in q_sample.
  auto noise = torch::randn_like(img);
  auto a = s.q_sample(img, scalar_t, noise);
  auto b = s.q_sample(img, t.fill_(7), noise);
  EXPECT_TRUE(all_close(a, b, 1e-6, 1e-6));
}

TEST_P(ScheduleDevice, QSampleMoments) {
  // x0 = 2 everywhere; x_t ~ N(2 sqrt(abar), 1 - abar). 1e5 samples.
  auto s = Schedule::linear(1000).to(device());
  const int64_t n = 100000;
  const int64_t step = 300;
  auto x0 = torch::full({n, 1}, 2.0, f64());
  auto t = torch::full({n}, step, torch::dtype(torch::kLong).device(device()));
  auto xt = s.q_sample(x0, t, torch::randn({n, 1}, f64()));
  const double ab = s.alpha_bar(step);
  const double mean = xt.mean().item<double>();
  const double var = xt.var().item<double>();
  const double se_mean = std::sqrt((1 - ab) / n);
  const double se_var = (1 - ab) * std::sqrt(2.0 / (n - 1));
  EXPECT_NEAR(mean, 2 * std::sqrt(ab), 4 * se_mean);
  EXPECT_NEAR(var, 1 - ab, 4 * se_var);
}

TEST_P(ScheduleDevice, PosteriorMeanIsGaussianConditioning) {
  // Independent check: q(x_{t-1} | x_t, x0) from Bayes' rule on scalars.
  auto s = Schedule::cosine(100).to(device());
  auto x0 = torch::randn({5, 3}, f64());
  auto xt = torch::randn({5, 3}, f64());
  const int64_t step = 40;
  auto t = torch::full({5}, step, torch::dtype(torch::kLong).device(device()));
  const double ab = s.alpha_bar(step), abp = s.alpha_bar_prev(step),
               a = s.alpha(step), b = s.beta(step);
  // Prior x_{t-1} ~ N(sqrt(abp) x0, 1 - abp); likelihood x_t ~ N(sqrt(a)
  // x_{t-1}, b).
  const double prec = 1 / (1 - abp) + a / b;
  auto mean =
      (x0 * (std::sqrt(abp) / (1 - abp)) + xt * (std::sqrt(a) / b)) / prec;
  EXPECT_TRUE(all_close(s.posterior_mean(x0, xt, t), mean, 1e-10, 1e-12));
  EXPECT_NEAR(1 / prec, s.posterior_variance(step), 1e-12);
  (void)ab;
}

SBGM_INSTANTIATE_DEVICES(ScheduleDevice);

}  // namespace
}  // namespace sbgm
