// sbgm-mnist: trains a score-based model on MNIST and samples from it.
//
//   --mode ve    VE SDE (sigma = 25), denoising score matching, a score U-Net
//                whose output is divided by the kernel's std (the seed and
//                the score-SDE tutorial); data in [0, 1].
//   --mode vp    VP SDE, denoising score matching with an eps U-Net; data in
//                [-1, 1].
//   --mode ddpm  DDPM eps-prediction on a 1000-step cosine or linear
//                schedule; data in [-1, 1].
//
// Writes samples.npy (N x 1 x 28 x 28 in [0, 1]), samples.png, denoise.png
// (a few samples along the sampler's trajectory), loss.png, loss.csv,
// checkpoint.pt and metrics.json into --out. With --classifier (weights
// from sbgm-mnist-classifier) it adds the Fréchet distance of classifier
// features (samples vs test, and training vs test images as the floor) and
// the classifier score; with --likelihood, bits/dim of test images through
// the probability-flow ODE.

// clang-format off
// torch/torch.h first: it declares what the headers below use.
#include <torch/torch.h>
// clang-format on

#include <ATen/Context.h>
#include <sbgm/losses.h>
#include <sbgm/samplers/ancestral.h>
#include <sbgm/samplers/ode.h>
#include <sbgm/samplers/sde_samplers.h>
#include <sbgm/sbgm.h>
#include <sbgm/train/trainer.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace fs = std::filesystem;

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
  std::string sampler;  // default per mode: em (ve, vp), ddim (ddpm)
  int64_t sample_steps = 300;
  int64_t num_samples = 64;
  std::string device = "cpu";
  bool amp = false;
  bool cuda_graph = false;
  bool resume = false;
  std::string out = "mnist-out";
  bool likelihood = false;
  int64_t likelihood_images = 32;
  double ode_tol = 1e-4;
  std::string classifier;
  uint64_t seed = 0;
};

// The "loss" column of the trainer's CSV log.
std::vector<double> read_losses(const std::string& path) {
  std::vector<double> losses;
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    std::istringstream row(line);
    std::string step, loss;
    if (std::getline(row, step, ',') && std::getline(row, loss, ',')) {
      try {
        const double v = std::stod(loss);
        if (std::isfinite(v) && v > 0) {
          losses.push_back(v);
        }
      } catch (const std::exception&) {
      }
    }
  }
  return losses;
}

// metrics.json, written by hand: keys in order, numbers or strings.
class JsonWriter {
 public:
  void number(const std::string& key, double v) {
    char buf[64];
    if (std::isfinite(v)) {
      std::snprintf(buf, sizeof buf, "%.6g", v);
    } else {
      std::snprintf(buf, sizeof buf, "null");
    }
    items_.emplace_back(key, buf);
  }
  void integer(const std::string& key, int64_t v) {
    items_.emplace_back(key, std::to_string(v));
  }
  void string(const std::string& key, const std::string& v) {
    items_.emplace_back(key, "\"" + v + "\"");
  }
  void write(const std::string& path) const {
    std::ofstream out(path);
    out << "{\n";
    for (size_t i = 0; i < items_.size(); ++i) {
      out << "  \"" << items_[i].first << "\": " << items_[i].second
          << (i + 1 < items_.size() ? ",\n" : "\n");
    }
    out << "}\n";
    if (!out) {
      throw std::runtime_error("cannot write " + path);
    }
  }

 private:
  std::vector<std::pair<std::string, std::string>> items_;
};

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
      .count();
}

