#pragma once

// Checks samples against a Gaussian mixture (the exact-score sampler tests).

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <tuple>
#include <utility>

#include "sbgm/gmm.h"
#include "sbgm/metrics/distances.h"
#include "sbgm/random.h"

namespace sbgm::test {

/// Mean, covariance and weights within Monte-Carlo error (plus a small
/// allowance `bias` for the sampler's discretization), and MMD^2 against
/// exact samples below a threshold from the spread of MMD^2 between exact
/// sample sets (the floor).
inline void check_samples(
    const torch::Tensor& samples,
    const GaussianMixture& target,
    double bias = 0.0) {
  const int64_t D = target.dim();
  ASSERT_EQ(samples.dim(), 2);
  ASSERT_EQ(samples.size(1), D);
  const int64_t N = samples.size(0);
  auto x = samples.to(torch::kDouble);
  ASSERT_TRUE(x.isfinite().all().item<bool>());
  const double n = static_cast<double>(N);
  // Mean: 4 standard errors.
  auto mean = x.mean(0);
  auto se_mean = (target.covariance().diagonal() / n).sqrt();
  auto err_mean = (mean - target.mean()).abs();
  EXPECT_TRUE((err_mean <= 4 * se_mean + bias).all().item<bool>())
      << "mean " << mean << " vs " << target.mean();
  // Covariance: 5 standard errors of each entry (estimated from the samples).
  auto xc = x - target.mean();
  for (int64_t i = 0; i < D; ++i) {
    for (int64_t j = 0; j <= i; ++j) {
      auto prod = xc.select(1, i) * xc.select(1, j);
      double est = prod.mean().item<double>() -
                   (mean[i] - target.mean()[i]).item<double>() *
                       (mean[j] - target.mean()[j]).item<double>();
      double se = prod.std().item<double>() / std::sqrt(n);
      double ref = target.covariance()[i][j].item<double>();
      EXPECT_NEAR(est, ref, 5 * se + bias) << "cov[" << i << "][" << j << "]";
    }
  }
  // Weights: assign each sample to the most responsible component; 4
  // binomial errors.
  auto comp = target.responsibilities(x).argmax(1);
  for (int64_t k = 0; k < target.num_components(); ++k) {
    double w = target.weights()[k].item<double>();
    double frac = (comp == k).to(torch::kDouble).mean().item<double>();
    EXPECT_NEAR(frac, w, 4 * std::sqrt(w * (1 - w) / n) + bias)
        << "weight of component " << k;
  }
  // MMD^2 (unbiased, first 1000 samples) against exact samples; the floor
  // from 3 null draws (computed once per target: the checks of one test
  // share it).
  const int64_t M = std::min<int64_t>(N, 1000);
  struct Floor {
    torch::Tensor keep;  // holds the means alive: no address is reused
    torch::Tensor ref;
    double null_max = 0;
  };
  // Keyed by the means' address (kept alive) and the component count: a
  // component sliced out of a mixture shares the mixture's address.
  static std::map<std::tuple<const void*, int64_t, int64_t>, Floor> floors;
  auto& f = floors[{target.means().data_ptr(), target.num_components(), M}];
  if (!f.ref.defined()) {
    f.keep = target.means();
    f.ref = target.sample(M, sbgm::make_generator(1000), torch::kDouble);
    for (uint64_t r = 0; r < 3; ++r) {
      auto a = target.sample(M, sbgm::make_generator(2000 + r), torch::kDouble);
      auto b = target.sample(M, sbgm::make_generator(3000 + r), torch::kDouble);
      f.null_max = std::max(
          f.null_max, std::abs(sbgm::metrics::mmd_rbf(a, b).item<double>()));
    }
  }
  double mmd = sbgm::metrics::mmd_rbf(x.slice(0, 0, M), f.ref).item<double>();
  EXPECT_LT(mmd, 4 * f.null_max + bias * 0.1) << "null max " << f.null_max;
}

}  // namespace sbgm::test
