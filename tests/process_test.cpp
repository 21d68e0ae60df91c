#include "sbgm/process.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <vector>

#include "sbgm/processes/discrete.h"
#include "sbgm/processes/edm.h"
#include "sbgm/processes/ve.h"
#include "sbgm/processes/vp.h"
#include "sbgm/schedule.h"
#include "support.h"

namespace sbgm {
namespace {

using test::all_close;

constexpr double kInf = std::numeric_limits<double>::infinity();

// Closed forms, written out independently of the library.
double vp_B(double t, double b0, double b1) {
  return b0 * t + 0.5 * (b1 - b0) * t * t;
}
double ve_var(double t, double sigma) {
  return (std::pow(sigma, 2 * t) - 1) / (2 * std::log(sigma));
}

// Every built-in process, with a few times inside its range.
struct Case {
  std::shared_ptr<NoiseProcess> p;
  std::vector<double> times;
};
std::vector<Case> all_processes() {
  return {
      {std::make_shared<VPSDE>(0.1, 20.0), {1e-3, 0.01, 0.3, 0.77, 1.0}},
      {std::make_shared<SubVPSDE>(0.1, 20.0), {1e-3, 0.01, 0.3, 0.77, 1.0}},
      {std::make_shared<VESDE>(25.0), {1e-5, 0.01, 0.3, 0.77, 1.0}},
      {std::make_shared<GeometricVESDE>(0.01, 50.0), {0.0, 0.01, 0.5, 1.0}},
      {std::make_shared<EDMProcess>(), {0.002, 0.1, 1.0, 17.0, 80.0}},
      {std::make_shared<DiscreteProcess>(Schedule::cosine(100)),
       {0.0, 1.0, 10.25, 50.5, 98.9, 99.0}},
  };
}

TEST(VPSDE, ClosedForms) {
  VPSDE p(0.1, 20.0);
  for (double t : {1e-4, 0.1, 0.5, 1.0}) {
    const double B = vp_B(t, 0.1, 20.0);
    const double beta = 0.1 + t * 19.9;
    EXPECT_NEAR(p.beta(t), beta, 1e-12);
    EXPECT_NEAR(p.alpha(t), std::exp(-0.5 * B), 1e-14);
    EXPECT_NEAR(p.sigma(t), std::sqrt(1 - std::exp(-B)), 1e-12);
    EXPECT_NEAR(p.drift_coeff(t), -0.5 * beta, 1e-12);
    EXPECT_NEAR(p.diffusion_sq(t), beta, 1e-12);
  }
  EXPECT_EQ(p.prior_std(), 1.0);
  EXPECT_EQ(p.t_min(), 1e-3);
  EXPECT_EQ(p.data_time(), 0.0);
  EXPECT_EQ(p.describe(), "vp(beta_min=0.1, beta_max=20)");
}

TEST(SubVPSDE, ClosedForms) {
  SubVPSDE p(0.1, 20.0);
  for (double t : {1e-3, 0.2, 0.7}) {
    const double B = vp_B(t, 0.1, 20.0);
    const double beta = 0.1 + t * 19.9;
    EXPECT_NEAR(p.alpha(t), std::exp(-0.5 * B), 1e-14);
    EXPECT_NEAR(p.sigma(t), 1 - std::exp(-B), 1e-12);
    EXPECT_NEAR(p.diffusion_sq(t), beta * (1 - std::exp(-2 * B)), 1e-10);
    EXPECT_NEAR(p.drift_coeff(t), -0.5 * beta, 1e-12);
  }
}

TEST(VESDE, ClosedForms) {
  VESDE p(25.0);
  for (double t : {1e-5, 0.2, 0.5, 1.0}) {
    EXPECT_NEAR(p.diffusion_sq(t), std::pow(25.0, 2 * t), 1e-9);
    EXPECT_NEAR(
        p.sigma(t) * p.sigma(t), ve_var(t, 25.0), 1e-12 * ve_var(1, 25));
    EXPECT_EQ(p.alpha(t), 1.0);
    EXPECT_EQ(p.drift_coeff(t), 0.0);
  }
  EXPECT_NEAR(
      p.prior_std(), std::sqrt((625.0 - 1) / (2 * std::log(25.0))), 1e-12);
  EXPECT_EQ(p.sigma(0.0), 0.0);
  EXPECT_EQ(p.lambda(0.0), kInf);
}

TEST(GeometricVESDE, ClosedForms) {
  GeometricVESDE p(0.01, 50.0);
  for (double t : {0.0, 0.3, 1.0}) {
    EXPECT_NEAR(p.sigma(t), 0.01 * std::pow(5000.0, t), 1e-12 * 50);
    EXPECT_NEAR(
        p.diffusion_sq(t),
        std::pow(0.01 * std::pow(5000.0, t), 2) * 2 * std::log(5000.0),
        1e-9 * 2500);
  }
  EXPECT_EQ(p.data_time(), -kInf);
  EXPECT_EQ(p.sigma(-kInf), 0.0);
  EXPECT_EQ(p.alpha(-kInf), 1.0);
  EXPECT_EQ(p.t_of_lambda(kInf), -kInf);
  EXPECT_EQ(p.prior_std(), 50.0);
}

TEST(EDMProcess, ClosedForms) {
  EDMProcess p(0.002, 80.0, 0.5);
  for (double t : {0.002, 1.0, 80.0}) {
    EXPECT_EQ(p.sigma(t), t);
    EXPECT_EQ(p.alpha(t), 1.0);
    EXPECT_NEAR(p.lambda(t), -std::log(t), 1e-15);
    EXPECT_NEAR(p.diffusion_sq(t), 2 * t, 1e-15);
  }
  EXPECT_EQ(p.t_max(), 80.0);
  EXPECT_EQ(p.t_min(), 0.002);
  EXPECT_EQ(p.default_grid(), GridKind::Karras);
}

// For every process, from its own alpha and sigma by central differences:
// f = d log alpha / dt, g^2 = d sigma^2 / dt - 2 f sigma^2, and lambda's
// inverse round-trips.
TEST(NoiseProcess, SDEAndInverseFollowFromAlphaAndSigma) {
  for (const auto& c : all_processes()) {
    const auto& p = *c.p;
    for (double t : c.times) {
      // Central differences; one-sided at the ends of the range, and at a
      // step of the discrete process inside the segment that ends there
      // (the one the library uses; its SDE is piecewise).
      const double h = 1e-6 * std::max(1.0, t);
      double lo = t - h, hi = t + h;
      if (p.name() == "discrete" && t == std::floor(t)) {
        (t >= 1 ? hi : lo) = t;
      }
      lo = std::max(lo, p.t_floor());
      hi = std::min(hi, p.t_max());
      const double f =
          (std::log(p.alpha(hi)) - std::log(p.alpha(lo))) / (hi - lo);
      const double s2 = std::pow(p.sigma(t), 2);
      const double ds2 =
          (std::pow(p.sigma(hi), 2) - std::pow(p.sigma(lo), 2)) / (hi - lo);
      const double g2 = ds2 - 2 * f * s2;
      const double tol = 1e-5 * std::max(1.0, std::abs(g2));
      EXPECT_NEAR(p.drift_coeff(t), f, 1e-5 * std::max(1.0, std::abs(f)))
          << p.describe() << " t = " << t;
      EXPECT_NEAR(p.diffusion_sq(t), g2, tol) << p.describe() << " t = " << t;
      EXPECT_NEAR(p.lambda(t), std::log(p.alpha(t) / p.sigma(t)), 1e-12)
          << p.describe() << " t = " << t;
      EXPECT_NEAR(p.t_of_lambda(p.lambda(t)), t, 1e-9 * std::max(1.0, t))
          << p.describe() << " t = " << t;
    }
    // The data time: alpha = 1, sigma = 0, lambda = +inf, and back.
    EXPECT_EQ(p.alpha(p.data_time()), 1.0) << p.describe();
    EXPECT_EQ(p.sigma(p.data_time()), 0.0) << p.describe();
    EXPECT_EQ(p.lambda(p.data_time()), kInf) << p.describe();
    EXPECT_EQ(p.t_of_lambda(kInf), p.data_time()) << p.describe();
    EXPECT_TRUE(p.at(p.data_time()).is_data());
  }
}

TEST(NoiseProcess, TensorFormsMatchHostForms) {
  for (const auto& c : all_processes()) {
    const auto& p = *c.p;
    auto t = torch::tensor(c.times, torch::kDouble);
    std::vector<double> a, s, l, g;
    for (double v : c.times) {
      a.push_back(p.alpha(v));
      s.push_back(p.sigma(v));
      l.push_back(p.lambda(v));
      g.push_back(p.diffusion_sq(v));
    }
    auto T = [](const std::vector<double>& v) {
      return torch::tensor(v, torch::kDouble);
    };
    EXPECT_TRUE(all_close(p.alpha(t), T(a), 1e-12, 1e-14)) << p.describe();
    EXPECT_TRUE(all_close(p.sigma(t), T(s), 1e-12, 1e-14)) << p.describe();
    EXPECT_TRUE(all_close(p.lambda(t), T(l), 1e-12, 1e-12)) << p.describe();
    EXPECT_TRUE(all_close(p.t_of_lambda(T(l)), t, 1e-9, 1e-12)) << p.describe();
    if (p.name() != "discrete") {  // (the host form picks a segment)
      EXPECT_TRUE(all_close(p.diffusion_sq(t), T(g), 1e-12, 1e-14))
          << p.describe();
    }
    // float32 t gives float64 coefficients.
    EXPECT_EQ(p.sigma(t.to(torch::kFloat)).scalar_type(), torch::kDouble);
  }
}

// A process that only gives alpha and sigma (VP's formulas) gets lambda's
// inverse and its SDE from the numerical defaults.
class PlainVP : public NoiseProcess {
 public:
  std::string name() const override {
    return "plain_vp";
  }
  std::string describe() const override {
    return "plain_vp";
  }
  Config config() const override {
    return {{"name", "plain_vp"}};
  }
  double t_max() const override {
    return 1.0;
  }
  double t_min() const override {
    return 1e-3;
  }
  double t_floor() const override {
    return 0.0;
  }
  double data_time() const override {
    return 0.0;
  }
  double prior_std() const override {
    return 1.0;
  }