int run(const Config& cfg) {
  torch::manual_seed(cfg.seed);
  const torch::Device device(cfg.device);
  if (device.is_cuda()) {
    if (!torch::cuda::is_available()) {
      std::fprintf(
          stderr,
          "error: --device %s but no CUDA device is available\n",
          cfg.device.c_str());
      return 1;
    }
    at::globalContext().setBenchmarkCuDNN(true);
  }
  const bool amp = cfg.amp && device.is_cuda();
  if (cfg.amp && !amp) {
    std::printf(
        "note: --amp applies to CUDA devices only; running in float32\n");
  }
  const bool ddpm_mode = cfg.mode == "ddpm";
  const bool ve = cfg.mode == "ve";
  std::string sampler = cfg.sampler;
  if (sampler.empty()) {
    sampler = ddpm_mode ? "ddim" : "em";
  }
  const bool discrete_sampler = sampler == "ddpm" || sampler == "ddim";
  if (cfg.cuda_graph && sampler != "em" && !discrete_sampler) {
    std::fprintf(
        stderr,
        "error: --cuda-graph works with --sampler em, ddpm or ddim, got %s\n",
        sampler.c_str());
    return 1;
  }
  if (ddpm_mode != discrete_sampler) {
    std::fprintf(
        stderr,
        "error: --sampler %s does not go with --mode %s (ve and vp take em, "
        "pc or ode; ddpm takes ddpm or ddim)\n",
        sampler.c_str(),
        cfg.mode.c_str());
    return 1;
  }

  // ---- data -----------------------------------------------------------------
  sbgm::data::MnistData train;
  try {
    train = sbgm::data::load_mnist(cfg.data, sbgm::data::MnistSplit::Train);
  } catch (const c10::Error& e) {
    std::fprintf(
        stderr,
        "error: cannot read the MNIST training split from '%s':\n  %s\n"
        "Fetch MNIST with:  scripts/fetch-mnist.sh %s\n"
        "(or pass --data DIR with train-images-idx3-ubyte[.gz] and "
        "train-labels-idx1-ubyte[.gz])\n",
        cfg.data.c_str(),
        e.what_without_backtrace(),
        cfg.data.c_str());
    return 1;
  }
  std::optional<sbgm::data::MnistData> test;
  try {
    test = sbgm::data::load_mnist(cfg.data, sbgm::data::MnistSplit::Test);
  } catch (const c10::Error& e) {
    std::printf(
        "note: no test split (%s); test metrics are skipped\n",
        e.what_without_backtrace());
  }
  const int64_t n_train = train.images.size(0);
  // Model space: [0, 1] for VE (as the seed), [-1, 1] for VP and DDPM.
  auto to_model = [ve](const torch::Tensor& x01) {
    return ve ? x01 : x01 * 2 - 1;
  };
  auto to_unit = [ve](const torch::Tensor& x) {
    return (ve ? x : (x + 1) / 2).clamp(0, 1);
  };
  const auto train_x = to_model(train.images).to(device);
  int64_t steps = cfg.steps;
  if (cfg.epochs > 0) {
    steps = cfg.epochs * ((n_train + cfg.batch - 1) / cfg.batch);
  }
  std::printf(
      "%lld training images from %s; mode %s, %lld steps of batch %lld on "
      "%s%s\n",
      static_cast<long long>(n_train),
      cfg.data.c_str(),
      cfg.mode.c_str(),
      static_cast<long long>(steps),
      static_cast<long long>(cfg.batch),
      device.str().c_str(),
      amp ? " (bf16 autocast)" : "");

  // ---- model ----------------------------------------------------------------
  std::shared_ptr<sbgm::SDE> sde;
  if (ve) {
    sde = std::make_shared<sbgm::VESDE>(25.0);
  } else if (!ddpm_mode) {
    sde = std::make_shared<sbgm::VPSDE>();
  }
  const auto schedule = cfg.schedule == "linear" ? sbgm::Schedule::linear(1000)
                                                 : sbgm::Schedule::cosine(1000);
  sbgm::UNetOptions net_opts(1);
  sbgm::Prediction prediction = sbgm::Prediction::Epsilon;
  if (ve) {
    net_opts.marginal_std(
        [sde](const torch::Tensor& t) { return sde->std(t); });
    prediction = sbgm::Prediction::Score;
  } else if (ddpm_mode) {
    // Step indices 0..999 straight into sinusoidal features.
    net_opts.time_embedding(sbgm::TimeEmbeddingKind::Sinusoidal);
  }
  sbgm::UNet net(net_opts);
  net->to(device);
  int64_t num_params = 0;
  for (const auto& p : net->parameters()) {
    num_params += p.numel();
  }
  const sbgm::Model model(
      [net, amp](const torch::Tensor& x, const torch::Tensor& t) mutable {
        sbgm::AutocastGuard scope(amp);  // bf16 autocast on CUDA
        return net->forward(x, t).to(x.scalar_type());
      },
      prediction);

  // ---- training -------------------------------------------------------------
  fs::create_directories(cfg.out);
  const std::string csv = (fs::path(cfg.out) / "loss.csv").string();
  const std::string ckpt = (fs::path(cfg.out) / "checkpoint.pt").string();
  if (!cfg.resume) {
    fs::remove(csv);
  }
  const auto long_opts =
      torch::TensorOptions().dtype(torch::kLong).device(device);
  sbgm::LossFn loss_fn = [&](int64_t) {
    const auto idx = torch::randint(n_train, {cfg.batch}, long_opts);
    const auto x0 = train_x.index_select(0, idx);
    return ddpm_mode ? sbgm::epsilon_loss(model, schedule, x0)
                     : sbgm::dsm_loss(model, *sde, x0);
  };
  const int64_t log_every = std::clamp<int64_t>(steps / 100, 1, 100);
  sbgm::TrainerOptions topts(steps);
  topts.lr(cfg.lr)
      .grad_clip(0)  // clipping is fused into FlatAdam below
      .ema_decay(cfg.ema)
      .log_every(log_every)
      .csv_path(csv)
      .checkpoint_path(ckpt)
      .checkpoint_every(std::max<int64_t>(500, steps / 10))
      .resume(cfg.resume);
  auto optimizer = std::make_shared<sbgm::FlatAdam>(
      net->parameters(), sbgm::FlatAdamOptions(cfg.lr).max_grad_norm(1.0));
  sbgm::Trainer trainer(net, loss_fn, topts, optimizer);
  const int64_t print_every = std::max<int64_t>(log_every, steps / 10);
  trainer.on_log([&](const sbgm::TrainLogEntry& e) {
    if (e.step % print_every == 0 || e.step == steps) {
      std::printf(
          "step %6lld  loss %.4f  grad norm %.3f  %.1f it/s  %.0f s\n",
          static_cast<long long>(e.step),
          e.loss,
          e.grad_norm,
          e.it_per_s,
          e.elapsed_s);
      std::fflush(stdout);
    }
  });
  const auto train_start = std::chrono::steady_clock::now();
  const auto last = trainer.run();
  const double train_s = seconds_since(train_start);
  std::printf(
      "trained to step %lld in %.1f s (%lld parameters); final loss %.4f\n",
      static_cast<long long>(trainer.step()),
      train_s,
      static_cast<long long>(num_params),
      last.loss);
  if (!std::isfinite(last.loss)) {
    std::printf("(resumed at the last step: nothing left to train)\n");
  }
  if (auto* ema = trainer.ema()) {
    ema->copy_to(*net);
  }
  net->eval();

  // ---- sampling -------------------------------------------------------------
  torch::manual_seed(cfg.seed + 1);
  const std::vector<int64_t> shape = {cfg.num_samples, 1, 28, 28};
  const int64_t traj_steps =
      sampler == "ddpm" ? schedule.num_timesteps() : cfg.sample_steps;
  const auto common =
      sbgm::samplers::CommonOptions()
          .device(device)
          .trajectory_every(std::max<int64_t>(1, traj_steps / 7))
          .cuda_graph(cfg.cuda_graph);  // no effect on CPU
  const auto sample_start = std::chrono::steady_clock::now();
  sbgm::samplers::SampleResult result;
  namespace smp = sbgm::samplers;
  if (sampler == "em") {
    result = smp::euler_maruyama(
        model,
        *sde,
        shape,
        smp::EulerMaruyamaOptions().num_steps(cfg.sample_steps),
        common);
  } else if (sampler == "pc") {
    result = smp::predictor_corrector(
        model,
        *sde,
        shape,
        smp::PredictorCorrectorOptions().num_steps(cfg.sample_steps),
        common);
  } else if (sampler == "ode") {
    result = smp::ode(
        model,
        *sde,
        shape,
        smp::ODEOptions()
            .method(smp::ODEMethod::Heun)
            .num_steps(cfg.sample_steps),
        common);
  } else if (sampler == "ddpm") {
    result = smp::ddpm(model, schedule, shape, smp::DDPMOptions(), common);
  } else {
    result = smp::ddim(
        model,
        schedule,
        shape,
        smp::DDIMOptions().num_steps(cfg.sample_steps),
        common);
  }
  const double sample_s = seconds_since(sample_start);
  const auto samples = to_unit(result.samples).to(torch::kCPU, torch::kFloat);
  std::printf(
      "sampled %lld images with %s in %.1f s (%lld model evaluations)\n",
      static_cast<long long>(cfg.num_samples),
      sampler.c_str(),
      sample_s,
      static_cast<long long>(result.nfe));

  const auto out = [&](const char* name) {
    return (fs::path(cfg.out) / name).string();
  };
  sbgm::io::write_npy(out("samples.npy"), samples);
  const auto nrow =
      static_cast<int64_t>(std::ceil(std::sqrt(double(cfg.num_samples))));
  sbgm::io::save_png(out("samples.png"), sbgm::io::image_grid(samples, nrow));
  {
    const int64_t rows = std::min<int64_t>(cfg.num_samples, 6);
    std::vector<torch::Tensor> snaps;
    for (const auto& x : result.trajectory) {
      snaps.push_back(
          to_unit(x.slice(0, 0, rows)).to(torch::kCPU, torch::kFloat));
    }
    if (snaps.empty()) {
      snaps.push_back(samples.slice(0, 0, rows));
    }
    sbgm::io::save_png(out("denoise.png"), sbgm::io::denoise_strip(snaps));
  }
  auto losses = read_losses(csv);
  if (losses.empty() && std::isfinite(last.loss) && last.loss > 0) {
    losses.push_back(last.loss);
  }
  // A run resumed at its last step trains nothing: its final loss is the
  // last one logged.
  const double final_loss =
      std::isfinite(last.loss) || losses.empty() ? last.loss : losses.back();
  if (!losses.empty()) {
    sbgm::io::save_png(
        out("loss.png"),
        sbgm::io::line_plot(
            losses,
            sbgm::io::LinePlotOptions().log_y(true).title(
                "training loss, mean per " + std::to_string(log_every) +
                " steps")));
  }

  JsonWriter json;
  json.string("mode", cfg.mode);
  if (ddpm_mode) {
    json.string("schedule", cfg.schedule);
  }
  json.string("sampler", sampler);
  json.string("device", device.str());
  json.integer("train_images", n_train);
  json.integer("parameters", num_params);
  json.integer("steps", trainer.step());
  json.integer("batch", cfg.batch);
  json.number("lr", cfg.lr);
  json.number("train_seconds", train_s);
  json.number("final_loss", final_loss);
  json.integer("num_samples", cfg.num_samples);
  json.integer("sample_steps", traj_steps);
  json.integer("nfe", result.nfe);
  json.number("sample_seconds", sample_s);

  // ---- quality figures ------------------------------------------------------
  if (!cfg.classifier.empty()) {
    if (!test) {
      std::printf("note: --classifier needs the test split; skipped\n");
    } else {
      sbgm::DigitClassifier clf;
      torch::load(clf, cfg.classifier);
      clf->eval();
      const auto test_out = sbgm::classifier_outputs(clf, test->images);
      const auto sample_out = sbgm::classifier_outputs(clf, samples);
      // The floor: as many training images as samples (the Fréchet distance
      // of a finite set is biased upwards; equal sizes keep them comparable).
      const auto pick = torch::randperm(n_train).slice(0, 0, cfg.num_samples);
      const auto train_out =
          sbgm::classifier_outputs(clf, train.images.index_select(0, pick));
      const double fd =
          sbgm::frechet_distance(sample_out.features, test_out.features);
      const double floor =
          sbgm::frechet_distance(train_out.features, test_out.features);
      const double cs = sbgm::classifier_score(sample_out.logits);
      const double cs_test = sbgm::classifier_score(test_out.logits);
      std::printf(
          "Fréchet distance (classifier features) samples vs test: %.3f; "
          "%lld training images vs test (floor): %.3f\n",
          fd,
          static_cast<long long>(cfg.num_samples),
          floor);
      std::printf(
          "classifier score: samples %.3f, test images %.3f (max 10)\n",
          cs,
          cs_test);
      json.number("frechet_samples_vs_test", fd);
      json.number("frechet_train_vs_test", floor);
      json.number("classifier_score_samples", cs);
      json.number("classifier_score_test", cs_test);
    }
  }
  if (cfg.likelihood) {
    if (ddpm_mode || !test) {
      std::printf(
          "note: --likelihood needs --mode ve or vp and the test split; "
          "skipped\n");
    } else {
      const int64_t k =
          std::min<int64_t>(cfg.likelihood_images, test->images.size(0));
      // Uniform dequantization of the 8-bit values: (byte + u) / 256.
      auto x01 =
          (test->images.slice(0, 0, k) * 255 + torch::rand({k, 1, 28, 28})) /
          256;
      const auto lik_start = std::chrono::steady_clock::now();
      const auto lik = smp::log_likelihood(
          model,
          *sde,
          to_model(x01).to(device),
          smp::LikelihoodOptions()
              .num_bits(8)
              .data_width(ve ? 1.0 : 2.0)
              .ode(smp::ODEOptions().rtol(cfg.ode_tol).atol(cfg.ode_tol)));
      const auto bpd = lik.bits_per_dim.to(torch::kCPU, torch::kDouble);
      const double mean = bpd.mean().item<double>();
      const double se =
          k > 1 ? bpd.std().item<double>() / std::sqrt(double(k)) : 0.0;
      std::printf(
          "bits/dim on %lld test images: %.3f +- %.3f (%lld evaluations, %.1f "
          "s)\n",
          static_cast<long long>(k),
          mean,
          se,
          static_cast<long long>(lik.nfe),
          seconds_since(lik_start));
      json.number("bits_per_dim", mean);
      json.number("bits_per_dim_stderr", se);
      json.integer("likelihood_images", k);
    }
  }
  json.write(out("metrics.json"));
  std::printf(
      "wrote samples.npy, samples.png, denoise.png, loss.png, metrics.json to "
      "%s\n",
      cfg.out.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Score-based generative model on MNIST (sbgm demo)"};
  Config cfg;
  app.add_option(
         "--data",
         cfg.data,
         "MNIST directory: train-/t10k- IDX files, plain or .gz "
         "(scripts/fetch-mnist.sh DIR fetches them)")
      ->capture_default_str();
  app.add_option(
         "--mode", cfg.mode, "ve (VE SDE, sigma 25), vp (VP SDE) or ddpm")
      ->check(CLI::IsMember({"ve", "vp", "ddpm"}))
      ->capture_default_str();
  app.add_option("--schedule", cfg.schedule, "DDPM schedule: cosine or linear")
      ->check(CLI::IsMember({"cosine", "linear"}))
      ->capture_default_str();
  app.add_option(
         "--epochs",
         cfg.epochs,
         "passes over the training images (overrides --steps when > 0)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--steps", cfg.steps, "optimizer steps")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--batch", cfg.batch, "minibatch size")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--lr", cfg.lr, "Adam learning rate")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--ema", cfg.ema, "EMA decay of the weights (0: none)")
      ->check(CLI::Range(0.0, 0.99999))
      ->capture_default_str();
  app.add_option(
         "--sampler",
         cfg.sampler,
         "em, pc, ode (ve, vp; default em) or ddpm, ddim (ddpm; default ddim)")
      ->check(CLI::IsMember({"em", "pc", "ode", "ddpm", "ddim"}));
  app.add_option(
         "--sample-steps",
         cfg.sample_steps,
         "sampler steps (em, pc, ode (Heun), ddim; ddpm always runs all 1000)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--num-samples", cfg.num_samples, "images to generate")
      ->check(CLI::Range(int64_t{2}, int64_t{1} << 20))
      ->capture_default_str();
  app.add_option("--device", cfg.device, "cpu, cuda, cuda:1, ...")
      ->capture_default_str();
  app.add_flag("--amp", cfg.amp, "bf16 autocast on CUDA");
  app.add_flag(
      "--cuda-graph",
      cfg.cuda_graph,
      "on CUDA, capture one sampler step as a CUDA graph and replay it "
      "(em, ddpm, ddim)");
  app.add_flag(
      "--resume", cfg.resume, "continue from OUT/checkpoint.pt if present");
  app.add_option("--out", cfg.out, "output directory")->capture_default_str();
  app.add_flag(
      "--likelihood",
      cfg.likelihood,
      "bits/dim of test images through the probability-flow ODE (ve, vp)");
  app.add_option(
         "--likelihood-images",
         cfg.likelihood_images,
         "test images for --likelihood")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option(
         "--ode-tol", cfg.ode_tol, "rtol = atol of the likelihood ODE (Dopri5)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option(
      "--classifier",
      cfg.classifier,
      "classifier weights from sbgm-mnist-classifier, for quality figures");
  app.add_option("--seed", cfg.seed, "random seed")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  sbgm::tune_cpu_allocator();  // reuse freed tensor memory (see sbgm/perf.h)
  try {
    return run(cfg);
  } catch (const c10::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what_without_backtrace());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
  }
  return 1;
}
