// sbgm::group_norm_silu against torch::silu(torch::group_norm(...)) and its
// autograd gradients: float64 to rounding, float32 to float tolerance, on
// the fused CPU kernels and on the composite fallback.

#include "sbgm/nets/group_norm_silu.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "support.h"

namespace {

struct Case {
  std::vector<int64_t> shape;
  int64_t groups;
};

// Forward value and the gradients of sum(out * probe) in x, weight, bias.
struct Result {
  torch::Tensor out, dx, dw, db;
};

template <class Fn>
Result run(
    Fn fn,
    const torch::Tensor& x0,
    const torch::Tensor& w0,
    const torch::Tensor& b0,
    const torch::Tensor& probe) {
  auto x = x0.clone().requires_grad_(true);
  auto w = w0.clone().requires_grad_(true);
  auto b = b0.clone().requires_grad_(true);
  auto out = fn(x, w, b);
  (out * probe).sum().backward();
  return {out.detach(), x.grad(), w.grad(), b.grad()};
}

void expect_close(
    const Result& got, const Result& ref, double tol, const std::string& what) {
  EXPECT_TRUE(sbgm::test::all_close(got.out, ref.out, tol, tol)) << what;
  EXPECT_TRUE(sbgm::test::all_close(got.dx, ref.dx, tol, tol)) << what << " dx";
  EXPECT_TRUE(sbgm::test::all_close(got.dw, ref.dw, tol, tol)) << what << " dw";
  EXPECT_TRUE(sbgm::test::all_close(got.db, ref.db, tol, tol)) << what << " db";
}

class GroupNormSiLUTest : public sbgm::test::SeededTest {};

}  // namespace

TEST_F(GroupNormSiLUTest, MatchesTheComposite) {
  const std::vector<Case> cases{
      {{4, 16, 7, 7}, 8},   // the U-Net's shapes
      {{3, 6, 5}, 3},       // 1-D positions
      {{2, 8, 3, 3}, 1},    // one group
      {{2, 4, 9, 2}, 4},    // one channel per group
      {{5, 3}, 3},          // no positions
      {{1, 8, 11, 13}, 2},  // rows not a multiple of the vector width
  };
  for (const auto& c : cases) {
    for (auto dtype : {torch::kDouble, torch::kFloat}) {
      const int64_t C = c.shape[1];
      // Scale and shift so that normalized values reach the tails of SiLU.
      auto x = torch::randn(c.shape, dtype) * 3 + 1;
      auto w = torch::randn({C}, dtype) * 2;
      auto b = torch::randn({C}, dtype);
      auto probe = torch::randn(c.shape, dtype);
      auto fused = run(
          [&](auto& xx, auto& ww, auto& bb) {
            return sbgm::group_norm_silu(xx, c.groups, ww, bb, 1e-5);
          },
          x,
          w,
          b,
          probe);
      auto ref = run(
          [&](auto& xx, auto& ww, auto& bb) {
            return torch::silu(torch::group_norm(xx, c.groups, ww, bb, 1e-5));
          },
          x.to(torch::kDouble),
          w.to(torch::kDouble),
          b.to(torch::kDouble),
          probe.to(torch::kDouble));
      std::ostringstream what;
      what << "shape " << c.shape << " groups " << c.groups << " dtype "
           << dtype;
      expect_close(
          fused, ref, dtype == torch::kDouble ? 1e-10 : 2e-4, what.str());
      EXPECT_EQ(fused.out.scalar_type(), dtype);
      EXPECT_EQ(fused.dw.scalar_type(), dtype);
    }
  }
}

// Inputs the fused kernel does not take (non-contiguous x, no affine
// parameters) go through the composite, with the same results.
TEST_F(GroupNormSiLUTest, FallbackPathsMatch) {
  auto x = torch::randn({3, 8, 5, 4}, torch::kDouble);
  auto w = torch::randn({8}, torch::kDouble);
  auto b = torch::randn({8}, torch::kDouble);
  auto xt = x.transpose(2, 3);  // non-contiguous
  ASSERT_FALSE(xt.is_contiguous());
  EXPECT_TRUE(sbgm::test::all_close(
      sbgm::group_norm_silu(xt, 4, w, b),
      torch::silu(torch::group_norm(xt, 4, w, b, 1e-5)),
      1e-12,
      1e-12));
  EXPECT_TRUE(sbgm::test::all_close(
      sbgm::group_norm_silu(x, 2, {}, {}),
      torch::silu(torch::group_norm(x, 2, {}, {}, 1e-5)),
      1e-12,
      1e-12));
}

TEST_F(GroupNormSiLUTest, ExtremesAndInferenceMode) {
  // Very large normalized values: silu(y) -> y, silu(-y) -> 0, no NaN.
  auto x =
      torch::tensor({-1e4, 1e4, 0.0, 0.0}, torch::kFloat).reshape({1, 1, 4});
  auto w = torch::full({1}, 200.0f);
  auto b = torch::zeros({1});
  auto out = sbgm::group_norm_silu(x, 1, w, b);
  auto ref = torch::silu(torch::group_norm(x, 1, w, b, 1e-5));
  EXPECT_TRUE(out.isfinite().all().item<bool>()) << out;
  EXPECT_TRUE(sbgm::test::all_close(out, ref, 1e-5, 1e-4)) << out << ref;
  // NaN in the input comes out as NaN (its group's statistics are NaN).
  auto xn = torch::randn({2, 4, 3});
  xn[0][1][2] = std::numeric_limits<float>::quiet_NaN();
  auto on = sbgm::group_norm_silu(xn, 2, torch::ones({4}), torch::zeros({4}));
  EXPECT_TRUE(on[0].slice(0, 0, 2).isnan().all().item<bool>());
  EXPECT_FALSE(on[1].isnan().any().item<bool>());
  // Under InferenceMode (the samplers' mode) the forward runs as usual.
  c10::InferenceMode guard;
  auto xi = torch::randn({2, 4, 3});
  EXPECT_TRUE(sbgm::test::all_close(
      sbgm::group_norm_silu(xi, 2, torch::ones({4}), torch::zeros({4})),
      torch::silu(
          torch::group_norm(xi, 2, torch::ones({4}), torch::zeros({4}))),
      1e-5,
      1e-5));
}

TEST(GroupNormSiLUErrors, BadInput) {
  auto x = torch::randn({2, 6, 3});
  auto w = torch::ones({6}), b = torch::zeros({6});
  EXPECT_THROW_MSG(
      sbgm::group_norm_silu(x, 4, w, b),
      "groups (4) must be > 0 and divide the channel count 6");
  EXPECT_THROW_MSG(sbgm::group_norm_silu(x, 0, w, b), "groups (0)");
  EXPECT_THROW_MSG(
      sbgm::group_norm_silu(x, 3, torch::ones({5}), b),
      "weight and bias must have shape [6], got [5] and [6]");
  EXPECT_THROW_MSG(
      sbgm::group_norm_silu(x, 3, w, {}), "both be given or both be undefined");
  EXPECT_THROW_MSG(
      sbgm::group_norm_silu(torch::randn({6}), 3, w, b),
      "x must have shape [N, C, ...], got [6]");
  EXPECT_THROW_MSG(
      sbgm::group_norm_silu(x, 3, w, b, 0.0), "eps must be > 0, got 0");
  EXPECT_THROW_MSG(
      sbgm::group_norm_silu(torch::ones({2, 6, 3}, torch::kLong), 3, w, b),
      "floating");
}
