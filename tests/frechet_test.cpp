#include "sbgm/metrics/frechet.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "support.h"

namespace sbgm {
namespace {

class FrechetTest : public test::SeededTest {};

TEST_F(FrechetTest, DiagonalGaussiansMatchTheClosedForm) {
  // For diagonal covariances d^2 = |mu1 - mu2|^2 + sum (s1_i - s2_i)^2.
  auto o = torch::TensorOptions().dtype(torch::kDouble);
  auto mu1 = torch::tensor({0.0, 1.0, -2.0}, o);
  auto mu2 = torch::tensor({0.5, 1.0, 0.0}, o);
  auto s1 = torch::tensor({1.0, 2.0, 0.5}, o);
  auto s2 = torch::tensor({3.0, 0.1, 0.5}, o);
  GaussianStats a{mu1, torch::diag(s1 * s1)};
  GaussianStats b{mu2, torch::diag(s2 * s2)};
  const double expected = 0.25 + 4.0 + (4.0 + 1.9 * 1.9 + 0.0);
  EXPECT_NEAR(frechet_distance(a, b), expected, 1e-10);
  EXPECT_NEAR(frechet_distance(b, a), expected, 1e-10);
  EXPECT_NEAR(frechet_distance(a, a), 0.0, 1e-10);
}

TEST_F(FrechetTest, KnownTwoByTwoCase) {
  // C1 = I, C2 = [[2, 1], [1, 2]] (eigenvalues 3 and 1):
  // tr C2^{1/2} = sqrt(3) + 1, so d^2 = 2 + 4 - 2 (sqrt(3) + 1) = 4 - 2 sqrt 3.
  auto o = torch::TensorOptions().dtype(torch::kDouble);
  GaussianStats a{torch::zeros({2}, o), torch::eye(2, o)};
  GaussianStats b{
      torch::zeros({2}, o), torch::tensor({{2.0, 1.0}, {1.0, 2.0}}, o)};
  EXPECT_NEAR(frechet_distance(a, b), 4.0 - 2.0 * std::sqrt(3.0), 1e-12);
  // Non-commuting pair: C1 = diag(4, 1), C2 = [[2, 1], [1, 2]].
  // (C1^{1/2} C2 C1^{1/2}) = [[8, 2], [2, 2]], eigenvalues 5 +- sqrt(13);
  // tr sqrt = sqrt(5 + sqrt 13) + sqrt(5 - sqrt 13) = sqrt(10 + 2 sqrt(12)).
  GaussianStats c{
      torch::tensor({1.0, 0.0}, o), torch::diag(torch::tensor({4.0, 1.0}, o))};
  const double tr_sqrt = std::sqrt(10.0 + 2.0 * std::sqrt(12.0));
  EXPECT_NEAR(frechet_distance(c, b), 1.0 + 5.0 + 4.0 - 2.0 * tr_sqrt, 1e-12);
}

TEST_F(FrechetTest, FeatureSetsUseUnbiasedStatistics) {
  auto o = torch::TensorOptions().dtype(torch::kDouble);
  auto x = torch::tensor({{0.0, 0.0}, {2.0, 0.0}, {0.0, 2.0}, {2.0, 2.0}}, o);
  auto s = gaussian_stats(x.to(torch::kFloat));
  EXPECT_TRUE(test::all_close(s.mean, torch::tensor({1.0, 1.0}, o)));
  // Each coordinate has values {0, 2, 0, 2}: unbiased variance 4/3.
  EXPECT_TRUE(test::all_close(
      s.cov, torch::diag(torch::tensor({4.0 / 3, 4.0 / 3}, o)), 1e-6, 1e-6));
  // Shifting one set by (1, 1) adds exactly |shift|^2 = 2.
  EXPECT_NEAR(frechet_distance(x, x + 1.0), 2.0, 1e-9);
  // Large samples of two Gaussians approach the closed form.
  auto a = torch::randn({20000, 2}, o);
  auto b = torch::randn({20000, 2}, o) * 2.0 + 3.0;
  EXPECT_NEAR(frechet_distance(a, b), 18.0 + 2.0, 0.3);
}

// Random symmetric positive definite matrix of size d.
torch::Tensor random_spd(int64_t d) {
  auto o = torch::TensorOptions().dtype(torch::kDouble);
  auto a = torch::randn({d, d}, o);
  return a.matmul(a.transpose(0, 1)) + 0.1 * torch::eye(d, o);
}

// Principal square root of a matrix with positive eigenvalues by the
// Denman-Beavers iteration: independent of the eigendecomposition route.
torch::Tensor sqrtm_denman_beavers(const torch::Tensor& a) {
  auto y = a.clone();
  auto z = torch::eye(a.size(0), a.options());
  for (int i = 0; i < 60; ++i) {
    auto y_next = 0.5 * (y + torch::inverse(z));
    z = 0.5 * (z + torch::inverse(y));
    y = y_next;
  }
  return y;
}

TEST_F(FrechetTest, CommutingCovariancesMatchTheClosedForm) {
  // C1 = Q diag(a) Q^T, C2 = Q diag(b) Q^T commute, so
  // tr (C1^{1/2} C2 C1^{1/2})^{1/2} = sum sqrt(a_i b_i) and
  // d^2 = |mu1 - mu2|^2 + sum (sqrt a_i - sqrt b_i)^2.
  auto o = torch::TensorOptions().dtype(torch::kDouble);
  const int64_t d = 5;
  auto q = std::get<0>(torch::linalg_qr(torch::randn({d, d}, o)));
  auto a = torch::rand({d}, o) * 3 + 0.1;
  auto b = torch::rand({d}, o) * 3 + 0.1;
  auto c1 = (q * a.unsqueeze(0)).matmul(q.transpose(0, 1));
  auto c2 = (q * b.unsqueeze(0)).matmul(q.transpose(0, 1));
  auto mu1 = torch::randn({d}, o), mu2 = torch::randn({d}, o);
  const double expected = (mu1 - mu2).pow(2).sum().item<double>() +
                          (a.sqrt() - b.sqrt()).pow(2).sum().item<double>();
  EXPECT_NEAR(frechet_distance({mu1, c1}, {mu2, c2}), expected, 1e-9);
}

TEST_F(FrechetTest, AgreesWithAnIndependentSqrtm) {
  // General (non-commuting) covariances: compare with
  // |mu1 - mu2|^2 + tr C1 + tr C2 - 2 tr sqrtm(C1 C2), sqrtm by
  // Denman-Beavers (C1 C2 is similar to a PD matrix, so its principal root
  // exists and has the same trace).
  auto o = torch::TensorOptions().dtype(torch::kDouble);
  for (int64_t d : {2, 6, 16}) {
    auto c1 = random_spd(d), c2 = random_spd(d);
    auto mu1 = torch::randn({d}, o), mu2 = torch::randn({d}, o);
    const double expected =
        (mu1 - mu2).pow(2).sum().item<double>() + c1.trace().item<double>() +
        c2.trace().item<double>() -
        2.0 * sqrtm_denman_beavers(c1.matmul(c2)).trace().item<double>();
    EXPECT_NEAR(
        frechet_distance({mu1, c1}, {mu2, c2}),
        expected,
        1e-8 * std::max(1.0, std::abs(expected)))
        << "d = " << d;
  }
  // And on feature sets, against statistics computed here.
  auto x = torch::randn({300, 4}, o);
  auto y = torch::randn({200, 4}, o).matmul(torch::randn({4, 4}, o)) + 0.5;
  auto cov = [](const torch::Tensor& f) {
    auto c = f - f.mean(0);
    return c.transpose(0, 1).matmul(c) / static_cast<double>(f.size(0) - 1);
  };
  auto cx = cov(x), cy = cov(y);
  const double expected =
      (x.mean(0) - y.mean(0)).pow(2).sum().item<double>() +
      cx.trace().item<double>() + cy.trace().item<double>() -
      2.0 * sqrtm_denman_beavers(cx.matmul(cy)).trace().item<double>();
  EXPECT_NEAR(frechet_distance(x, y), expected, 1e-8);
}

TEST_F(FrechetTest, BadInputsAreRejected) {
  auto o = torch::TensorOptions().dtype(torch::kDouble);
  EXPECT_THROW_MSG(gaussian_stats(torch::randn({1, 3})), "N >= 2");
  EXPECT_THROW_MSG(gaussian_stats(torch::randn({5})), "[N, D]");
  EXPECT_THROW_MSG(
      gaussian_stats(torch::ones({2, 2}, torch::kLong)), "floating-point");
  auto nan = torch::randn({4, 2});
  nan[0][0] = std::nan("");
  EXPECT_THROW_MSG(gaussian_stats(nan), "NaN");
  EXPECT_THROW_MSG(
      frechet_distance(torch::randn({4, 2}), torch::randn({4, 3})),
      "feature dimensions differ");
  GaussianStats bad{torch::zeros({2}, o), torch::eye(3, o)};
  GaussianStats good{torch::zeros({2}, o), torch::eye(2, o)};
  EXPECT_THROW_MSG(frechet_distance(bad, good), "covariance [D, D]");
}

}  // namespace
}  // namespace sbgm
