// sbgm-swiss-roll: trains a diffusion model on a 2-D toy set (swiss roll,
// moons or circles), samples from it and writes pictures and metrics.
//
//   sbgm-swiss-roll --out runs/swiss          # the default: < 1 minute on CPU
//   sbgm-swiss-roll --preset seed --out runs/seed
//
// Discrete samplers (ddpm, ddim) train an eps-network on a DDPM schedule with
// a learned per-step embedding; continuous ones (em, pc, ode) train it on the
// VP SDE with sinusoidal time features. Outputs in --out: samples.npy,
// samples.png, forward.png, reverse.gif, loss.png, metrics.json.

#include <ATen/Context.h>
#include <sbgm/sbgm.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <type_traits>
#include <vector>

namespace fs = std::filesystem;
namespace io = sbgm::io;
namespace smp = sbgm::samplers;

namespace {

// Points drawn for the metrics (samples and each fresh draw of the data).
constexpr int64_t kMetricPoints = 2000;
// Panels of the forward-process figure.
constexpr int64_t kForwardPanels = 20;
// Frames of the reverse-process animation (about).
constexpr int64_t kGifFrames = 40;
// Plot range of every panel.
constexpr double kRange = 1.8;

struct Config {
  std::string dataset = "swiss_roll";
  std::string preset = "default";
  int64_t steps = 0;  // 0: the preset's
  int64_t batch = 0;
  std::string schedule;  // "": the preset's
  int64_t timesteps = 0;
  std::string sampler = "ddpm";
  int64_t sample_steps = 0;
  int64_t num_samples = kMetricPoints;
  int64_t hidden = 0;
  double lr = 1e-3;
  std::string device = "auto";
  uint64_t seed = 0;
  bool resume = false;
  bool cuda_graph = false;
  std::string out = "swiss-roll-out";
  int threads = 1;
};

// The defaults reach the prior (alpha_bar_T ~ 1e-3); the seed's set-up
// (T = 150, sigmoid 1e-5 -> 5e-3, 64 units, a fixed set of 10^4 points)
// stops at alpha_bar_T ~ 0.69, far from N(0, I).
void apply_preset(Config& c) {
  const bool seed = c.preset == "seed";
  auto pick = [](auto& v, auto dflt) {
    if (v == std::remove_reference_t<decltype(v)>()) {
      v = dflt;
    }
  };
  pick(c.steps, int64_t{20000});
  pick(c.batch, int64_t{seed ? 128 : 256});
  pick(c.schedule, std::string("sigmoid"));
  pick(c.timesteps, int64_t{seed ? 150 : 200});
  pick(c.hidden, int64_t{seed ? 64 : 128});
}

sbgm::Schedule make_schedule(const Config& c) {
  if (c.preset == "seed")
    return sbgm::Schedule::sigmoid(c.timesteps, 1e-5, 5e-3);
  if (c.schedule == "linear")
    return sbgm::Schedule::linear(c.timesteps, 1e-4, 14.0 / c.timesteps);
  if (c.schedule == "cosine")
    return sbgm::Schedule::cosine(c.timesteps);
  if (c.schedule == "sigmoid")
    return sbgm::Schedule::sigmoid(c.timesteps, 1e-4, 12.0 / c.timesteps);
  TORCH_CHECK(false, "unknown --schedule '", c.schedule, "'");
}

torch::Tensor plot(
    const torch::Tensor& pts,
    const std::string& title,
    const torch::Tensor& reference = {}) {
  std::vector<io::PointSet> sets;
  if (reference.defined())
    sets.push_back({reference, {190, 190, 190}});
  sets.push_back({pts, {214, 39, 40}});
  return io::scatter_plot(
      sets, io::ScatterOptions().range(-kRange, kRange).title(title));
}

}  // namespace

