// sbgm-mnist: trains a diffusion model on MNIST with a U-Net and samples it.
//
//   --mode ve    VE SDE (sigma^t, sigma = 25), denoising score matching, a
//                score U-Net whose output is divided by sigma(t) (the seed
//                and the score-SDE tutorial); data in [0, 1].
//   --mode vp    VP SDE, eps-prediction; data in [-1, 1].
//   --mode ddpm  a 1000-step cosine (or --schedule linear) DDPM schedule,
//                eps-prediction; data in [-1, 1].
//
// Writes samples.npy (N x 1 x 28 x 28 in [0, 1]), samples.png, denoise.png,
// loss.png, loss.csv, checkpoint.pt and metrics.json into --out; with
// --classifier (weights from sbgm-mnist-classifier) the Fréchet distance
// of classifier features against the test split (and its floor) and the
// classifier score; with --likelihood, bits/dim of test images.

#include "../common/common.h"

namespace ex = sbgm::examples;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

struct Config {
  std::string data = "data/mnist";
  std::string mode = "ve";
  std::string schedule = "cosine";
  int64_t epochs = 0;
  int64_t steps = 3000;
  int64_t batch = 32;
  double lr = 2e-3;
  double ema = 0.999;
  ex::SamplingFlags sampling;
  int64_t num_samples = 64;
  std::string device = "cpu";
  bool amp = false;
  bool resume = false;
  std::string out = "mnist-out";
  bool likelihood = false;
  int64_t likelihood_images = 32;
  double ode_tol = 1e-4;
  std::string classifier;
  uint64_t seed = 0;
};

// What a mode trains: the process, the network's prediction and options,
// the loss, and the data's range.
struct Recipe {
  std::shared_ptr<sbgm::NoiseProcess> process;
  sbgm::Prediction prediction;
  sbgm::UNetOptions net{1};
  sbgm::LossOptions loss;
  bool unit_range;  // data in [0, 1] (else [-1, 1])
  std::string sampler;
};

Recipe recipe(const Config& c) {
  Recipe r;
  if (c.mode == "ve") {
    r.process = ex::make_process("ve", 0, 25.0);
    r.prediction = sbgm::Prediction::Score;
    auto p = r.process;
    r.net.marginal_std([p](const torch::Tensor& t) { return p->sigma(t); });
    r.loss.target(sbgm::Prediction::Score)
        .weighting(sbgm::LossWeighting::SigmaSquared);
    r.unit_range = true;
    r.sampler = "em";
  } else if (c.mode == "vp") {
    r.process = ex::make_process("vp");
    r.prediction = sbgm::Prediction::Epsilon;
    r.unit_range = false;
    r.sampler = "em";
  } else {
    // Step indices 0..999 straight into sinusoidal features.
    r.process = ex::make_process(c.schedule, 1000);
    r.prediction = sbgm::Prediction::Epsilon;
    r.net.time_embedding(sbgm::TimeEmbeddingKind::Sinusoidal);
    r.unit_range = false;
    r.sampler = "ddim";
  }
  return r;
}

