// End to end on the committed MNIST fixture (32 digits): a few training
// steps of a small U-Net lower the loss, and sampling gives finite images of
// the right shape. The VE path is the demo's default (score network divided
// by sigma_t, DSM, Euler-Maruyama); the DDPM path is eps-prediction with
// DDIM.

#include <torch/torch.h>

#include <memory>
#include <string>

#include "sbgm/data/mnist.h"
#include "sbgm/losses.h"
#include "sbgm/model.h"
#include "sbgm/nets/unet.h"
#include "sbgm/processes/discrete.h"
#include "sbgm/processes/edm.h"
#include "sbgm/processes/ve.h"
#include "sbgm/processes/vp.h"
#include "sbgm/samplers/samplers.h"
#include "sbgm/schedule.h"
#include "sbgm/train/trainer.h"
#include "support.h"

namespace sbgm {
namespace {

const std::string kTiny = std::string(SBGM_TEST_DATA_DIR) + "/mnist-tiny";

UNetOptions small_unet() {
  return UNetOptions(1).channels({8, 16}).groups(4).time_dim(32);
}

class MnistTrainTest : public test::DeviceTest {};

TEST_P(MnistTrainTest, VEScoreNetLearnsAndSamplesFiniteImages) {
  const auto images = data::load_mnist(kTiny).images.to(device());
  ASSERT_EQ(images.sizes(), (std::vector<int64_t>{32, 1, 28, 28}));
  auto sde = std::make_shared<VESDE>(25.0);
  UNet net(small_unet().marginal_std(
      [sde](const torch::Tensor& t) { return sde->sigma(t); }));
  net->to(device());
  const Model model(net, Prediction::Score);

  // The loss on all 32 digits at fixed times and noise, before and after.
  const auto t = torch::linspace(0.05, 1.0, 32, f32());
  const auto noise = torch::randn_like(images);
  auto fixed_loss = [&] {
    torch::NoGradGuard no_grad;
    return diffusion_loss(
               model,
               *sde,
               images,
               t,
               noise,
               LossOptions()
                   .target(Prediction::Score)
                   .weighting(LossWeighting::SigmaSquared))
        .item<double>();
  };
  const double before = fixed_loss();
  Trainer trainer(
      net,
      [&](int64_t) {
        auto idx = torch::randint(32, {16}, f32().dtype(torch::kLong));
        return dsm_loss(model, *sde, images.index_select(0, idx));
      },
      TrainerOptions(40).lr(3e-3).ema_decay(0).progress(ProgressMode::Off));
  trainer.run();
  const double after = fixed_loss();
  EXPECT_TRUE(std::isfinite(before));
  EXPECT_LT(after, 0.8 * before) << "before " << before << ", after " << after;

  net->eval();
  auto result = samplers::euler_maruyama(
      model,
      *sde,
      {4, 1, 28, 28},
      samplers::EulerMaruyamaOptions().grid(10).common(
          samplers::CommonOptions().device(device())));
  ASSERT_EQ(result.samples.sizes(), (std::vector<int64_t>{4, 1, 28, 28}));
  EXPECT_EQ(result.samples.device(), device());
  EXPECT_TRUE(torch::isfinite(result.samples).all().item<bool>());
  const auto img = result.samples.clamp(0, 1);
  EXPECT_GE(img.min().item<double>(), 0.0);
  EXPECT_LE(img.max().item<double>(), 1.0);
}

TEST_P(MnistTrainTest, DDPMEpsNetLearnsAndSamplesFiniteImages) {
  const auto images = data::load_mnist(kTiny).images.to(device()) * 2 - 1;
  const DiscreteProcess schedule(Schedule::cosine(1000));
  UNet net(small_unet().time_embedding(TimeEmbeddingKind::Sinusoidal));
  net->to(device());
  const Model model(net, Prediction::Epsilon);

  const auto t = torch::linspace(20, 980, 32, f32()).to(torch::kLong);
  const auto noise = torch::randn_like(images);
  auto fixed_loss = [&] {
    torch::NoGradGuard no_grad;
    return diffusion_loss(model, schedule, images, t, noise).item<double>();
  };
  const double before = fixed_loss();
  Trainer trainer(
      net,
      [&](int64_t) {
        auto idx = torch::randint(32, {16}, f32().dtype(torch::kLong));
        return epsilon_loss(model, schedule, images.index_select(0, idx));
      },
      TrainerOptions(40).lr(3e-3).ema_decay(0).progress(ProgressMode::Off));
  trainer.run();
  const double after = fixed_loss();
  EXPECT_LT(after, 0.8 * before) << "before " << before << ", after " << after;

  net->eval();
  auto result = samplers::ddim(
      model,
      schedule,
      {4, 1, 28, 28},
      samplers::DDIMOptions().grid(10).common(
          samplers::CommonOptions().device(device())));
  ASSERT_EQ(result.samples.sizes(), (std::vector<int64_t>{4, 1, 28, 28}));
  EXPECT_TRUE(torch::isfinite(result.samples).all().item<bool>());
  const auto img = ((result.samples + 1) / 2).clamp(0, 1);
  EXPECT_GE(img.min().item<double>(), 0.0);
  EXPECT_LE(img.max().item<double>(), 1.0);
}

SBGM_INSTANTIATE_DEVICES(MnistTrainTest);

}  // namespace
}  // namespace sbgm
