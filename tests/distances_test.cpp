#include "sbgm/metrics/distances.h"

#include <cmath>

#include "support.h"

using sbgm::metrics::mmd_rbf;
using sbgm::metrics::sliced_wasserstein;

TEST(Distances, MMDOfIdenticalSetsAndByHand) {
  auto x = torch::randn({50, 2});
  // Biased MMD of a set with itself is exactly 0.
  EXPECT_NEAR(mmd_rbf(x, x, {0.5, 1.0}, false).item<double>(), 0.0, 1e-12);
  // Two points each, one bandwidth, by hand.
  auto a = torch::tensor({{0.0, 0.0}, {1.0, 0.0}}, torch::kDouble);
  auto b = torch::tensor({{0.0, 2.0}, {0.0, 3.0}}, torch::kDouble);
  auto k = [](double d2) { return std::exp(-d2 / 2.0); };
  double kxx = 2 * k(1.0), kyy = 2 * k(1.0);
  double kxy = k(4) + k(9) + k(5) + k(10);
  double unb = kxx / 2 + kyy / 2 - 2 * kxy / 4;
  double bia = (kxx + 2) / 4 + (kyy + 2) / 4 - 2 * kxy / 4;
  EXPECT_NEAR(mmd_rbf(a, b, {1.0}, true).item<double>(), unb, 1e-12);
  EXPECT_NEAR(mmd_rbf(a, b, {1.0}, false).item<double>(), bia, 1e-12);
}

TEST(Distances, MMDSeparatesDistributions) {
  auto gen = torch::make_generator<torch::CPUGeneratorImpl>(1);
  auto x = torch::randn({500, 2}, gen);
  auto y = torch::randn({500, 2}, gen);
  auto z = torch::randn({500, 2}, gen) + 1.0;
  double same = mmd_rbf(x, y).item<double>();
  double diff = mmd_rbf(x, z).item<double>();
  EXPECT_LT(std::abs(same), 0.01);
  EXPECT_GT(diff, 20 * std::abs(same));
}

TEST(Distances, SlicedWassersteinOfShift) {
  auto gen = torch::make_generator<torch::CPUGeneratorImpl>(2);
  auto x = torch::randn({1000, 3}, gen, torch::kDouble);
  EXPECT_NEAR(sliced_wasserstein(x, x, 16, gen).item<double>(), 0.0, 1e-12);
  // y = x + delta: every 1-D projection moves by theta . delta, so
  // SW_2^2 = E (theta . delta)^2 = |delta|^2 / D.
  auto delta = torch::tensor({1.0, -2.0, 2.0}, torch::kDouble);
  // (theta . delta)^2 has mean 3 and std < 4.3, so with 4000 projections
  // SW_2^2 is within 0.3 of 3 (4.4 standard errors) and SW_2 within 0.09.
  double sw = sliced_wasserstein(x, x + delta, 4000, gen).item<double>();
  EXPECT_NEAR(sw, std::sqrt(9.0 / 3.0), 0.09);
  // 1-D, one projection: |theta| = 1, the exact W2 between sorted sets.
  auto a = torch::tensor({{0.0}, {1.0}, {5.0}}, torch::kDouble);
  auto b = torch::tensor({{2.0}, {1.0}, {0.0}}, torch::kDouble);
  double ref = std::sqrt((0.0 + 0.0 + 9.0) / 3.0);
  EXPECT_NEAR(sliced_wasserstein(a, b, 1, gen).item<double>(), ref, 1e-12);
}

TEST(DistancesErrors, BadInput) {
  auto x = torch::randn({5, 2});
  EXPECT_THROW_MSG(
      mmd_rbf(x, torch::randn({5, 3})), "shapes [N, D] and [M, D]");
  EXPECT_THROW_MSG(mmd_rbf(x.slice(0, 0, 1), x), "at least 2 samples");
  EXPECT_THROW_MSG(mmd_rbf(x, x, {}), "bandwidths is empty");
  EXPECT_THROW_MSG(mmd_rbf(x, x, {0.0}), "bandwidths must be finite and > 0");
  EXPECT_THROW_MSG(
      mmd_rbf(torch::ones({5, 2}, torch::kLong), x), "floating-point");
  EXPECT_THROW_MSG(sliced_wasserstein(x, torch::randn({4, 2})), "same number");
  EXPECT_THROW_MSG(sliced_wasserstein(x, x, 0), "num_projections must be >= 1");
}
