#include "sbgm/grid.h"

#include <cmath>
#include <limits>
#include <memory>
#include <vector>

#include "sbgm/processes/discrete.h"
#include "sbgm/processes/edm.h"
#include "sbgm/processes/ve.h"
#include "sbgm/processes/vp.h"
#include "sbgm/schedule.h"
#include "support.h"

namespace sbgm {
namespace {

std::vector<double> with_data(std::vector<double> t, double data) {
  t.push_back(data);
  return t;
}

void expect_times(
    const TimeGrid& g, const std::vector<double>& want, double tol = 1e-12) {
  ASSERT_EQ(g.times().size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_NEAR(g.times()[i], want[i], tol * std::max(1.0, std::abs(want[i])))
        << "t[" << i << "]";
  }
}

TEST(Grids, UniformQuadraticAndLogSNRFollowTheirFormulas) {
  VPSDE vp;
  // 5 steps: 5 evaluation times over [1e-3, 1], then the data.
  std::vector<double> u, q;
  for (int i = 0; i < 5; ++i) {
    u.push_back(1.0 + i / 4.0 * (1e-3 - 1.0));
    q.push_back(1e-3 + (1.0 - 1e-3) * std::pow(1 - i / 4.0, 2));
  }
  expect_times(grids::uniform(vp, 5), with_data(u, 0.0));
  expect_times(grids::quadratic(vp, 5), with_data(q, 0.0));
  // Uniform in lambda between lambda(1) and lambda(1e-3).
  VESDE ve(25);
  auto g = grids::log_snr(ve, 6);
  const double l0 = ve.lambda(1.0), l1 = ve.lambda(1e-5);
  ASSERT_EQ(g.num_steps(), 6);
  for (int i = 0; i < 6; ++i) {
    EXPECT_NEAR(ve.lambda(g[i]), l0 + i / 5.0 * (l1 - l0), 1e-9) << i;
  }
  EXPECT_EQ(g.back(), 0.0);
  // Without the data: N steps, N + 1 times, ending at t_end.
  auto open = grids::uniform(vp, 4, GridOptions().to_data(false).t_end(0.2));
  expect_times(open, {1.0, 0.8, 0.6, 0.4, 0.2});
  EXPECT_FALSE(open.ends_at_data(vp));
}

TEST(Grids, KarrasInSigmaForEveryProcess) {
  // EDM: t is sigma itself, Karras et al. (2022) eq. 5, then 0.
  EDMProcess edm(0.002, 80);
  std::vector<double> want;
  const double a = std::pow(80.0, 1 / 7.0), b = std::pow(0.002, 1 / 7.0);
  for (int i = 0; i < 8; ++i) {
    want.push_back(std::pow(a + i / 7.0 * (b - a), 7));
  }
  expect_times(grids::karras(edm, 8), with_data(want, 0.0), 1e-12);
  // Other processes: the same sigmas in sigma / alpha = exp(-lambda).
  VPSDE vp;
  auto g = grids::karras(vp, 6, GridOptions().rho(3));
  const double smax = std::exp(-vp.lambda(1.0)),
               smin = std::exp(-vp.lambda(1e-3));
  for (int i = 0; i < 6; ++i) {
    const double s = std::pow(
        std::pow(smax, 1 / 3.0) +
            i / 5.0 * (std::pow(smin, 1 / 3.0) - std::pow(smax, 1 / 3.0)),
        3);
    EXPECT_NEAR(std::exp(-vp.lambda(g[i])), s, 1e-9 * s) << i;
  }
  // A discrete schedule: fractional steps through the interpolation.
  DiscreteProcess d(Schedule::cosine(1000));
  auto gd = grids::karras(d, 10);
  EXPECT_EQ(gd.front(), 999.0);
  EXPECT_EQ(gd[9], 0.0);
  EXPECT_EQ(gd.back(), -1.0);
}

TEST(Grids, DiffusersSpacings) {
  DiscreteProcess d(Schedule::linear(1000));
  expect_times(
      grids::linspace(d, 10),
      {999, 888, 777, 666, 555, 444, 333, 222, 111, 0, -1});
  expect_times(
      grids::leading(d, 10),
      {900, 800, 700, 600, 500, 400, 300, 200, 100, 0, -1});
  expect_times(
      grids::trailing(d, 10),
      {999, 899, 799, 699, 599, 499, 399, 299, 199, 99, -1});
  // 7 does not divide 1000: numpy's round-half-to-even.
  expect_times(grids::linspace(d, 7), {999, 832, 666, 500, 333, 166, 0, -1});
  expect_times(grids::leading(d, 7), {852, 710, 568, 426, 284, 142, 0, -1});
  expect_times(grids::trailing(d, 7), {999, 856, 713, 570, 428, 285, 142, -1});
  // Every step of the schedule: the DDPM chain.
  auto all = grids::linspace(d, 1000);
  EXPECT_EQ(all.num_steps(), 1000);
  EXPECT_EQ(all[0], 999.0);
  EXPECT_EQ(all[999], 0.0);
  // One step: from the last step straight to the data.
  expect_times(grids::linspace(d, 1), {999, -1});
}

// The property the samplers rely on, for every constructor and process: the
// grid starts at t_max, strictly decreases, never repeats a time or leaves
// the table, and ends at the data time after its last evaluation time.
TEST(Grids, EveryGridEndsAtTheDataWithoutRepeats) {
  std::vector<std::shared_ptr<NoiseProcess>> processes = {
      std::make_shared<VPSDE>(),
      std::make_shared<SubVPSDE>(),
      std::make_shared<VESDE>(25.0),
      std::make_shared<GeometricVESDE>(),
      std::make_shared<EDMProcess>(),
      std::make_shared<DiscreteProcess>(Schedule::cosine(1000)),
      std::make_shared<DiscreteProcess>(Schedule::linear(20))};
  for (const auto& p : processes) {
    for (const auto& name : grids::names()) {
      const bool spacing =
          name == "linspace" || name == "leading" || name == "trailing";
      const bool discrete = p->name() == "discrete";
      if (spacing && !discrete) {
        continue;
      }
      for (int64_t n : {1, 2, 3, 7, 20}) {
        auto g = grids::from_name(name, *p, n);
        SCOPED_TRACE(p->describe() + " " + name + " n = " + std::to_string(n));
        EXPECT_EQ(g.num_steps(), n);
        EXPECT_TRUE(g.ends_at_data(*p));
        EXPECT_EQ(g.back(), p->data_time());
        for (int64_t i = 1; i <= n; ++i) {
          EXPECT_LT(g[i], g[i - 1]);
        }
        if (name != "leading") {  // diffusers' leading never reaches T - 1
          EXPECT_EQ(g.front(), p->t_max());
        }
        if (n > 1 && !spacing) {
          EXPECT_EQ(g[n - 1], p->t_min());
        }
        auto pts = g.points(*p);
        EXPECT_TRUE(pts.back().is_data());
        for (int64_t i = 0; i < n; ++i) {
          EXPECT_GT(pts[i].sigma, 0.0);
        }
      }
    }
  }
}

TEST(GridErrors, BadGridsAndNames) {
  VPSDE vp;
  EXPECT_THROW_MSG(
      TimeGrid({0.5}),
      "a grid needs at least 2 times (one step), got 1: [0.5]");
  EXPECT_THROW_MSG(TimeGrid({}), "a grid needs at least 2 times");
  EXPECT_THROW_MSG(
      TimeGrid({1.0, 0.5, 0.7}),
      "times must strictly decrease, but t[2] = 0.7 follows t[1] = 0.5");
  EXPECT_THROW_MSG(
      TimeGrid({1.0, 0.5, 0.5}),
      "times must strictly decrease, but t[2] = 0.5 follows t[1] = 0.5");
  EXPECT_THROW_MSG(TimeGrid({1.0, std::nan("")}), "t[1] = nan is not a usable");
  EXPECT_THROW_MSG(
      grids::from_name("cosine", vp, 10),
      "unknown grid 'cosine'; valid names: default, uniform, logsnr, karras, "
      "quadratic, linspace, leading, trailing");
  EXPECT_THROW_MSG(
      grids::karras(vp, 10, GridOptions().rho(0.0)),
      "rho must be finite and > 0, got 0");
  EXPECT_THROW_MSG(
      grids::karras(vp, 10, GridOptions().rho(-2.0)),
      "rho must be finite and > 0, got -2");
  EXPECT_THROW_MSG(grids::uniform(vp, 0), "num_steps must be >= 1, got 0");
  EXPECT_THROW_MSG(
      grids::trailing(vp, 10),
      "needs a DiscreteProcess, got the vp(beta_min=0.1, beta_max=20) "
      "process");
  DiscreteProcess d(Schedule::linear(10));
  EXPECT_THROW_MSG(
      grids::leading(d, 11), "num_steps must be <= T = 10, got 11");
  EXPECT_THROW_MSG(
      grids::uniform(vp, 5, GridOptions().t_start(0.1).t_end(0.5)),
      "t_start must be > t_end, got t_start = 0.1, t_end = 0.5");
  EXPECT_THROW_MSG(
      grids::uniform(vp, 5, GridOptions().t_end(0.0)),
      "t_start and t_end must lie in the range");
  // A grid checked against a process.
  EXPECT_THROW_MSG(
      TimeGrid({2.0, 1.0, 0.0}).points(vp, "ddim"),
      "ddim: grid time t[0] = 2 is outside the range of the "
      "vp(beta_min=0.1, beta_max=20) process, [0, 1]");
  EXPECT_THROW_MSG(
      TimeGrid({1.0, 0.0, -0.5}).points(vp, "ddim"),
      "the grid reaches the data time 0 of the vp(beta_min=0.1, "
      "beta_max=20) process at t[1], before its end");
  // Fractional steps are fine: the discrete process interpolates.
  EXPECT_EQ(TimeGrid({9.0, 4.5, -1.0}).points(d).size(), 3u);
}

}  // namespace
}  // namespace sbgm