 protected:
  double alpha_impl(double t) const override {
    return std::exp(-0.5 * vp_B(t, 0.1, 20));
  }
  torch::Tensor alpha_impl(const torch::Tensor& t) const override {
    return torch::exp(-0.5 * (0.1 * t + 9.95 * t * t));
  }
  double sigma_impl(double t) const override {
    return std::sqrt(-std::expm1(-vp_B(t, 0.1, 20)));
  }
  torch::Tensor sigma_impl(const torch::Tensor& t) const override {
    return torch::sqrt(-torch::expm1(-(0.1 * t + 9.95 * t * t)));
  }
};

TEST(NoiseProcess, UserProcessGetsNumericalDefaults) {
  PlainVP user;
  VPSDE vp;
  for (double t : {0.01, 0.4, 0.9}) {
    EXPECT_NEAR(user.t_of_lambda(vp.lambda(t)), t, 1e-9);
    EXPECT_NEAR(user.drift_coeff(t), vp.drift_coeff(t), 1e-6);
    EXPECT_NEAR(user.diffusion_sq(t), vp.diffusion_sq(t), 1e-5 * vp.beta(t));
  }
  auto lam = torch::tensor({vp.lambda(0.2), vp.lambda(0.6)}, torch::kDouble);
  EXPECT_TRUE(all_close(
      user.t_of_lambda(lam),
      torch::tensor({0.2, 0.6}, torch::kDouble),
      1e-8,
      1e-9));
}

TEST(DiscreteProcess, ExactAtStepsAndLinearInLambdaBetween) {
  auto sch = Schedule::linear(50);
  DiscreteProcess p(sch);
  EXPECT_EQ(p.t_max(), 49.0);
  EXPECT_EQ(p.data_time(), -1.0);
  EXPECT_EQ(p.describe(), "discrete(linear, T=50)");
  for (int64_t i = 0; i < 50; ++i) {
    const double ab = sch.alpha_bar(i);
    EXPECT_EQ(p.alpha(static_cast<double>(i)), std::sqrt(ab));
    EXPECT_EQ(p.sigma(static_cast<double>(i)), std::sqrt(1 - ab));
  }
  // Between steps: lambda is the linear interpolation of the steps' values,
  // and alpha^2 + sigma^2 = 1.
  auto lam = [&](int64_t i) {
    const double ab = sch.alpha_bar(i);
    return 0.5 * std::log(ab / (1 - ab));
  };
  for (double t : {0.3, 12.5, 48.75}) {
    const auto i = static_cast<int64_t>(t);
    const double u = t - i;
    const double want = (1 - u) * lam(i) + u * lam(i + 1);
    EXPECT_NEAR(p.lambda(t), want, 1e-12);
    EXPECT_NEAR(std::pow(p.alpha(t), 2) + std::pow(p.sigma(t), 2), 1.0, 1e-14);
    EXPECT_NEAR(p.t_of_lambda(want), t, 1e-10);
  }
  // Quantized model time: the nearest step, as int64.
  EXPECT_TRUE(p.integer_model_time());
  EXPECT_EQ(p.model_time(12.6), 13.0);
  auto mt = p.model_time(torch::tensor({0.2, 12.6, 49.0}), torch::kFloat);
  EXPECT_EQ(mt.scalar_type(), torch::kLong);
  EXPECT_TRUE(torch::equal(mt, torch::tensor({0, 13, 49})));
  DiscreteProcess frac(sch, DiscreteProcessOptions().quantize(false));
  EXPECT_FALSE(frac.integer_model_time());
  EXPECT_EQ(frac.model_time(12.6), 12.6);
  EXPECT_EQ(
      frac.model_time(torch::tensor({12.6}), torch::kFloat).scalar_type(),
      torch::kFloat);
}

TEST(Schedule, ZeroTerminalSNRRescaling) {
  auto sch = Schedule::linear(1000);
  auto z = sch.rescale_zero_terminal_snr();
  // alpha_bar_0 is kept; sqrt(alpha_bar) is shifted and scaled linearly so
  // that it ends at 0, then the last value is floored at 2^-24.
  const double s0 = std::sqrt(sch.alpha_bar(0));
  const double sT = std::sqrt(sch.alpha_bar(999));
  EXPECT_NEAR(z.alpha_bar(0), sch.alpha_bar(0), 1e-15);
  for (int64_t i : {1, 300, 998}) {
    const double want = (std::sqrt(sch.alpha_bar(i)) - sT) * s0 / (s0 - sT);
    EXPECT_NEAR(std::sqrt(z.alpha_bar(i)), want, 1e-12) << i;
  }
  // The floor, capped at half the step before (alpha_bar keeps decreasing).
  EXPECT_EQ(
      z.alpha_bar(999), std::min(std::pow(2.0, -24), 0.5 * z.alpha_bar(998)));
  EXPECT_LT(z.terminal_snr(), 1e-7);
  DiscreteProcess p(z);
  EXPECT_NEAR(p.alpha(999), std::sqrt(z.alpha_bar(999)), 1e-18);
  EXPECT_TRUE(std::isfinite(p.lambda(999.0)));
  // A cosine schedule ends higher: the floor 2^-24 itself.
  auto zc = Schedule::cosine(1000).rescale_zero_terminal_snr();
  EXPECT_NEAR(zc.alpha_bar(999), std::pow(2.0, -24), 1e-22);
  EXPECT_THROW_MSG(
      sch.rescale_zero_terminal_snr(0.0),
      "terminal_alpha_bar must lie in (0, 1), got 0");
  EXPECT_THROW_MSG(
      Schedule::linear(1).rescale_zero_terminal_snr(),
      "needs at least 2 timesteps, got 1");
}

TEST(VPSDE, FromScheduleAgreesInTheLimit) {
  // alpha_bar_i of the linear DDPM chain vs alpha(t_i)^2 at t_i = (i + 1) /
  // T. The error shrinks like 1/T.
  double prev_err = 0;
  for (int64_t T : {100, 1000, 10000}) {
    auto sch = Schedule::linear(T, 1e-4 * 1000 / T, 0.02 * 1000 / T);
    auto sde = VPSDE::from_schedule(sch);
    EXPECT_NEAR(sde.beta_min(), 0.1, 1e-12);
    EXPECT_NEAR(sde.beta_max(), 20.0, 1e-12);
    double err = 0;
    for (int64_t i = 0; i < T; i += T / 50) {
      const double t = static_cast<double>(i + 1) / T;
      err =
          std::max(err, std::abs(sch.alpha_bar(i) - std::pow(sde.alpha(t), 2)));
    }
    if (T > 100) {
      EXPECT_LT(err, prev_err / 5) << "T = " << T;
    }
    prev_err = err;
  }
  EXPECT_LT(prev_err, 1e-3);
  EXPECT_THROW_MSG(
      VPSDE::from_schedule(Schedule::cosine(10)),
      "needs a linear schedule, got a cosine one");
}

TEST(NoiseProcess, PriorLogProbIsGaussian) {
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
}

class ProcessDevice : public test::DeviceTest {};

TEST_P(ProcessDevice, PerturbationMomentsWithBatchedTimes) {
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
  // The discrete process's tables follow t to its device.
  DiscreteProcess d(Schedule::cosine(100));
  auto tt = torch::tensor({3.5, 70.0}, f64());
  EXPECT_EQ(d.alpha(tt).device(), device());
  EXPECT_TRUE(all_close(
      d.alpha(tt).cpu(),
      torch::tensor({d.alpha(3.5), d.alpha(70.0)}, torch::kDouble),
      1e-12,
      1e-14));
}

SBGM_INSTANTIATE_DEVICES(ProcessDevice);

TEST(ProcessErrors, TimesOutsideTheRange) {
  VPSDE vp;
  EDMProcess edm;
  DiscreteProcess d(Schedule::linear(10));
  EXPECT_THROW_MSG(
      vp.sigma(1.5),
      "t = 1.5 is outside the range of the vp(beta_min=0.1, beta_max=20) "
      "process, [0, 1]");
  EXPECT_THROW_MSG(edm.alpha(81.0), "t = 81 is outside the range of the edm");
  EXPECT_THROW_MSG(d.at(9.5), "t = 9.5 is outside the range of the discrete");
  EXPECT_THROW_MSG(d.at(-0.5), "t = -0.5 is outside");
  EXPECT_THROW_MSG(
      vp.alpha(torch::tensor({0.1, 1.2})),
      "times must lie in the range of the vp(beta_min=0.1, beta_max=20) "
      "process, [0, 1], got values in [0.1, 1.2]");
  EXPECT_THROW_MSG(vp.drift_coeff(-0.1), "t = -0.1 is outside the range");
  auto x = torch::randn({4, 2});
  EXPECT_THROW_MSG(
      vp.perturb(x, torch::tensor({0.1, 0.2, 0.3}), x),
      "t has 3 entries but x has shape [4, 2]");
  EXPECT_THROW_MSG(
      vp.perturb(x, torch::full({4}, 0.5), torch::randn({2, 4})),
      "noise has shape [2, 4] but x0 has shape [4, 2]");
  EXPECT_THROW_MSG(vp.t_of_lambda(std::nan("")), "t_of_lambda of NaN");
}

TEST(ProcessErrors, BadParameters) {
  EXPECT_THROW_MSG(
      VPSDE(20.0, 0.1),
      "need 0 < beta_min <= beta_max, got beta_min = 20, beta_max = 0.1");
  EXPECT_THROW_MSG(VPSDE(-0.1, 1.0), "got beta_min = -0.1");
  EXPECT_THROW_MSG(VESDE(1.0), "sigma must be finite and > 1, got 1");
  EXPECT_THROW_MSG(
      GeometricVESDE(1.0, 0.5),
      "need 0 < sigma_min < sigma_max, got sigma_min = 1, sigma_max = 0.5");
  EXPECT_THROW_MSG(
      EDMProcess(0.002, 80, -1), "sigma_data must be finite and > 0, got -1");
}

// ---- configs and the registry ---------------------------------------------

// Every built-in process with non-default parameters, and the times at
// which two copies must agree.
std::vector<std::shared_ptr<NoiseProcess>> configured_processes() {
  return {
      std::make_shared<VPSDE>(0.05, 12.5),
      std::make_shared<SubVPSDE>(0.2, 19.0),
      std::make_shared<VESDE>(31.0),
      std::make_shared<GeometricVESDE>(0.02, 60.0),
      std::make_shared<EDMProcess>(0.003, 70.0, 0.6),
      std::make_shared<DiscreteProcess>(Schedule::linear(50, 2e-4, 0.03)),
      std::make_shared<DiscreteProcess>(
          Schedule::cosine(64), DiscreteProcessOptions().quantize(false)),
      std::make_shared<DiscreteProcess>(Schedule::sigmoid(40, 1e-4, 0.3)),
      std::make_shared<DiscreteProcess>(
          Schedule::cosine(30).rescale_zero_terminal_snr()),
  };
}

// Two processes are equal when they describe, configure and compute alike.
void expect_same_process(const NoiseProcess& a, const NoiseProcess& b) {
  EXPECT_EQ(a.name(), b.name());
  EXPECT_EQ(a.describe(), b.describe());
  EXPECT_EQ(a.config(), b.config());
  EXPECT_EQ(a.t_max(), b.t_max());
  EXPECT_EQ(a.t_min(), b.t_min());
  EXPECT_EQ(a.t_floor(), b.t_floor());
  EXPECT_EQ(a.data_time(), b.data_time());
  EXPECT_EQ(a.prior_std(), b.prior_std());
  EXPECT_EQ(a.integer_model_time(), b.integer_model_time());
  EXPECT_EQ(a.num_model_steps(), b.num_model_steps());
  EXPECT_EQ(a.default_grid(), b.default_grid());
  std::vector<double> times;
  for (int i = 0; i <= 40; ++i) {
    times.push_back(a.t_floor() + (a.t_max() - a.t_floor()) * i / 40.0);
  }
  for (double t : times) {
    EXPECT_EQ(a.alpha(t), b.alpha(t)) << a.describe() << " t = " << t;
    EXPECT_EQ(a.sigma(t), b.sigma(t)) << a.describe() << " t = " << t;
    EXPECT_EQ(a.model_time(t), b.model_time(t));
    // (NaN where a numerical default cannot difference, at both alike.)
    const double ga = a.diffusion_sq(t), gb = b.diffusion_sq(t);
    EXPECT_TRUE(ga == gb || (std::isnan(ga) && std::isnan(gb))) << t;
  }
  auto tt = torch::tensor(times, torch::kDouble);
  EXPECT_TRUE(torch::equal(a.alpha(tt), b.alpha(tt)));
  EXPECT_TRUE(torch::equal(a.sigma(tt), b.sigma(tt)));
}

TEST(ProcessConfig, EveryProcessRoundTripsThroughItsConfig) {
  for (const auto& p : configured_processes()) {
    SCOPED_TRACE(p->describe());
    const auto config = p->config();
    EXPECT_EQ(config.at("name").get<std::string>(), p->name());
    // Through text too, as a model file stores it.
    const auto q = process_from_config(Config::parse(config.dump()));
    expect_same_process(*p, *q);
  }
}

TEST(ProcessConfig, MissingParametersTakeTheDefaults) {
  expect_same_process(*process_from_config({{"name", "vp"}}), VPSDE());
  expect_same_process(*process_from_config({{"name", "subvp"}}), SubVPSDE());
  expect_same_process(*process_from_config({{"name", "ve"}}), VESDE());
  expect_same_process(
      *process_from_config({{"name", "ve_geometric"}}), GeometricVESDE());
  expect_same_process(*process_from_config({{"name", "edm"}}), EDMProcess());
  expect_same_process(
      *process_from_config({{"name", "discrete"}}),
      DiscreteProcess(Schedule::linear()));
  // A schedule by its recipe instead of its betas.
  expect_same_process(
      *process_from_config(
          {{"name", "discrete"},
           {"schedule", {{"kind", "cosine"}, {"num_timesteps", 80}}},
           {"quantize", false}}),
      DiscreteProcess(
          Schedule::cosine(80), DiscreteProcessOptions().quantize(false)));
  expect_same_process(
      *process_from_config(
          {{"name", "discrete"},
           {"schedule",
            {{"kind", "sigmoid"},
             {"num_timesteps", 20},
             {"beta_start", 1e-3},
             {"beta_end", 0.4}}}}),
      DiscreteProcess(Schedule::sigmoid(20, 1e-3, 0.4)));
}

TEST(ProcessConfig, RegistryHoldsEveryBuiltIn) {
  const auto names = process_registry().names();
  for (const char* name :
       {"vp", "subvp", "ve", "ve_geometric", "edm", "discrete"}) {
    EXPECT_NE(std::find(names.begin(), names.end(), name), names.end()) << name;
    EXPECT_FALSE(process_registry().doc(name).empty()) << name;
  }
}

// The minimum a user process implements (PlainVP above: names, config,
// time range, prior and alpha, sigma in both forms) is enough to register
// it and build it by name.
TEST(ProcessConfig, UserProcessRegistersAndRoundTrips) {
  if (!process_registry().contains("plain_vp")) {
    process_registry().add(
        "plain_vp", [](const Config&) { return std::make_shared<PlainVP>(); });
  }
  PlainVP user;
  const auto p = process_from_config(user.config());
  ASSERT_NE(dynamic_cast<const PlainVP*>(p.get()), nullptr);
  expect_same_process(user, *p);
}

TEST(ProcessConfig, Errors) {
  EXPECT_THROW_MSG(
      process_from_config(Config::array({1, 2})),
      "the config must be an object with a string \"name\", got [1,2]");
  EXPECT_THROW_MSG(
      process_from_config({{"name", 3}}),
      "the config must be an object with a string \"name\"");
  EXPECT_THROW_MSG(
      process_from_config({{"name", "vq"}}),
      "unknown process 'vq'; registered: ");
  EXPECT_THROW_MSG(
      process_from_config({{"name", "vp"}, {"beta_min", "small"}}),
      "invalid config for process 'vp': ");
  // The factories' own checks still apply.
  EXPECT_THROW_MSG(
      process_from_config({{"name", "ve"}, {"sigma", 0.5}}),
      "VESDE: sigma must be finite and > 1, got 0.5");
  if (!process_registry().contains("null_process")) {
    process_registry().add("null_process", [](const Config&) {
      return std::shared_ptr<NoiseProcess>();
    });
  }
  EXPECT_THROW_MSG(
      process_from_config({{"name", "null_process"}}),
      "the factory of 'null_process' returned null");
  // A process without config() cannot be built by name.
  struct NoConfig : PlainVP {
    std::string describe() const override {
      return "no_config()";
    }
    Config config() const override {
      return NoiseProcess::config();
    }
  } no_config;
  EXPECT_THROW_MSG(
      no_config.config(),
      "the process no_config() has no config(): override "
      "NoiseProcess::config()");
}

TEST(ScheduleConfig, RoundTripsAndErrors) {
  for (const auto& s :
       {Schedule::linear(10),
        Schedule::cosine(12),
        Schedule::sigmoid(9),
        Schedule::from_betas(std::vector<double>{0.1, 0.2, 0.3})}) {
    const auto r = Schedule::from_config(Config::parse(s.config().dump()));
    EXPECT_EQ(r.kind(), s.kind());
    EXPECT_EQ(r.beta_start(), s.beta_start());
    EXPECT_EQ(r.beta_end(), s.beta_end());
    EXPECT_TRUE(torch::equal(r.betas(), s.betas()));
  }
  EXPECT_THROW_MSG(
      Schedule::from_config(Config::array()),
      "Schedule::from_config: expected an object, got []");
  EXPECT_THROW_MSG(
      Schedule::from_config({{"kind", "quadratic"}}),
      "unknown kind 'quadratic' (known: linear, sigmoid, cosine, custom)");
  EXPECT_THROW_MSG(
      Schedule::from_config({{"kind", "custom"}}),
      "a custom schedule needs betas");
  EXPECT_THROW_MSG(
      Schedule::from_config({{"betas", std::vector<double>{}}}),
      "Schedule::from_config: num_timesteps must be at least 1, got 0");
}

}  // namespace
}  // namespace sbgm
