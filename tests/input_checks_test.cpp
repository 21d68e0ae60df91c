// Non-finite and impossible inputs get an error that names the input, not a
// NaN result and not a message that blames the model; CUDA asked of a
// CPU-only LibTorch gets sbgm's message.

#include <ATen/Context.h>

#include <cmath>

#include "sbgm/gmm.h"
#include "sbgm/losses.h"
#include "sbgm/metrics/distances.h"
#include "sbgm/model_file.h"
#include "sbgm/nets/mlp.h"
#include "sbgm/process.h"
#include "sbgm/processes/discrete.h"
#include "sbgm/processes/edm.h"
#include "sbgm/processes/ve.h"
#include "sbgm/processes/vp.h"
#include "sbgm/samplers/likelihood.h"
#include "sbgm/samplers/samplers.h"
#include "sbgm/schedule.h"
#include "support.h"

namespace sbgm {
namespace {

namespace ss = samplers;

GaussianMixture mixture() {
  return GaussianMixture(
      torch::tensor({0.25, 0.75}, torch::kDouble),
      torch::tensor({{-2.0, 0.5}, {1.5, -1.0}}, torch::kDouble),
      torch::tensor({{0.5, 0.8}, {0.3, 0.4}}, torch::kDouble));
}

// Points with one NaN at flat index 5 (row 2, column 1).
torch::Tensor with_nan(int64_t n = 4) {
  auto x = torch::randn({n, 2}, torch::kDouble);
  x[2][1] = NAN;
  return x;
}

TEST(InputChecks, SamplersNameTheCallersNaNNotTheModel) {
  auto g = mixture();
  auto process = std::make_shared<VPSDE>();
  auto model = g.model(process);
  auto x = with_nan();
  EXPECT_THROW_MSG(
      ss::sample(
          model,
          *process,
          {4, 2},
          ss::SampleOptions().sampler("ddpm").common(
              ss::CommonOptions().x_init(x).dtype(torch::kDouble))),
      "x_init holds 1 non-finite value (NaN or Inf) among 8, the first at "
      "flat index 5 (shape [4, 2])");
  EXPECT_THROW_MSG(
      ss::log_likelihood(model, *process, x),
      "log_likelihood: x holds 1 non-finite value");
  x[0][0] = INFINITY;
  EXPECT_THROW_MSG(
      ss::log_likelihood(model, *process, x),
      "x holds 2 non-finite values (NaN or Inf) among 8, the first at flat "
      "index 0");
}

TEST(InputChecks, MixtureScoresAndDensitiesOfNaNPointsThrow) {
  auto g = mixture();
  EXPECT_THROW_MSG(
      g.score(with_nan(), 1.0, 0.5),
      "GaussianMixture::score: x holds 1 non-finite value");
  EXPECT_THROW_MSG(
      g.log_prob(with_nan()), "GaussianMixture::log_prob: x holds 1");
  // Finite points still work.
  EXPECT_TRUE(
      torch::isfinite(g.score(torch::randn({4, 2}, torch::kDouble), 1.0, 0.5))
          .all()
          .item<bool>());
}

TEST(InputChecks, DistancesOfNaNSetsThrow) {
  auto good = torch::randn({4, 2}, torch::kDouble);
  EXPECT_THROW_MSG(
      metrics::mmd_rbf(with_nan(), good, {1.0}),
      "mmd_rbf: x holds 1 non-finite value");
  EXPECT_THROW_MSG(
      metrics::sliced_wasserstein(good, with_nan()),
      "sliced_wasserstein: y holds 1 non-finite value");
}

TEST(InputChecks, LossesOfANaNBatchThrowOnTheCpu) {
  MLP net(MLPOptions(2).hidden(8).depth(1).num_timesteps(10));
  Model model(net, Prediction::Epsilon);
  DiscreteProcess process(Schedule::linear(10, 0.1, 0.6));
  auto x0 = with_nan().to(torch::kFloat);
  EXPECT_THROW_MSG(
      epsilon_loss(model, process, x0),
      "diffusion_loss: x0 holds 1 non-finite value");
  EXPECT_THROW_MSG(
      diffusion_loss(
          model,
          process,
          torch::zeros({4, 2}),
          torch::zeros({4}, torch::kLong),
          torch::full({4, 2}, NAN)),
      "diffusion_loss: noise holds 8 non-finite values");
}

TEST(InputChecks, CudaOnACpuOnlyLibTorchSaysHowToGetOne) {
  if (at::hasCUDA()) {
    GTEST_SKIP() << "this LibTorch has CUDA";
  }
  const std::string hint =
      "was asked for, but this LibTorch was built without CUDA";
  auto g = mixture();
  auto process = std::make_shared<VPSDE>();
  EXPECT_THROW_MSG(
      ss::sample(
          g.model(process),
          *process,
          {4, 2},
          ss::SampleOptions().common(ss::CommonOptions().device(torch::kCUDA))),
      "device cuda " + hint);
  EXPECT_THROW_MSG(
      g.to(torch::kCUDA), "GaussianMixture::to: device cuda " + hint);
  EXPECT_THROW_MSG(
      Schedule::linear(10, 1e-3, 0.2).to(torch::Device("cuda:1")),
      "Schedule::to: device cuda:1 " + hint);
  EXPECT_THROW_MSG(
      sample_times(*process, 4, LossOptions(), torch::kCUDA),
      "sample_times: device cuda " + hint);
  EXPECT_THROW_MSG(
      load_model("no-such-file.safetensors", torch::kCUDA),
      "load_model: device cuda " + hint);
  EXPECT_THROW_MSG(
      load_model("no-such-file.safetensors", torch::kCUDA),
      "CMAKE_PREFIX_PATH=$(python3 -c 'import "
      "torch;print(torch.utils.cmake_prefix_path)')");
}

}  // namespace
}  // namespace sbgm
