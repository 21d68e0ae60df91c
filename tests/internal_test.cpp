// Private helpers (src/internal.h) that many checks rely on.

#include "internal.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

using sbgm::detail::host_minmax;

// The loop over contiguous CPU data agrees with min()/max() for every dtype
// it takes, NaN gives NaN, and other tensors go through the tensor route.
TEST(HostMinMax, MatchesTensorMinMax) {
  double lo = 0, hi = 0;
  for (auto dtype :
       {torch::kLong,
        torch::kInt,
        torch::kFloat,
        torch::kDouble,
        torch::kHalf,
        torch::kBFloat16,
        torch::kUInt8}) {
    auto t = torch::randint(0, 100, {37}, torch::kLong).to(dtype);
    ASSERT_TRUE(host_minmax(t, &lo, &hi)) << dtype;
    EXPECT_EQ(lo, t.min().to(torch::kDouble).item<double>()) << dtype;
    EXPECT_EQ(hi, t.max().to(torch::kDouble).item<double>()) << dtype;
  }
  auto f = torch::tensor({1.0, -2.5, 7.0});
  ASSERT_TRUE(host_minmax(f, &lo, &hi));
  EXPECT_EQ(lo, -2.5);
  EXPECT_EQ(hi, 7.0);
  f[1] = std::nan("");
  ASSERT_TRUE(host_minmax(f, &lo, &hi));
  EXPECT_TRUE(std::isnan(lo) && std::isnan(hi));
  // Non-contiguous (and stride-0) tensors take the tensor route.
  auto m = torch::arange(12, torch::kLong).reshape({3, 4}).t();
  ASSERT_TRUE(host_minmax(m, &lo, &hi));
  EXPECT_EQ(lo, 0);
  EXPECT_EQ(hi, 11);
  auto e = torch::full({1}, 5, torch::kLong).expand({9});
  ASSERT_TRUE(host_minmax(e, &lo, &hi));
  EXPECT_EQ(lo, 5);
  EXPECT_EQ(hi, 5);
  // Nothing to read: empty tensors.
  EXPECT_FALSE(host_minmax(torch::empty({0}), &lo, &hi));
}
