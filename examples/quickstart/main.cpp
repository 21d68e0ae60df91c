#include <sbgm/sbgm.h>

#include <iostream>

int main() {
  torch::manual_seed(0);
  // A noise process: a DDPM schedule that reaches N(0, I) (alpha_bar_T is
  // about 1e-3), on its 100 steps.
  sbgm::DiscreteProcess process(sbgm::Schedule::sigmoid(100, 1e-4, 0.12));
  std::cout << process.describe() << "\n";

  // An eps-network: 2-D input, one learned embedding per step and layer.
  sbgm::MLP net(sbgm::MLPOptions(/*input_dim=*/2).num_timesteps(100));
  sbgm::Model model(net, sbgm::Prediction::Epsilon);

  // Train: fresh swiss-roll points every step, antithetic times.
  sbgm::data::Toy2dSampler data(
      sbgm::data::Toy2dSamplerOptions(sbgm::data::Toy2d::SwissRoll));
  sbgm::Trainer trainer(
      net,
      [&](int64_t /*step*/) {
        return sbgm::epsilon_loss(
            model,
            process,
            data.sample(256),
            sbgm::LossOptions().sampling(sbgm::TimeSampling::Antithetic));
      },
      sbgm::TrainerOptions(/*steps=*/500).lr(2e-3).ema_decay(0));
  std::cout << "final loss " << trainer.run().loss << "\n";

  // Sample 1,000 points, by name: DDIM on 20 trailing steps, seeded.
  namespace smp = sbgm::samplers;
  auto options = smp::SampleOptions().sampler("ddim").grid("trailing").steps(20);
  options.common().generator(sbgm::make_generator(/*seed=*/1));
  auto samples = smp::sample(model, process, {1000, 2}, options).samples;
  auto fresh = sbgm::data::make_swiss_roll(1000);
  std::cout << "sliced Wasserstein to the data: "
            << sbgm::metrics::sliced_wasserstein(samples, fresh).item<double>()
            << "\n";
  return 0;
}