int main(int argc, char** argv) {
  Config c;
  CLI::App app{
      "sbgm-swiss-roll: train a diffusion model on a 2-D toy set, sample "
      "it, and write samples.npy, samples.png, forward.png, reverse.gif, "
      "loss.png and metrics.json to --out."};
  app.add_option("--dataset", c.dataset, "swiss_roll, moons or circles")
      ->check(CLI::IsMember({"swiss_roll", "moons", "circles", "8gaussians"}));
  app.add_option(
         "--preset",
         c.preset,
         "default: a schedule that reaches N(0, I) and a 128-unit MLP; "
         "seed: the original program's set-up (T = 150 sigmoid betas "
         "1e-5..5e-3, 64 units, batch 128, a fixed set of 10^4 points), "
         "whose last step keeps 83% of the signal")
      ->check(CLI::IsMember({"default", "seed"}));
  app.add_option("--steps", c.steps, "training steps (default 20000)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--batch", c.batch, "batch size (default 256; seed 128)")
      ->check(CLI::NonNegativeNumber);
  app.add_option(
         "--schedule",
         c.schedule,
         "beta schedule for ddpm/ddim: linear, sigmoid or cosine "
         "(default sigmoid)")
      ->check(CLI::IsMember({"linear", "sigmoid", "cosine"}));
  app.add_option("--timesteps", c.timesteps, "T (default 200; seed 150)")
      ->check(CLI::NonNegativeNumber);
  app.add_option(
         "--sampler",
         c.sampler,
         "ddpm or ddim (discrete schedule), em, pc or ode (VP SDE, trained "
         "with continuous time)")
      ->check(CLI::IsMember({"ddpm", "ddim", "em", "pc", "ode"}));
  app.add_option(
      "--sample-steps",
      c.sample_steps,
      "sampler steps (ddim/em/pc/ode; default: T for ddim, 500 for em/pc, "
      "adaptive for ode)");
  app.add_option("--num-samples", c.num_samples, "points to sample")
      ->check(CLI::Range(int64_t{2}, int64_t{100000000}));
  app.add_option("--hidden", c.hidden, "MLP width (default 128; seed 64)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--lr", c.lr, "Adam learning rate");
  app.add_option("--device", c.device, "cpu, cuda or auto");
  app.add_option("--seed", c.seed, "random seed");
  app.add_flag(
      "--resume",
      c.resume,
      "continue from OUT/checkpoint.pt when it exists (else start afresh)");
  app.add_option("--out", c.out, "output directory");
  app.add_flag(
      "--cuda-graph",
      c.cuda_graph,
      "on CUDA, capture one sampler step as a CUDA graph and replay it "
      "(ddpm, ddim, em)");
  app.add_option(
      "--threads",
      c.threads,
      "CPU threads (default 1: a 2-D model is too small to gain from more)");
  CLI11_PARSE(app, argc, argv);
  sbgm::tune_cpu_allocator();  // reuse freed tensor memory (see sbgm/perf.h)
  apply_preset(c);
  if (c.cuda_graph && c.sampler != "ddpm" && c.sampler != "ddim" &&
      c.sampler != "em") {
    std::fprintf(
        stderr,
        "sbgm-swiss-roll: --cuda-graph works with --sampler ddpm, ddim or "
        "em, got %s\n",
        c.sampler.c_str());
    return 1;
  }

  try {
    torch::manual_seed(c.seed);
    sbgm::set_num_threads(c.threads);
    const torch::Device device =
        c.device == "auto"
            ? (torch::cuda::is_available() ? torch::Device(torch::kCUDA)
                                           : torch::Device(torch::kCPU))
            : torch::Device(c.device);
    if (device.is_cuda()) {
      at::globalContext().setBenchmarkCuDNN(true);
    }
    fs::create_directories(c.out);
    const bool continuous =
        c.sampler == "em" || c.sampler == "pc" || c.sampler == "ode";
    const bool seed_preset = c.preset == "seed";
    const auto kind = sbgm::data::parse_toy2d(c.dataset);

    // ---- model and training objective
    sbgm::Schedule schedule = make_schedule(c);
    sbgm::VPSDE sde;  // beta 0.1 -> 20, used by em/pc/ode
    if (continuous) {
      std::printf("VP SDE (beta 0.1 -> 20), sinusoidal time features\n");
    } else {
      std::printf(
          "%s schedule, T = %lld: alpha_bar_T = %.3g (SNR %.3g)%s\n",
          c.schedule.c_str(),
          static_cast<long long>(c.timesteps),
          schedule.terminal_alpha_bar(),
          schedule.terminal_snr(),
          schedule.reaches_prior() ? "" : "  -- does not reach N(0, I)");
    }
    auto mlp_opts = sbgm::MLPOptions(2).hidden(c.hidden).depth(3);
    if (continuous)
      mlp_opts.embedding(sbgm::TimeEmbeddingKind::Sinusoidal).time_scale(1000);
    else
      mlp_opts.num_timesteps(c.timesteps);
    sbgm::MLP net(mlp_opts);
    net->to(device);
    sbgm::Model model(net, sbgm::Prediction::Epsilon);
    schedule = schedule.to(device);

    sbgm::data::Toy2dSampler data(sbgm::data::Toy2dSamplerOptions(kind)
                                      .fixed_size(seed_preset ? 10000 : 0)
                                      .seed(c.seed)
                                      .device(device));
    sbgm::ScheduleLossOptions disc_loss;
    disc_loss.sampling(sbgm::TimeSampling::Antithetic);
    sbgm::SDELossOptions cont_loss;
    cont_loss.sampling(sbgm::TimeSampling::Antithetic);
    const int64_t batch = c.batch;
    // The discrete eps-loss of a learned-embedding ReLU MLP has a
    // hand-derived backward (FusedMLPStep), several times faster than
    // autograd for a network this small.
    std::unique_ptr<sbgm::FusedMLPStep> fused;
    if (!continuous && sbgm::FusedMLPStep::supports(net)) {
      fused = std::make_unique<sbgm::FusedMLPStep>(net);
    }
    auto loss_fn = [&](int64_t) {
      torch::Tensor x0 = data.sample(batch);
      if (fused) {
        const torch::Tensor t = sbgm::sample_timesteps(
            batch, c.timesteps, sbgm::TimeSampling::Antithetic, device);
        const torch::Tensor noise = torch::randn_like(x0);
        return (*fused)(schedule.q_sample(x0, t, noise), t, noise);
      }
      return continuous ? sbgm::epsilon_loss(model, sde, x0, cont_loss)
                        : sbgm::epsilon_loss(model, schedule, x0, disc_loss);
    };

    std::vector<double> losses;
    sbgm::Trainer trainer(
        net,
        loss_fn,
        sbgm::TrainerOptions(c.steps)
            .lr(c.lr)
            .grad_clip(1.0)
            .ema_decay(seed_preset ? 0.0 : 0.995)
            .log_every(std::max<int64_t>(1, c.steps / 200))
            .csv_path((fs::path(c.out) / "loss.csv").string())
            .checkpoint_path((fs::path(c.out) / "checkpoint.pt").string())
            .resume(c.resume)
            .loss_fn_computes_grads(fused != nullptr));
    trainer.on_log(
        [&](const sbgm::TrainLogEntry& e) { losses.push_back(e.loss); });
    if (!c.resume) {
      std::error_code ec;
      fs::remove(fs::path(c.out) / "checkpoint.pt", ec);
      fs::remove(fs::path(c.out) / "loss.csv", ec);
    }
    const auto t0 = std::chrono::steady_clock::now();
    const sbgm::TrainLogEntry last = trainer.run();
    const double train_s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
            .count();
    std::printf(
        "trained %lld steps in %.1f s (final loss %.4f)\n",
        static_cast<long long>(c.steps),
        train_s,
        last.loss);
    if (trainer.ema() != nullptr)
      trainer.ema()->copy_to(*net);
    net->eval();

    // ---- sampling
    auto gen = torch::make_generator<torch::CPUGeneratorImpl>(c.seed + 1);
    smp::CommonOptions common;
    common.device(device);
    if (device.is_cpu())
      common.generator(gen);
    common.cuda_graph(c.cuda_graph);  // no effect on CPU
    const int64_t n = c.num_samples;
    int64_t traj_steps = c.timesteps;
    smp::SampleResult result;
    const auto s0 = std::chrono::steady_clock::now();
    if (c.sampler == "ddpm") {
      common.trajectory_every(std::max<int64_t>(1, traj_steps / kGifFrames));
      result = smp::ddpm(model, schedule, {n, 2}, {}, common);
    } else if (c.sampler == "ddim") {
      traj_steps = c.sample_steps > 0 ? c.sample_steps : c.timesteps;
      common.trajectory_every(std::max<int64_t>(1, traj_steps / kGifFrames));
      result = smp::ddim(
          model,
          schedule,
          {n, 2},
          smp::DDIMOptions().num_steps(traj_steps),
          common);
    } else if (c.sampler == "em" || c.sampler == "pc") {
      traj_steps = c.sample_steps > 0 ? c.sample_steps : 500;
      common.trajectory_every(std::max<int64_t>(1, traj_steps / kGifFrames));
      if (c.sampler == "em")
        result = smp::euler_maruyama(
            model,
            sde,
            {n, 2},
            smp::EulerMaruyamaOptions().num_steps(traj_steps),
            common);
      else
        result = smp::predictor_corrector(
            model,
            sde,
            {n, 2},
            smp::PredictorCorrectorOptions().num_steps(traj_steps),
            common);
    } else {
      smp::ODEOptions o;
      if (c.sample_steps > 0)
        o.method(smp::ODEMethod::Heun).num_steps(c.sample_steps);
      traj_steps = c.sample_steps > 0 ? c.sample_steps : 1;
      common.trajectory_every(std::max<int64_t>(1, traj_steps / kGifFrames));
      result = smp::ode(model, sde, {n, 2}, o, common);
    }
    const double sample_s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - s0)
            .count();
    const torch::Tensor samples = result.samples.to(torch::kCPU);
    std::printf(
        "sampled %lld points with %s (%lld model evaluations) in %.2f s\n",
        static_cast<long long>(n),
        c.sampler.c_str(),
        static_cast<long long>(result.nfe),
        sample_s);

    // ---- metrics: distances to fresh data and their floors
    auto mgen = torch::make_generator<torch::CPUGeneratorImpl>(c.seed + 2);
    // Distances on min(num_samples, 2000) points against as many fresh ones.
    const int64_t metric_points = std::min(n, kMetricPoints);
    const torch::Tensor fresh1 =
        sbgm::data::make_toy2d(kind, metric_points, mgen);
    const torch::Tensor fresh2 =
        sbgm::data::make_toy2d(kind, metric_points, mgen);
    const torch::Tensor s_m = samples.slice(0, 0, metric_points);
    auto sw = [&](const torch::Tensor& a, const torch::Tensor& b) {
      auto g = torch::make_generator<torch::CPUGeneratorImpl>(7);
      return sbgm::metrics::sliced_wasserstein(a, b, 256, g).item<double>();
    };
    auto mmd = [&](const torch::Tensor& a, const torch::Tensor& b) {
      return sbgm::metrics::mmd_rbf(a, b).item<double>();
    };
    const bool finite = torch::isfinite(samples).all().item<bool>();
    const double sw_s = sw(s_m, fresh1), sw_floor = sw(fresh2, fresh1);
    const double mmd_s = mmd(s_m, fresh1), mmd_floor = mmd(fresh2, fresh1);
    std::printf(
        "sliced Wasserstein %.4f (floor %.4f, ratio %.2f); MMD %.2e (floor "
        "%.2e)\n",
        sw_s,
        sw_floor,
        sw_s / sw_floor,
        mmd_s,
        mmd_floor);

    // ---- files
    const fs::path out(c.out);
    io::write_npy((out / "samples.npy").string(), samples);
    const torch::Tensor shown_data = fresh1;
    io::save_png(
        (out / "samples.png").string(),
        io::panel_grid(
            {plot(shown_data, "data"),
             plot(s_m, c.sampler + " samples"),
             plot(s_m, "samples over data", shown_data)},
            3));

    std::vector<torch::Tensor> panels;
    {
      const torch::Tensor x0 = fresh1.to(device);
      const torch::Tensor noise = torch::randn_like(x0);
      for (int64_t k = 0; k < kForwardPanels; ++k) {
        torch::Tensor xt;
        char title[64];
        if (continuous) {
          const double t = static_cast<double>(k) / (kForwardPanels - 1);
          xt = k == 0 ? x0 : sde.perturb(x0, t, noise);
          std::snprintf(title, sizeof title, "t = %.2f", t);
        } else {
          const int64_t t = k * (c.timesteps - 1) / (kForwardPanels - 1);
          xt = schedule.q_sample(
              x0,
              torch::full({x0.size(0)}, t, x0.options().dtype(torch::kLong)),
              noise);
          std::snprintf(
              title, sizeof title, "q(x_%lld)", static_cast<long long>(t));
        }
        panels.push_back(plot(xt.cpu(), title));
      }
    }
    io::save_png((out / "forward.png").string(), io::panel_grid(panels, 5));

    std::vector<torch::Tensor> frames;
    for (size_t k = 0; k < result.trajectory.size(); ++k) {
      char title[64];
      std::snprintf(
          title,
          sizeof title,
          "reverse %zu/%zu",
          k,
          result.trajectory.size() - 1);
      frames.push_back(
          plot(result.trajectory[k].slice(0, 0, kMetricPoints).cpu(), title));
    }
    if (!frames.empty())
      io::save_gif(
          (out / "reverse.gif").string(),
          frames,
          io::GifOptions().delay_cs(8).last_frame_extra_cs(150));
    if (!losses.empty())
      io::save_png(
          (out / "loss.png").string(),
          io::line_plot(
              losses,
              io::LinePlotOptions().log_y(true).title("training loss (log)")));

    nlohmann::json m;
    m["dataset"] = c.dataset;
    m["preset"] = c.preset;
    m["sampler"] = c.sampler;
    m["steps"] = c.steps;
    m["batch"] = c.batch;
    m["timesteps"] = c.timesteps;
    m["schedule"] = continuous ? std::string("vp_sde") : c.schedule;
    m["terminal_alpha_bar"] = continuous
                                  ? sde.mean_coeff(1.0) * sde.mean_coeff(1.0)
                                  : schedule.terminal_alpha_bar();
    m["train_seconds"] = train_s;
    m["sample_seconds"] = sample_s;
    m["nfe"] = result.nfe;
    m["final_loss"] = last.loss;
    m["num_samples"] = n;
    m["metric_points"] = metric_points;
    m["samples_finite"] = finite;
    m["sliced_wasserstein"] = sw_s;
    m["sliced_wasserstein_floor"] = sw_floor;
    m["sliced_wasserstein_ratio"] = sw_s / sw_floor;
    m["mmd"] = mmd_s;
    m["mmd_floor"] = mmd_floor;
    m["device"] = device.str();
    std::ofstream((out / "metrics.json").string()) << m.dump(2) << "\n";
    std::printf(
        "wrote "
        "%s/"
        "{samples.npy,samples.png,forward.png,reverse.gif,loss.png,metrics."
        "json}\n",
        c.out.c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sbgm-swiss-roll: %s\n", e.what());
    return 1;
  }
}
