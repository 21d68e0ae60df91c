// sbgm-mnist: trains a diffusion model on MNIST with a U-Net and samples it.
//
//   --mode vp    (default) VP SDE; --prediction v (default), eps or x0;
//                --weighting minsnr (min-SNR-5, default) or unit; [-1, 1].
//   --mode ddpm  a 1000-step cosine (or --schedule linear) DDPM schedule.
//   --mode ve    VE SDE (sigma = 25), denoising score matching with a score
//                U-Net divided by sigma(t); [0, 1].
//   --mode edm   EDM: the U-Net preconditioned, x0 loss with EDM's weight.
// The default recipe and sampler won bench/README's search. Writes
// samples.npy, samples.png, denoise.png, loss.png, loss.csv, checkpoint.pt,
// model.safetensors (for sbgm-sample) and metrics.json into --out;
// --classifier adds classifier-feature quality figures, --likelihood bits/dim.

#include "../common/common.h"

namespace ex = sbgm::examples;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

struct Config {
  std::string data = "data/mnist";
  std::string mode = "vp";
  std::string schedule = "cosine";
  std::string prediction = "v";
  std::string weighting = "minsnr";
  double gamma = 5.0;
  std::string channels = "16,32,64";
  int64_t epochs = 0;
  ex::TrainingFlags train{6500, 32, 2e-3, "mnist-out", "cpu"};
  ex::SamplingFlags sampling{"dpmpp_2m_sde", "logsnr", 50};  // bench/README
  int64_t num_samples = 64;
  bool amp = false;
  bool likelihood = false;
  int64_t likelihood_images = 32;
  double ode_tol = 1e-4;
  std::string classifier;
};

// What a mode trains: process, prediction, network, loss and data range.
struct Recipe {
  std::shared_ptr<sbgm::NoiseProcess> process;
  sbgm::Prediction prediction = sbgm::Prediction::Epsilon;
  sbgm::UNetOptions net{1};
  sbgm::LossOptions loss;
  bool unit_range = false;  // data in [0, 1] (else [-1, 1])
  bool edm = false;
  sbgm::DataTransform to_data;  // the samples mapped to [0, 1]
};

Recipe recipe(const Config& c) {
  Recipe r;
  r.net.channels(ex::int_list(c.channels));
  if (c.mode == "ve") {
    r.process = ex::make_process("ve");
    r.prediction = sbgm::Prediction::Score;
    auto p = r.process;
    r.net.marginal_std([p](const torch::Tensor& t) { return p->sigma(t); });
    r.loss.target(sbgm::Prediction::Score)
        .weighting(sbgm::LossWeighting::SigmaSquared);
    r.unit_range = true;
  } else if (c.mode == "edm") {
    r.process = ex::make_process("edm");
    r.prediction = sbgm::Prediction::X0;
    r.loss.target(sbgm::Prediction::X0)
        .weighting(sbgm::LossWeighting::EDM)
        .sampling(sbgm::TimeSampling::LogNormal);
    r.edm = true;
  } else {
    r.process = ex::make_process(c.mode == "vp" ? "vp" : c.schedule, 1000);
    if (c.mode == "ddpm") {  // step indices 0..999 into sinusoidal features
      r.net.time_embedding(sbgm::TimeEmbeddingKind::Sinusoidal);
    }
    r.prediction = sbgm::prediction_from_string(c.prediction);
    r.loss.target(r.prediction)
        .weighting(
            c.weighting == "minsnr" ? sbgm::LossWeighting::MinSNR
                                    : sbgm::LossWeighting::Unit)
        .min_snr_gamma(c.gamma);
  }
  r.to_data = sbgm::DataTransform().clamp(true).scale(r.unit_range ? 1 : 0.5);
  r.to_data.shift({r.unit_range ? 0.0 : 0.5});
  return r;
}

