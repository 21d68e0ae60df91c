// sbgm-swiss-roll: trains a diffusion model on a 2-D toy set (swiss roll,
// moons, circles, 8 Gaussians), samples it and writes pictures and metrics.
//
//   sbgm-swiss-roll --out runs/swiss          # the default: < 1 minute on CPU
//   sbgm-swiss-roll --dataset circles --sampler ddim --sample-steps 50
//   sbgm-swiss-roll --preset seed --out runs/seed
//
// The model works on the data standardized to unit variance (one scale for
// both coordinates, so the prior N(0, I) is on the data's own scale) and
// its samples are mapped back. Any process (--process) runs with any
// sampler and grid (--sampler, --grid): on a discrete schedule the MLP
// embeds its steps in a learned table (trained through the fused eps-loss
// step); on a continuous process it takes sinusoidal time features.
// Outputs in --out: samples.npy, samples.png, forward.png, reverse.gif,
// loss.png, loss.csv, metrics.json and model.safetensors (the EMA weights,
// which sbgm-sample samples to the same samples.npy).

#include "../common/common.h"

namespace ex = sbgm::examples;
namespace fs = std::filesystem;
namespace io = sbgm::io;

namespace {

// Points drawn for the metrics (samples and each fresh draw of the data).
constexpr int64_t kMetricPoints = 2000;
// Panels of the forward-process figure and frames of the reverse GIF.
constexpr int64_t kForwardPanels = 20;
constexpr int64_t kGifFrames = 40;

struct Config {
  std::string dataset = "swiss_roll";
  std::string preset = "default";
  std::string process = "sigmoid";
  int64_t timesteps = 200;
  int64_t hidden = 128;
  ex::TrainingFlags train{20000, 256, 1e-3, "swiss-roll-out"};
  ex::SamplingFlags sampling;
  int64_t num_samples = kMetricPoints;
  int threads = 1;
};

int run(Config c) {
  const bool seed_preset = c.preset == "seed";
  if (seed_preset) {  // the original program: T = 150, 64 units, batch 128
    c.timesteps = 150, c.hidden = 64, c.train.batch = 128, c.train.ema = 0;
  }
  torch::manual_seed(c.train.seed);
  sbgm::set_num_threads(c.threads);
  const torch::Device device = ex::pick_device(c.train.device);
  // Under torchrun, srun or WORLD_SIZE > 1: one rank of a data-parallel run.
  const auto group = ex::join_launch(device, c.train);
  fs::create_directories(c.train.out);
  const auto out = [&](const char* f) {
    return (fs::path(c.train.out) / f).string();
  };
  const auto kind = sbgm::data::parse_toy2d(c.dataset);

  // ---- process and network
  auto process = seed_preset
                     ? std::make_shared<sbgm::DiscreteProcess>(
                           sbgm::Schedule::sigmoid(c.timesteps, 1e-5, 5e-3))
                     : ex::make_process(c.process, c.timesteps);
  const bool steps_net = process->integer_model_time();
  std::printf("%s\n", process->describe().c_str());
  auto mlp = sbgm::MLPOptions(2).hidden(c.hidden).depth(3);
  if (steps_net) {
    mlp.num_timesteps(process->num_model_steps());
  } else {  // sinusoidal features of t scaled to about [0, 1000]
    mlp.embedding(sbgm::TimeEmbeddingKind::Sinusoidal)
        .time_scale(1000.0 / process->t_max());
  }
  sbgm::MLP net(mlp);
  net->to(device);
  const sbgm::Model model(net, sbgm::Prediction::Epsilon);

  // ---- training: fresh standardized points every step, antithetic times
  sbgm::data::Toy2dSampler data(
      sbgm::data::Toy2dSamplerOptions(kind)
          .fixed_size(seed_preset ? 10000 : 0)
          .seed(c.train.seed + (group ? 1000 + group->rank() : 0))
          .standardize(!seed_preset)
          .device(device));
  const auto& standard = data.standardizer();
  if (group) {  // each rank its own noise and times (the weights: rank 0's)
    torch::manual_seed(c.train.seed + 1 + static_cast<uint64_t>(group->rank()));
  }
  const auto loss_opts =
      sbgm::LossOptions().sampling(sbgm::TimeSampling::Antithetic);
  // The eps-loss of a learned-embedding ReLU MLP has a hand-derived
  // backward (FusedMLPStep), several times faster than autograd.
  std::shared_ptr<sbgm::FusedMLPStep> fused;
  if (steps_net && sbgm::FusedMLPStep::supports(net)) {
    fused = std::make_shared<sbgm::FusedMLPStep>(net);
  }
  auto loss_fn = [&](int64_t) {
    torch::Tensor x0 = data.sample(c.train.batch);
    if (!fused) {
      return sbgm::epsilon_loss(model, *process, x0, loss_opts);
    }
    const auto t =
        sbgm::sample_times(*process, c.train.batch, loss_opts, device);
    const auto noise = torch::randn_like(x0);
    return (*fused)(process->perturb(x0, t, noise), t.to(torch::kLong), noise);
  };
  // The Trainer, resumable: its log and checkpoint in --out; Ctrl-C or
  // SIGTERM saves the checkpoint (then exit_if_done exits, saying so).
  const auto files = ex::run_files(c.train.out, c.train.resume, group);
  const int64_t log_every = std::max<int64_t>(1, c.train.steps / 200);
  sbgm::Trainer trainer(
      net,
      loss_fn,
      ex::trainer_options(c.train)
          .grad_clip(1.0)
          .log_every(log_every)
          .print_every(std::max(log_every, c.train.steps / 10))
          .loss_fn_computes_grads(fused != nullptr)
          .csv_path(files.csv)
          .checkpoint_path(files.checkpoint)
          .resume(c.train.resume)
          .stop_on_signal(true)
          .process_group(group));
  trainer.add_generator("toy2d_sampler", data.generator());
  const ex::RunTimer timer(files, c.train.resume);
  const auto last = trainer.run();
  ex::exit_if_done(trainer, group);
  const auto report = timer.report(trainer, last);
  // The model file holds the EMA's weights, which then sample.
  sbgm::save_model(
      files.model,
      net,
      model.prediction(),
      *process,
      sbgm::SaveModelOptions()
          .data_transform(ex::data_transform(standard))
          .ema(trainer.ema())
          .training(ex::training_info(report)));
  ex::use_ema(trainer, *net);

  // ---- sampling, mapped back to the data's scale, and the distances
  const auto so = ex::sample_options(
      c.sampling, *process, device, c.train.seed + 1, kGifFrames);
  const auto [result, sample_s] =
      ex::sample(model, *process, {c.num_samples, 2}, so);
  const torch::Tensor samples =
      ex::data_transform(standard).apply(result.samples).cpu();
  const int64_t n = std::min(c.num_samples, kMetricPoints);
  auto metrics = ex::toy2d_distances(kind, samples, n, c.train.seed + 2);

  // ---- pictures
  io::write_npy(out("samples.npy"), samples);
  const auto shown =
      sbgm::data::make_toy2d(kind, n, sbgm::make_generator(c.train.seed + 3));
  const double range = 1.15 * shown.abs().max().item<double>();
  auto plot = [&](const torch::Tensor& x,
                  const std::string& title,
                  const torch::Tensor& ref = {}) {
    return ex::scatter(standard.invert(x).slice(0, 0, n), title, range, ref);
  };
  const auto s_m = result.samples.slice(0, 0, n);
  io::save_png(
      out("samples.png"),
      io::panel_grid(
          {ex::scatter(shown, "data", range),
           plot(s_m, c.sampling.sampler + " samples"),
           plot(s_m, "samples over data", shown)},
          3));
  std::vector<torch::Tensor> panels;
  const auto x0 = standard.apply(shown).to(device);
  const auto noise = torch::randn_like(x0);
  for (int64_t k = 0; k < kForwardPanels; ++k) {
    const double u = static_cast<double>(k) / (kForwardPanels - 1);
    double t = process->t_min() + u * (process->t_max() - process->t_min());
    t = steps_net ? std::round(t) : t;
    const auto tt = torch::full({n}, t, x0.options());
    char title[64];
    std::snprintf(title, sizeof title, k == 0 ? "data" : "t = %.3g", t);
    panels.push_back(
        plot(k == 0 ? x0 : process->perturb(x0, tt, noise), title));
  }
  io::save_png(out("forward.png"), io::panel_grid(panels, 5));
  std::vector<torch::Tensor> frames;
  for (size_t k = 0; k < result.trajectory.size(); ++k) {
    frames.push_back(
        plot(result.trajectory[k], "reverse " + std::to_string(k)));
  }
  if (!frames.empty()) {
    io::save_gif(
        out("reverse.gif"),
        frames,
        io::GifOptions().delay_cs(8).last_frame_extra_cs(150));
  }
  ex::save_loss_plot(files);
  metrics.update(
      {{"dataset", c.dataset},
       {"preset", c.preset},
       {"samples_finite", torch::isfinite(samples).all().item<bool>()}});
  metrics.update(
      ex::sampling_json(*process, c.sampling, device, result, sample_s));
  metrics.update(ex::training_json(c.train, report));
  ex::write_json(out("metrics.json"), metrics);
  std::printf(
      "wrote samples.npy, samples.png, forward.png, reverse.gif, "
      "loss.png and metrics.json to %s\n",
      c.train.out.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Config c;
  // DDPM's full 200-step chain: on these sets the ancestral sampler lands
  // closest (bench/README: quality per model evaluation).
  c.sampling.sampler = "ddpm";
  CLI::App app{"sbgm-swiss-roll: a diffusion model on a 2-D toy set"};
  app.add_option(
         "--dataset", c.dataset, "swiss_roll, moons, circles or 8gaussians")
      ->check(CLI::IsMember({"swiss_roll", "moons", "circles", "8gaussians"}))
      ->capture_default_str();
  app.add_option(
         "--preset",
         c.preset,
         "default, or seed: the original program (T = 150 sigmoid "
         "betas 1e-5..5e-3, 64 units, batch 128, 10^4 fixed points)")
      ->check(CLI::IsMember({"default", "seed"}));
  app.add_option("--process", c.process, "noise process")
      ->check(CLI::IsMember(ex::process_names()))
      ->capture_default_str();
  app.add_option("--timesteps", c.timesteps, "T of a discrete schedule")
      ->check(CLI::PositiveNumber);
  app.add_option("--hidden", c.hidden, "MLP width")->check(CLI::PositiveNumber);
  ex::add_training_flags(app, c.train);
  ex::add_sampling_flags(app, c.sampling);
  app.add_option("--num-samples", c.num_samples, "points to sample")
      ->check(CLI::Range(int64_t{2}, int64_t{100000000}));
  app.add_option(
      "--threads",
      c.threads,
      "CPU threads (a 2-D model gains nothing from more)");
  CLI11_PARSE(app, argc, argv);
  return ex::guarded_main([&] { return run(c); });
}
