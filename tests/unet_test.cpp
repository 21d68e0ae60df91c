#include "sbgm/nets/unet.h"

#include <torch/torch.h>

#include <chrono>
#include <ctime>
#include <iostream>

#include "support.h"

namespace sbgm {
namespace {

using test::all_close;

// A tiny net so the tests stay fast.
UNetOptions tiny(int64_t in_channels) {
  return UNetOptions(in_channels)
      .channels({8, 16})
      .groups(4)
      .time_dim(16)
      .attention_levels({1});
}

class UNetTest : public test::DeviceTest {};

TEST_P(UNetTest, OutputShapeMatchesInputForManySizes) {
  for (auto [c, h, w] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{
           {1, 28, 28},
           {1, 32, 32},
           {1, 27, 27},
           {1, 13, 13},
           {3, 16, 16},
           {2, 9, 14},
           {1, 7, 5},
           {1, 1, 1}}) {
    UNet net(tiny(c).channels({8, 16, 16}));
    net->to(device());
    auto x = torch::randn({2, c, h, w}, f32());
    auto t = torch::rand({2}, f32());
    auto y = net(x, t);
    EXPECT_EQ(y.sizes(), x.sizes()) << c << "x" << h << "x" << w;
    EXPECT_TRUE(torch::isfinite(y).all().item<bool>());
  }
}

TEST_P(UNetTest, GradientsReachEveryParameter) {
  UNet net(tiny(1).num_res_blocks(2).dropout(0.1));
  net->to(device());
  auto x = torch::randn({3, 1, 12, 12}, f32());
  auto t = torch::rand({3}, f32());
  net(x, t).pow(2).sum().backward();
  for (const auto& p : net->named_parameters()) {
    ASSERT_TRUE(p.value().grad().defined()) << p.key();
    EXPECT_GT(p.value().grad().abs().sum().item<double>(), 0.0) << p.key();
  }
}

TEST_P(UNetTest, TimeConditioningChangesTheOutput) {
  for (auto kind :
       {TimeEmbeddingKind::Fourier,
        TimeEmbeddingKind::Sinusoidal,
        TimeEmbeddingKind::Learned}) {
    UNet net(tiny(1).time_embedding(kind).num_timesteps(10).time_scale(
        kind == TimeEmbeddingKind::Sinusoidal ? 1000.0 : 1.0));
    net->to(device());
    net->eval();
    auto x = torch::randn({1, 1, 8, 8}, f32()).expand({2, 1, 8, 8});
    auto t =
        kind == TimeEmbeddingKind::Learned
            ? torch::tensor(
                  {1, 7}, torch::TensorOptions(device()).dtype(torch::kLong))
            : torch::tensor({0.1f, 0.9f}, f32());
    auto y = net(x, t);
    EXPECT_GT(test::max_abs_diff(y[0], y[1]), 1e-4) << to_string(kind);
    // Same t, same x: same output (batch entries do not interact).
    auto y2 = net(x, t.flip(0));
    EXPECT_TRUE(all_close(y2[0], y[1], 1e-4, 1e-5)) << to_string(kind);
  }
}

TEST_P(UNetTest, ScalarTimeIsSharedByTheBatch) {
  UNet net(tiny(1));
  net->to(device());
  auto x = torch::randn({2, 1, 8, 8}, f32());
  auto y0 = net(x, torch::tensor(0.3f, f32()));
  auto y1 = net(x, torch::full({2}, 0.3f, f32()));
  EXPECT_TRUE(all_close(y0, y1, 1e-5, 1e-6));
}

TEST_P(UNetTest, ScoreScalingDividesByMarginalStd) {
  torch::manual_seed(1);
  UNet plain(tiny(1));
  auto std_fn = [](const torch::Tensor& t) {
    return torch::sqrt((torch::pow(25.0, 2 * t) - 1) / (2 * std::log(25.0)));
  };
  UNet scaled(tiny(1).marginal_std(std_fn));
  // Same weights in both (the Fourier buffer W included).
  {
    torch::NoGradGuard g;
    auto src = plain->named_parameters();
    for (auto& p : scaled->named_parameters()) {
      p.value().copy_(src[p.key()]);
    }
    auto bsrc = plain->named_buffers();
    for (auto& b : scaled->named_buffers()) {
      b.value().copy_(bsrc[b.key()]);
    }
  }
  plain->to(device());
  scaled->to(device());
  auto x = torch::randn({3, 1, 8, 8}, f32());
  auto t = torch::tensor({0.01f, 0.5f, 1.0f}, f32());
  auto expected = plain(x, t).to(torch::kDouble);
  auto s = torch::sqrt(
      (torch::pow(25.0, 2 * t.to(torch::kDouble)) - 1) / (2 * std::log(25.0)));
  EXPECT_TRUE(
      all_close(scaled(x, t), expected / s.view({3, 1, 1, 1}), 1e-5, 1e-6));
}

TEST_P(UNetTest, ChannelsLastInputGivesTheSameOutput) {
  UNet net(tiny(3));
  net->to(device());
  auto x = torch::randn({2, 3, 10, 10}, f32());
  auto t = torch::rand({2}, f32());
  auto y = net(x, t);
  auto y_cl = net(x.contiguous(torch::MemoryFormat::ChannelsLast), t);
  EXPECT_EQ(y_cl.sizes(), x.sizes());
  EXPECT_TRUE(all_close(y_cl, y, 1e-4, 1e-5));
}

TEST_P(UNetTest, DefaultNetKeepsMnistAndCifarShapes) {
  UNet net(UNetOptions(1));
  net->to(device());
  for (int64_t size : {28, 32}) {
    auto x = torch::randn({2, 1, size, size}, f32());
    EXPECT_EQ(net(x, torch::rand({2}, f32())).sizes(), x.sizes());
  }
  UNet rgb(UNetOptions(3));
  rgb->to(device());
  auto x = torch::randn({2, 3, 32, 32}, f32());
  EXPECT_EQ(rgb(x, torch::rand({2}, f32())).sizes(), x.sizes());
}

SBGM_INSTANTIATE_DEVICES(UNetTest);

// Benchmark, not a check: run with --gtest_also_run_disabled_tests.
// One training step (forward, MSE loss, backward, Adam) of the default net
// at batch 32 on 28x28 on one thread.
TEST(UNetBenchmark, DISABLED_DefaultNetStepTime) {
  torch::set_num_threads(1);
  std::vector<std::pair<std::string, UNetOptions>> configs = {
      {"default {16, 32, 64}", UNetOptions(1)},
      {"{32, 64, 128}", UNetOptions(1).channels({32, 64, 128})},
  };

  for (auto& [name, o] : configs) {
    torch::manual_seed(0);
    UNet net(o);
    int64_t count = 0;
    for (const auto& p : net->parameters()) {
      count += p.numel();
    }
    torch::optim::Adam opt(net->parameters(), torch::optim::AdamOptions(1e-3));
    auto x = torch::randn({32, 1, 28, 28});
    auto t = torch::rand({32});
    auto step = [&] {
      opt.zero_grad();
      auto loss = (net(x, t) - x).pow(2).mean();
      loss.backward();
      opt.step();
    };
    step();  // warm-up
    const int steps = 5;
    const auto start = std::chrono::steady_clock::now();
    const auto cpu_start = std::clock();
    for (int i = 0; i < steps; ++i) {
      step();
    }
    const std::chrono::duration<double> elapsed =
        std::chrono::steady_clock::now() - start;
    const double cpu =
        static_cast<double>(std::clock() - cpu_start) / CLOCKS_PER_SEC;
    std::cout << "UNet " << name << ": " << count << " parameters, "
              << elapsed.count() / steps << " s wall, " << cpu / steps
              << " s CPU per step (batch 32, 28x28, 1 thread)" << std::endl;
  }
}

class UNetErrors : public test::SeededTest {};

TEST_F(UNetErrors, BadOptionsAreRejected) {
  EXPECT_THROW_MSG(UNet(tiny(1).groups(3)), "groups (3) must divide");
  EXPECT_THROW_MSG(UNet(tiny(0)), "in_channels must be positive");
  EXPECT_THROW_MSG(UNet(tiny(1).channels({})), "at least one level");
  EXPECT_THROW_MSG(UNet(tiny(1).channels({8, -8})), "channels[1]");
  EXPECT_THROW_MSG(UNet(tiny(1).num_res_blocks(0)), "num_res_blocks");
  EXPECT_THROW_MSG(UNet(tiny(1).dropout(1.0)), "dropout");
  EXPECT_THROW_MSG(UNet(tiny(1).time_dim(0)), "time_dim");
  EXPECT_THROW_MSG(UNet(tiny(1).attention_levels({2})), "attention level 2");
}

TEST_F(UNetErrors, BadInputsAreRejected) {
  UNet net(tiny(1));
  auto x = torch::randn({2, 1, 8, 8});
  auto t = torch::rand({2});
  EXPECT_THROW_MSG(net(torch::randn({2, 3, 8, 8}), t), "x has 3 channels");
  EXPECT_THROW_MSG(net(torch::randn({2, 8, 8}), t), "must be [N, C, H, W]");
  EXPECT_THROW_MSG(net(x.to(torch::kLong), t), "floating-point");
  EXPECT_THROW_MSG(net(x, torch::rand({3})), "one entry per sample");
  EXPECT_THROW_MSG(net(x, torch::Tensor()), "t is an undefined tensor");
  UNet learned(tiny(1).time_embedding(TimeEmbeddingKind::Learned));
  EXPECT_THROW_MSG(learned(x, t), "integer step indices");
  UNet bad_std(tiny(1).marginal_std(
      [](const torch::Tensor&) { return torch::ones({5}); }));
  EXPECT_THROW_MSG(bad_std(x, t), "marginal_std(t) must return");
}

}  // namespace
}  // namespace sbgm