int run(Config c) {
  torch::manual_seed(c.train.seed);
  const torch::Device device = ex::pick_device(c.train.device);
  // Under torchrun, srun or WORLD_SIZE > 1: one rank of a data-parallel run.
  const auto group = ex::join_launch(device, c.train);
  const bool amp = c.amp && device.is_cuda();
  const auto [data, test] = ex::load_mnist_splits(c.data);
  const auto r = recipe(c);
  auto to_model = [&](const torch::Tensor& x01) {
    return r.unit_range ? x01 : x01 * 2 - 1;
  };
  const int64_t n_train = data.images.size(0);
  const auto train_x = to_model(data.images).to(device);
  const int64_t steps =
      c.epochs > 0 ? c.epochs * ((n_train + c.train.batch - 1) / c.train.batch)
                   : c.train.steps;
  if (!group || group->is_main()) {
    std::cout << n_train << " images; " << r.process->describe() << ", "
              << steps << " steps of batch " << c.train.batch << " on "
              << device << (amp ? " (bf16 autocast)\n" : "\n") << std::flush;
  }

  sbgm::UNet net(r.net);
  net->to(device);
  sbgm::ModelFn raw =
      [net, amp](const torch::Tensor& x, const torch::Tensor& t) mutable {
        sbgm::AutocastGuard scope(amp);  // bf16 autocast on CUDA
        return net->forward(x, t).to(x.scalar_type());
      };
  const sbgm::Model model =
      r.edm ? sbgm::edm_precondition(raw, r.process, 0.5)
            : sbgm::Model(raw, r.prediction, net->discrete_steps());

  // ---- training: the Trainer, resumable from its files in --out
  if (group) {  // each rank its own noise (the weights are rank 0's)
    torch::manual_seed(c.train.seed + 1 + static_cast<uint64_t>(group->rank()));
  }
  ex::Minibatches batches(n_train, c.train.batch, c.train.seed, group, device);
  const auto files = ex::run_files(c.train.out, c.train.resume, group);
  const int64_t log_every = std::clamp<int64_t>(steps / 100, 1, 100);
  sbgm::Trainer trainer(
      net,
      [&](int64_t) {
        return sbgm::diffusion_loss(
            model, *r.process, train_x.index_select(0, batches.next()), r.loss);
      },
      ex::trainer_options(c.train)
          .steps(steps)
          .grad_clip(0)  // fused into FlatAdam
          .log_every(log_every)
          .print_every(std::max(log_every, steps / 10))
          .checkpoint_every(std::max<int64_t>(500, steps / 10))
          .csv_path(files.csv)
          .checkpoint_path(files.checkpoint)
          .resume(c.train.resume)
          .stop_on_signal(true)  // Ctrl-C, SIGTERM: save, then exit_if_done
          .process_group(group),
      std::make_shared<sbgm::FlatAdam>(
          net->parameters(),
          sbgm::FlatAdamOptions(c.train.lr).max_grad_norm(1.0)));
  batches.add_state_to(trainer);  // data-parallel: the epoch's shard
  const ex::RunTimer timer(files, c.train.resume);
  const auto last = trainer.run();
  ex::exit_if_done(trainer, group);
  const auto report = timer.report(trainer, last);
  sbgm::save_model(  // the EMA's weights, for sbgm-sample
      files.model,
      net,
      r.prediction,
      *r.process,
      sbgm::SaveModelOptions()
          .sample_shape({1, 28, 28})
          .edm_sigma_data(r.edm ? 0.5 : 0.0)
          .data_transform(r.to_data)
          .ema(trainer.ema())
          .training(ex::training_info(report)));
  ex::use_ema(trainer, *net);

  // ---- sampling
  const auto so =
      ex::sample_options(c.sampling, *r.process, device, c.train.seed + 1, 7);
  const auto [result, sample_s] =
      ex::sample(model, *r.process, {c.num_samples, 1, 28, 28}, so);
  const auto samples =
      r.to_data.apply(result.samples).to(torch::kCPU, torch::kFloat);
  ex::save_image_samples(c.train.out, samples, result.trajectory, r.to_data);
  ex::save_loss_plot(files);

  json m = {
      {"mode", c.mode},
      {"prediction", sbgm::to_string(model.prediction())},
      {"loss_target", sbgm::to_string(r.loss.target())},
      {"weighting", c.weighting},
      {"channels", c.channels},
      {"train_images", n_train}};
  m.update(ex::sampling_json(*r.process, c.sampling, device, result, sample_s));
  m.update(ex::training_json(c.train, report));
  m.update(ex::image_stats(samples));
  if (!c.classifier.empty() && test) {
    m.update(
        ex::mnist_quality(c.classifier, samples, data.images, test->images));
  }
  if (c.likelihood && test) {
    m.update(ex::mnist_bits_per_dim(
        model,
        *r.process,
        test->images,
        c.likelihood_images,
        to_model,
        r.unit_range ? 1.0 : 2.0,
        c.ode_tol,
        device));
  }
  ex::write_json(c.train.out + "/metrics.json", m);
  std::printf(
      "wrote samples.npy, samples.png, denoise.png, loss.png, metrics.json to "
      "%s\n",
      c.train.out.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"sbgm-mnist: a diffusion model on MNIST"};
  Config c;
  app.add_option(
         "--data", c.data, "MNIST directory (scripts/fetch-mnist.sh DIR)")
      ->capture_default_str();
  app.add_option("--mode", c.mode, "ve, vp, ddpm or edm")
      ->check(CLI::IsMember({"ve", "vp", "ddpm", "edm"}))
      ->capture_default_str();
  app.add_option("--prediction", c.prediction, "vp, ddpm: eps, v or x0")
      ->check(CLI::IsMember({"eps", "v", "x0"}));
  app.add_option("--weighting", c.weighting, "vp, ddpm: unit or minsnr")
      ->check(CLI::IsMember({"unit", "minsnr"}));
  app.add_option("--min-snr-gamma", c.gamma, "gamma of minsnr");
  app.add_option("--channels", c.channels, "U-Net channels per level");
  app.add_option("--schedule", c.schedule, "ddpm mode: cosine or linear")
      ->check(CLI::IsMember({"cosine", "linear"}));
  app.add_option(
         "--epochs", c.epochs, "passes over the data (overrides --steps)")
      ->check(CLI::NonNegativeNumber);
  ex::add_training_flags(app, c.train);
  ex::add_sampling_flags(app, c.sampling);
  app.add_option("--num-samples", c.num_samples, "images to generate")
      ->check(CLI::Range(int64_t{2}, int64_t{1} << 20));
  app.add_flag("--amp", c.amp, "bf16 autocast on CUDA");
  app.add_flag("--likelihood", c.likelihood, "bits/dim of test images");
  app.add_option(
         "--likelihood-images", c.likelihood_images, "images for --likelihood")
      ->check(CLI::PositiveNumber);
  app.add_option("--ode-tol", c.ode_tol, "rtol = atol of the likelihood ODE")
      ->check(CLI::PositiveNumber);
  app.add_option(
      "--classifier", c.classifier, "weights from sbgm-mnist-classifier");
  CLI11_PARSE(app, argc, argv);
  return ex::guarded_main([&] { return run(c); });
}
