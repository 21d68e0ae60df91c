// One network, every sampler: an eps-MLP trained on the integer steps of a
// discrete linear schedule is sampled with DDPM and DDIM on its steps, and
// with the probability-flow ODE and DPM-Solver++ on Karras grids through the
// log-SNR interpolation of the same schedule (fractional steps, as
// k-diffusion's DiscreteEpsDDPMDenoiser runs a step-trained network). Each
// must land on the data.

#include <cmath>
#include <memory>
#include <string>

#include "sbgm/gmm.h"
#include "sbgm/losses.h"
#include "sbgm/metrics/distances.h"
#include "sbgm/nets/mlp.h"
#include "sbgm/processes/discrete.h"
#include "sbgm/random.h"
#include "sbgm/samplers/samplers.h"
#include "sbgm/schedule.h"
#include "sbgm/train/trainer.h"
#include "support.h"

namespace sbgm {
namespace {

namespace ss = samplers;

TEST(OneNetwork, EverySamplerLandsOnTheData) {
  torch::manual_seed(0);
  const GaussianMixture data(
      torch::tensor({0.3, 0.7}, torch::kDouble),
      torch::tensor({{-1.2, 0.4}, {0.9, -0.5}}, torch::kDouble),
      torch::tensor({0.25, 0.35}, torch::kDouble));
  // (Linear: its last step keeps alpha = 6e-3. The cosine schedule's last
  // alpha is 1e-4, and an eps-network's error in x0 = (x - sigma eps) /
  // alpha grows by 1 / alpha at the first step of DDIM from t = T - 1.)
  const auto schedule = Schedule::linear(1000);
  // Trained on the integer steps ...
  DiscreteProcess steps(schedule);
  // ... sampled also between them.
  DiscreteProcess interpolated(
      schedule, DiscreteProcessOptions().quantize(false));
  MLP net(MLPOptions(2).hidden(128).embedding(TimeEmbeddingKind::Sinusoidal));
  Model model(net, Prediction::Epsilon);
  auto gen = make_generator(1);
  Trainer trainer(
      net,
      [&](int64_t) {
        return epsilon_loss(
            model,
            steps,
            data.sample(256, gen),
            LossOptions().sampling(TimeSampling::Antithetic));
      },
      TrainerOptions(3000).lr(2e-3).ema_decay(0.995).progress(
          ProgressMode::Off));
  trainer.run();
  trainer.ema()->copy_to(*net);
  net->eval();

  // The sliced Wasserstein distance to fresh data, over its floor (the same
  // between two fresh draws), each averaged over 4 draws.
  auto ratio = [&](const torch::Tensor& samples) {
    double s = 0, f = 0;
    for (uint64_t k = 0; k < 4; ++k) {
      auto a = data.sample(2000, make_generator(100 + k));
      auto b = data.sample(2000, make_generator(200 + k));
      s += metrics::sliced_wasserstein(samples, a, 256, make_generator(7))
               .item<double>();
      f += metrics::sliced_wasserstein(b, a, 256, make_generator(7))
               .item<double>();
    }
    return s / f;
  };
  struct Case {
    const char* sampler;
    const NoiseProcess* process;
    const char* grid;
    int64_t steps;
  };
  for (const auto& c : {
           Case{"ddpm", &steps, "default", 1000},
           Case{"ddim", &steps, "trailing", 50},
           Case{"ode", &interpolated, "karras", 50},
           Case{"dpmpp_2m", &interpolated, "karras", 25},
       }) {
    auto r = ss::sample(
        model,
        *c.process,
        {2000, 2},
        ss::SampleOptions()
            .sampler(c.sampler)
            .grid(c.grid)
            .steps(c.steps)
            .common(ss::CommonOptions().generator(make_generator(9))));
    const double q = ratio(r.samples);
    // Component weights from the responsibilities.
    const double w = (data.responsibilities(r.samples).argmax(1) == 0)
                         .to(torch::kDouble)
                         .mean()
                         .item<double>();
    std::printf(
        "%-9s on %s %s: sliced Wasserstein ratio %.2f, weight %.3f (0.3)\n",
        c.sampler,
        c.process->describe().c_str(),
        c.grid,
        q,
        w);
    EXPECT_LT(q, 1.6) << c.sampler;
    EXPECT_NEAR(w, 0.3, 0.04) << c.sampler;
  }
}

}  // namespace
}  // namespace sbgm