int run(Config c) {
  torch::manual_seed(c.seed);
  const torch::Device device = ex::pick_device(c.device);
  const bool amp = c.amp && device.is_cuda();
  const auto [data, test] = ex::load_mnist_splits(c.data);
  const auto r = recipe(c);
  if (c.sampling.sampler == "default") {
    c.sampling.sampler = r.sampler;
  }
  auto to_model = [&](const torch::Tensor& x01) {
    return r.unit_range ? x01 : x01 * 2 - 1;
  };
  auto to_unit = [&](const torch::Tensor& x) {
    return (r.unit_range ? x : (x + 1) / 2).clamp(0, 1);
  };
  const int64_t n_train = data.images.size(0);
  const auto train_x = to_model(data.images).to(device);
  const int64_t steps =
      c.epochs > 0 ? c.epochs * ((n_train + c.batch - 1) / c.batch) : c.steps;
  std::printf(
      "%lld images; %s, %lld steps of batch %lld on %s%s\n",
      static_cast<long long>(n_train),
      r.process->describe().c_str(),
      static_cast<long long>(steps),
      static_cast<long long>(c.batch),
      device.str().c_str(),
      amp ? " (bf16 autocast)" : "");

  sbgm::UNet net(r.net);
  net->to(device);
  const sbgm::Model model(
      [net, amp](const torch::Tensor& x, const torch::Tensor& t) mutable {
        sbgm::AutocastGuard scope(amp);  // bf16 autocast on CUDA
        return net->forward(x, t).to(x.scalar_type());
      },
      r.prediction,
      net->discrete_steps());

  // ---- training
  const auto out = [&](const char* name) {
    return (fs::path(c.out) / name).string();
  };
  const auto idx = torch::TensorOptions().dtype(torch::kLong).device(device);
  auto optimizer = std::make_shared<sbgm::FlatAdam>(
      net->parameters(), sbgm::FlatAdamOptions(c.lr).max_grad_norm(1.0));
  const auto report = ex::train(
      net.ptr(),
      [&](int64_t) {
        auto pick = torch::randint(n_train, {c.batch}, idx);
        return sbgm::diffusion_loss(
            model, *r.process, train_x.index_select(0, pick), r.loss);
      },
      sbgm::TrainerOptions(steps)
          .lr(c.lr)
          .grad_clip(0)  // fused into FlatAdam
          .ema_decay(c.ema)
          .log_every(std::clamp<int64_t>(steps / 100, 1, 100))
          .checkpoint_every(std::max<int64_t>(500, steps / 10)),
      c.out,
      c.resume,
      optimizer);
  std::printf(
      "trained to step %lld in %.1f s; final loss %.4f\n",
      static_cast<long long>(report.steps),
      report.seconds,
      report.final_loss);

  // ---- sampling
  const auto so =
      ex::sample_options(c.sampling, *r.process, device, c.seed + 1, 7);
  const auto [result, sample_s] =
      ex::sample(model, *r.process, {c.num_samples, 1, 28, 28}, so);
  const auto samples = to_unit(result.samples).to(torch::kCPU, torch::kFloat);
  std::vector<torch::Tensor> frames;
  for (const auto& x : result.trajectory) {
    frames.push_back(to_unit(x));
  }
  ex::save_image_samples(c.out, samples, frames);
  ex::save_loss_plot(out("loss.png"), report.losses);

  json m = {
      {"mode", c.mode},
      {"process", r.process->describe()},
      {"sampler", c.sampling.sampler},
      {"grid", c.sampling.grid},
      {"device", device.str()},
      {"train_images", n_train},
      {"steps", report.steps},
      {"batch", c.batch},
      {"lr", c.lr},
      {"train_seconds", report.seconds},
      {"final_loss", report.final_loss},
      {"num_samples", c.num_samples},
      {"nfe", result.nfe},
      {"sample_seconds", sample_s}};
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
  ex::write_json(out("metrics.json"), m);
  std::printf(
      "wrote samples.npy, samples.png, denoise.png, loss.png, metrics.json to "
      "%s\n",
      c.out.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"sbgm-mnist: a diffusion model on MNIST"};
  Config c;
  app.add_option(
         "--data", c.data, "MNIST directory (scripts/fetch-mnist.sh DIR)")
      ->capture_default_str();
  app.add_option("--mode", c.mode, "ve, vp or ddpm")
      ->check(CLI::IsMember({"ve", "vp", "ddpm"}))
      ->capture_default_str();
  app.add_option("--schedule", c.schedule, "ddpm mode: cosine or linear")
      ->check(CLI::IsMember({"cosine", "linear"}));
  app.add_option(
         "--epochs", c.epochs, "passes over the data (overrides --steps)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--steps", c.steps, "optimizer steps")
      ->check(CLI::PositiveNumber);
  app.add_option("--batch", c.batch, "minibatch size")
      ->check(CLI::PositiveNumber);
  app.add_option("--lr", c.lr, "Adam learning rate")
      ->check(CLI::PositiveNumber);
  app.add_option("--ema", c.ema, "EMA decay (0: none)")
      ->check(CLI::Range(0.0, 0.99999));
  c.sampling.steps = 300;
  ex::add_sampling_flags(app, c.sampling);
  app.add_option("--num-samples", c.num_samples, "images to generate")
      ->check(CLI::Range(int64_t{2}, int64_t{1} << 20));
  app.add_option("--device", c.device, "cpu, cuda, cuda:1, auto");
  app.add_flag("--amp", c.amp, "bf16 autocast on CUDA");
  app.add_flag("--resume", c.resume, "continue from OUT/checkpoint.pt");
  app.add_option("--out", c.out, "output directory")->capture_default_str();
  app.add_flag("--likelihood", c.likelihood, "bits/dim of test images");
  app.add_option(
         "--likelihood-images", c.likelihood_images, "images for --likelihood")
      ->check(CLI::PositiveNumber);
  app.add_option("--ode-tol", c.ode_tol, "rtol = atol of the likelihood ODE")
      ->check(CLI::PositiveNumber);
  app.add_option(
      "--classifier", c.classifier, "weights from sbgm-mnist-classifier");
  app.add_option("--seed", c.seed, "random seed");
  CLI11_PARSE(app, argc, argv);
  return ex::guarded_main([&] { return run(c); });
}
