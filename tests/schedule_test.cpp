#include "sbgm/schedule.h"

#include <cmath>
#include <vector>

#include "internal.h"
#include "sbgm/warnings.h"
#include "support.h"

namespace sbgm {
namespace {

using test::all_close;

// Independent float64 computation of alpha-bar from a beta list.
struct Reference {
  std::vector<double> beta, abar;
  explicit Reference(const std::vector<double>& b) : beta(b) {
    double prod = 1.0;
    for (double bi : b) {
      prod *= 1.0 - bi;
      abar.push_back(prod);
    }
  }
};

torch::Tensor vec(const std::vector<double>& v) {
  return torch::tensor(v, torch::kDouble);
}

void expect_tables(const Schedule& s, const std::vector<double>& betas) {
  Reference r(betas);
  EXPECT_TRUE(all_close(s.betas(), vec(r.beta), 1e-12, 1e-15));
  EXPECT_TRUE(all_close(s.alphas_cumprod(), vec(r.abar), 1e-10, 1e-15));
  // Host accessors agree with the tables.
  for (int64_t t : {int64_t{0}, s.num_timesteps() / 2, s.num_timesteps() - 1}) {
    const auto i = static_cast<size_t>(t);
    EXPECT_DOUBLE_EQ(s.beta(t), r.beta[i]);
    EXPECT_NEAR(s.alpha_bar(t), r.abar[i], 1e-12);
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

TEST(Schedule, ShortSigmoidScheduleStopsShortOfThePrior) {
  // A short sigmoid schedule: T = 150, 1e-5 -> 5e-3. alpha_bar_T is the
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
  EXPECT_THROW_MSG(s.beta(10), "timestep 10 is outside [0, 10)");
  EXPECT_THROW_MSG(s.alpha_bar(-1), "timestep -1 is outside [0, 10)");
}

class ScheduleDevice : public test::DeviceTest {};

TEST_P(ScheduleDevice, TablesMoveToTheDevice) {
  auto s = Schedule::cosine(50).to(device());
  EXPECT_EQ(s.device(), device());
  EXPECT_EQ(s.betas().device(), device());
  EXPECT_EQ(s.alphas_cumprod().device(), device());
  EXPECT_EQ(s.alphas_cumprod().scalar_type(), torch::kDouble);
  EXPECT_NEAR(s.alphas_cumprod()[7].item<double>(), s.alpha_bar(7), 1e-15);
}

SBGM_INSTANTIATE_DEVICES(ScheduleDevice);

}  // namespace
}  // namespace sbgm
