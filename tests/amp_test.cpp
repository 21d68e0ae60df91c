#include "sbgm/amp.h"

#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include "support.h"

using sbgm::AutocastGuard;

// The guard turns CUDA autocast on with its dtype, nests, and restores the
// previous state and dtype on exit; a disabled guard changes nothing.
TEST(AutocastGuard, SetsNestsAndRestores) {
  ASSERT_FALSE(AutocastGuard::enabled_now());
  const auto dtype0 = AutocastGuard::dtype_now();
  {
    AutocastGuard outer;
    EXPECT_TRUE(AutocastGuard::enabled_now());
    EXPECT_EQ(AutocastGuard::dtype_now(), torch::kBFloat16);
    {
      AutocastGuard inner(true, torch::kHalf);
      EXPECT_TRUE(AutocastGuard::enabled_now());
      EXPECT_EQ(AutocastGuard::dtype_now(), torch::kHalf);
    }
    EXPECT_TRUE(AutocastGuard::enabled_now());
    EXPECT_EQ(AutocastGuard::dtype_now(), torch::kBFloat16);
    {
      AutocastGuard off(false);
      EXPECT_TRUE(AutocastGuard::enabled_now());  // a no-op guard
    }
  }
  EXPECT_FALSE(AutocastGuard::enabled_now());
  EXPECT_EQ(AutocastGuard::dtype_now(), dtype0);
}

// CPU operators are untouched: a float32 product stays float32.
TEST(AutocastGuard, LeavesCpuOperatorsAlone) {
  auto a = torch::randn({4, 3}), b = torch::randn({3, 2});
  AutocastGuard amp;
  EXPECT_EQ(torch::mm(a, b).scalar_type(), torch::kFloat);
}

TEST(AutocastGuard, RejectsOtherDtypes) {
  EXPECT_THROW_MSG(
      AutocastGuard(true, torch::kDouble),
      "dtype must be bfloat16 or half, got Double");
  EXPECT_FALSE(AutocastGuard::enabled_now());
}

// On CUDA a matrix product inside the guard runs in bf16, and a training
// step of a small network under it (backward outside) gives float32
// gradients close to the float32 ones.
TEST(AutocastGuard, CudaMatmulRunsInBf16) {
  if (!torch::cuda::is_available()) {
    GTEST_SKIP() << "CUDA is not available";
  }
  const auto dev = torch::Device(torch::kCUDA);
  auto a = torch::randn({64, 32}, dev), b = torch::randn({32, 16}, dev);
  torch::Tensor c;
  {
    AutocastGuard amp;
    c = torch::mm(a, b);
  }
  EXPECT_EQ(c.scalar_type(), torch::kBFloat16);
  EXPECT_EQ(torch::mm(a, b).scalar_type(), torch::kFloat);
  auto w = torch::randn({32, 16}, dev).requires_grad_(true);
  torch::Tensor loss;
  {
    AutocastGuard amp;
    loss = torch::mm(a, w).to(torch::kFloat).square().mean();
  }
  loss.backward();
  auto g_amp = w.grad().clone();
  w.mutable_grad() = torch::Tensor();
  torch::mm(a, w).square().mean().backward();
  EXPECT_EQ(g_amp.scalar_type(), torch::kFloat);
  EXPECT_TRUE(sbgm::test::all_close(g_amp, w.grad(), 0.05, 0.05));
}
