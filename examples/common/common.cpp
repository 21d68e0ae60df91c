#include "common.h"

#include <ATen/Context.h>

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace sbgm::examples {

torch::Device pick_device(const std::string& name) {
  if (name == "auto") {
    return torch::cuda::is_available() ? torch::Device(torch::kCUDA)
                                       : torch::Device(torch::kCPU);
  }
  const torch::Device device(name);
  check_device(device, "--device");
  if (device.is_cuda()) {
    at::globalContext().setBenchmarkCuDNN(true);
  }
  return device;
}

void add_sampling_flags(
    CLI::App& app, SamplingFlags& f, const std::string& steps_flag) {
  app.add_option("--sampler", f.sampler, "sampler by name")
      ->check(CLI::IsMember(samplers::sampler_names()))
      ->capture_default_str();
  app.add_option("--grid", f.grid, "time grid by name")
      ->check(CLI::IsMember(grids::names()))
      ->capture_default_str();
  app.add_option(steps_flag, f.steps, "grid steps (0: the sampler's default)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option(
         "--eta",
         f.eta,
         "eta of ddim (default 0) and euler_ancestral (default 1)")
      ->check(CLI::NonNegativeNumber);
  app.add_flag(
      "--cuda-graph",
      f.cuda_graph,
      "on CUDA, replay one captured sampler step (ddpm, ddim, em)");
}

samplers::SampleOptions sample_options(
    const SamplingFlags& f,
    const NoiseProcess& process,
    torch::Device device,
    uint64_t seed,
    int64_t frames) {
  auto o =
      samplers::SampleOptions().sampler(f.sampler).grid(f.grid).steps(f.steps);
  if (f.eta) {
    o.set("eta", *f.eta);
  }
  // The steps the run will take, for the trajectory's spacing.
  const int64_t steps = f.steps > 0 ? f.steps
                        : process.num_model_steps() > 0
                            ? process.num_model_steps()
                            : 1000;
  if (f.cuda_graph) {  // a captured step draws from one generator
    o.common().generator(make_generator(seed, device));
  } else {
    o.common().per_sample_seed(seed);
  }
  o.common()
      .device(device)
      .cuda_graph(f.cuda_graph)
      .trajectory_every(
          std::max<int64_t>(1, steps / std::max<int64_t>(frames, 1)));
  return o;
}

void add_training_flags(CLI::App& app, TrainingFlags& f) {
  app.add_option("--steps", f.steps, "optimizer steps")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--batch", f.batch, "minibatch size")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--lr", f.lr, "Adam learning rate")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--lr-warmup", f.lr_warmup, "linear warm-up steps")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--lr-schedule", f.lr_schedule, "constant or cosine")
      ->check(CLI::IsMember({"constant", "cosine"}));
  app.add_option("--ema", f.ema, "EMA decay (0: none)")
      ->check(CLI::Range(0.0, 0.99999))
      ->capture_default_str();
  app.add_option("--ema-warmup", f.ema_warmup, "EMA warm-up: 1 or 0");
  app.add_option("--device", f.device, "cpu, cuda, cuda:1 or auto")
      ->capture_default_str();
  app.add_option("--seed", f.seed, "random seed");
  app.add_flag("--resume", f.resume, "continue from OUT/checkpoint.pt");
  app.add_option("--out", f.out, "output directory")->capture_default_str();
  app.add_option(
         "--dist-timeout",
         f.dist_timeout,
         "seconds a data-parallel collective may wait (under torchrun, "
         "srun or WORLD_SIZE > 1)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
}

std::shared_ptr<dist::ProcessGroup> join_launch(
    torch::Device device, const TrainingFlags& flags) {
  auto group =
      dist::init_from_env(dist::ProcessGroupOptions().device(device).timeout(
          std::chrono::milliseconds(
              static_cast<int64_t>(flags.dist_timeout * 1000))));
  if (group && group->is_main()) {
    std::printf(
        "data-parallel: %lld processes (%s, %s); batch and steps are per "
        "process\n",
        static_cast<long long>(group->world_size()),
        group->info().launcher.c_str(),
        group->backend_name().c_str());
    std::fflush(stdout);
  }
  return group;
}

TrainerOptions trainer_options(const TrainingFlags& f) {
  return TrainerOptions(f.steps)
      .lr(f.lr)
      .lr_warmup(f.lr_warmup)
      .lr_schedule(
          f.lr_schedule == "cosine" ? LRSchedule::Cosine : LRSchedule::Constant)
      .ema_decay(f.ema)
      .ema_warmup(f.ema_warmup);
}

std::vector<std::string> process_names() {
  auto names = process_registry().names();
  for (const char* kind : {"linear", "cosine", "sigmoid"}) {
    names.emplace_back(kind);
  }
  return names;
}

std::shared_ptr<NoiseProcess> make_process(const std::string& name, int64_t T) {
  if (name != "linear" && name != "cosine" && name != "sigmoid") {
    return process_from_config({{"name", name}});  // the registry's defaults
  }
  Config schedule = {{"kind", name}, {"num_timesteps", T}};
  if (name == "sigmoid") {  // reaches the prior for any T: betas 1e-4..12/T
    schedule["beta_start"] = 1e-4;
    schedule["beta_end"] = 12.0 / static_cast<double>(T);
  }
  return process_from_config(
      {{"name", "discrete"}, {"schedule", schedule}, {"quantize", true}});
}

Minibatches::Minibatches(
    int64_t n,
    int64_t batch,
    uint64_t seed,
    const std::shared_ptr<dist::ProcessGroup>& group,
    torch::Device device)
    : n_(n), batch_(batch), device_(device) {
  if (group) {
    shard_.emplace(data::ShardSamplerOptions(n, batch)
                       .rank(group->rank())
                       .world_size(group->world_size())
                       .seed(seed));
  }
}

torch::Tensor Minibatches::next() {
  return shard_
             ? shard_->next().to(device_)
             : torch::randint(
                   n_,
                   {batch_},
                   torch::TensorOptions().dtype(torch::kLong).device(device_));
}

void Minibatches::add_state_to(Trainer& trainer) {
  if (shard_) {
    trainer.add_state(
        "mnist_shard",
        [this] { return shard_->state(); },
        [this](const torch::Tensor& s) { shard_->load_state(s); });
  }
}

std::vector<int64_t> int_list(const std::string& text) {
  std::vector<int64_t> values;
  std::stringstream list(text);
  for (std::string item; std::getline(list, item, ',');) {
    size_t used = 0;
    try {
      values.push_back(std::stoll(item, &used));
    } catch (const std::exception&) {
    }
    if (used == 0 || used != item.size()) {
      throw std::invalid_argument(
          "'" + item + "' in '" + text + "' is not an integer");
    }
  }
  return values;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
      .count();
}

namespace {
// The "loss" column of the trainer's CSV log (finite, positive values).
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
}  // namespace

void save_loss_plot(const RunFiles& files) {
  const auto losses = read_losses(files.csv);
  if (!losses.empty()) {
    io::save_png(
        (std::filesystem::path(files.csv).parent_path() / "loss.png").string(),
        io::line_plot(
            losses,
            io::LinePlotOptions().log_y(true).title("training loss (log)")));
  }
}

RunFiles run_files(
    const std::string& out_dir,
    bool resume,
    const std::shared_ptr<dist::ProcessGroup>& group) {
  namespace fs = std::filesystem;
  fs::create_directories(out_dir);
  const fs::path out(out_dir);
  RunFiles f{
      (out / "loss.csv").string(),
      (out / "checkpoint.pt").string(),
      (out / "model.safetensors").string()};
  if (!resume && (!group || group->is_main())) {
    std::error_code ec;
    fs::remove(f.csv, ec);
    fs::remove(f.checkpoint, ec);
  }
  return f;
}

RunTimer::RunTimer(RunFiles files, bool resume)
    : files_(std::move(files)), start_(std::chrono::steady_clock::now()) {
  namespace fs = std::filesystem;
  if (!resume || !fs::exists(files_.checkpoint) || !fs::exists(files_.model)) {
    return;
  }
  try {
    earlier_ = read_training_info(files_.model);
    if (earlier_ &&
        earlier_->step != read_checkpoint_info(files_.checkpoint).step) {
      earlier_.reset();
    }
  } catch (const c10::Error& e) {
    earlier_.reset();
    std::printf("note: %s\n", e.what_without_backtrace());
  }
}

void exit_if_done(
    const Trainer& trainer, const std::shared_ptr<dist::ProcessGroup>& group) {
  if (trainer.interrupted()) {
    std::printf(
        "stopped by %s at step %lld; the checkpoint is '%s': run the same "
        "command with --resume to go on\n",
        trainer.stop_signal() == SIGINT ? "Ctrl-C (SIGINT)" : "SIGTERM",
        static_cast<long long>(trainer.step_count()),
        trainer.options().checkpoint_path().c_str());
    std::fflush(stdout);
    std::exit(128 + trainer.stop_signal());
  }
  if (group) {
    group->shutdown();
    if (!group->is_main()) {
      std::exit(0);
    }
  }
}

TrainReport RunTimer::report(
    const Trainer& trainer, const TrainLogEntry& last) const {
  TrainReport r;
  r.steps = trainer.step_count();
  r.seconds =
      seconds_since(start_) + (earlier_ ? earlier_->train_seconds : 0.0);
  r.final_loss = last.loss;
  if (!std::isfinite(r.final_loss) && earlier_ &&
      std::isfinite(earlier_->final_loss)) {
    r.final_loss = earlier_->final_loss;
  } else if (!std::isfinite(r.final_loss)) {
    const auto losses = read_losses(files_.csv);
    if (!losses.empty()) {
      r.final_loss = losses.back();
    }
  }
  std::printf(
      "trained to step %lld in %.1f s; final loss %.4f\n",
      static_cast<long long>(r.steps),
      r.seconds,
      r.final_loss);
  return r;
}

DataTransform data_transform(const data::Standardizer& standard) {
  if (!standard.mean.defined()) {
    return {};
  }
  const auto mean = standard.mean.to(torch::kCPU, torch::kDouble).contiguous();
  const auto* m = mean.data_ptr<double>();
  return DataTransform()
      .scale(standard.scale)
      .shift(std::vector<double>(m, m + mean.numel()));
}

void use_ema(Trainer& trainer, torch::nn::Module& module) {
  if (auto* ema = trainer.ema()) {
    ema->copy_to(module);
  }
  module.eval();
}

TrainingInfo training_info(const TrainReport& report) {
  TrainingInfo t;
  t.step = report.steps;
  t.train_seconds = report.seconds;
  t.final_loss = report.final_loss;
  return t;
}

nlohmann::json training_json(const TrainingFlags& f, const TrainReport& r) {
  return {
      {"steps", r.steps},
      {"batch", f.batch},
      {"lr", f.lr},
      {"lr_warmup", f.lr_warmup},
      {"lr_schedule", f.lr_schedule},
      {"ema", f.ema},
      {"train_seconds", r.seconds},
      {"final_loss", r.final_loss}};
}

nlohmann::json sampling_json(
    const NoiseProcess& process,
    const SamplingFlags& flags,
    torch::Device device,
    const samplers::SampleResult& result,
    double seconds) {
  return {
      {"process", process.describe()},
      {"sampler", flags.sampler},
      {"grid", flags.grid},
      {"device", device.str()},
      {"num_samples", result.samples.size(0)},
      {"nfe", result.nfe},
      {"sample_seconds", seconds}};
}

DigitClassifier load_classifier(const std::string& path) {
  DigitClassifier clf;
  torch::load(clf, path);
  clf->eval();
  return clf;
}

nlohmann::json mnist_quality(
    const std::string& classifier_path,
    const torch::Tensor& samples,
    const torch::Tensor& train_images,
    const torch::Tensor& test_images) {
  auto clf = load_classifier(classifier_path);
  const auto test_out = classifier_outputs(clf, test_images);
  const auto sample_out = classifier_outputs(clf, samples);
  // The floor: as many training images as samples (the Fréchet distance of
  // a finite set is biased upwards; equal sizes keep the two comparable).
  const auto pick =
      torch::randperm(train_images.size(0)).slice(0, 0, samples.size(0));
  const auto train_out =
      classifier_outputs(clf, train_images.index_select(0, pick));
  nlohmann::json m;
  m["frechet_samples_vs_test"] =
      frechet_distance(sample_out.features, test_out.features);
  m["frechet_train_vs_test"] =
      frechet_distance(train_out.features, test_out.features);
  m["classifier_score_samples"] = classifier_score(sample_out.logits);
  m["classifier_score_test"] = classifier_score(test_out.logits);
  // The share of the samples the classifier reads as each digit.
  const auto counts =
      torch::bincount(sample_out.logits.argmax(1), {}, 10).to(torch::kDouble);
  const auto frac = counts / static_cast<double>(samples.size(0));
  m["class_fractions"] = std::vector<double>(
      frac.data_ptr<double>(), frac.data_ptr<double>() + 10);
  std::printf(
      "Fréchet distance of classifier features %.3f (floor %.3f); "
      "classifier score %.3f (test images %.3f)\n",
      m["frechet_samples_vs_test"].get<double>(),
      m["frechet_train_vs_test"].get<double>(),
      m["classifier_score_samples"].get<double>(),
      m["classifier_score_test"].get<double>());
  return m;
}

Sampled sample(
    const Model& model,
    const NoiseProcess& process,
    torch::IntArrayRef shape,
    samplers::SampleOptions options,
    int64_t batch) {
  Sampled s;
  const auto start = std::chrono::steady_clock::now();
  const int64_t n = shape[0];
  batch = batch > 0 ? std::min(batch, n) : n;
  // A few samples need no calls of 64 rows (the same in every program that
  // samples this many, so the samples still agree bit for bit).
  auto& common = options.common();
  common.model_batch(std::min(common.model_batch(), n));
  std::vector<torch::Tensor> parts;
  std::vector<std::vector<torch::Tensor>> frames;
  for (int64_t first = 0; first < n; first += batch) {
    auto part_shape = shape.vec();
    part_shape[0] = std::min(batch, n - first);
    options.common().first_sample(first);
    auto r = samplers::sample(model, process, part_shape, options);
    parts.push_back(r.samples);
    frames.resize(r.trajectory.size());
    for (size_t k = 0; k < r.trajectory.size(); ++k) {
      frames[k].push_back(r.trajectory[k]);
    }
    s.result.nfe += r.nfe;
  }
  s.result.samples = parts.size() == 1 ? parts[0] : torch::cat(parts);
  for (auto& f : frames) {
    s.result.trajectory.push_back(f.size() == 1 ? f[0] : torch::cat(f));
  }
  s.seconds = seconds_since(start);
  std::printf(
      "sampled %lld with %s on the %s grid in %.2f s (%lld model "
      "evaluations)\n",
      static_cast<long long>(shape[0]),
      options.sampler().c_str(),
      options.grid().c_str(),
      s.seconds,
      static_cast<long long>(s.result.nfe));
  return s;
}

MnistSplits load_mnist_splits(const std::string& dir) {
  MnistSplits s;
  try {
    s.train = data::load_mnist(dir, data::MnistSplit::Train);
  } catch (const c10::Error& e) {
    throw std::runtime_error(
        std::string(e.what_without_backtrace()) +
        "\nFetch MNIST with:  scripts/fetch-mnist.sh " + dir);
  }
  try {
    s.test = data::load_mnist(dir, data::MnistSplit::Test);
  } catch (const c10::Error& e) {
    std::printf(
        "note: no test split (%s); test metrics skipped\n",
        e.what_without_backtrace());
  }
  return s;
}

nlohmann::json mnist_bits_per_dim(
    const Model& model,
    const NoiseProcess& process,
    const torch::Tensor& test_images,
    int64_t k,
    const std::function<torch::Tensor(const torch::Tensor&)>& to_model,
    double data_width,
    double tol,
    torch::Device device) {
  k = std::min<int64_t>(k, test_images.size(0));
  // Uniform dequantization of the 8-bit values: (byte + u) / 256.
  auto x01 =
      (test_images.slice(0, 0, k) * 255 + torch::rand({k, 1, 28, 28})) / 256;
  const auto lik = samplers::log_likelihood(
      model,
      process,
      to_model(x01).to(device),
      samplers::LikelihoodOptions()
          .num_bits(8)
          .data_width(data_width)
          .rtol(tol)
          .atol(tol));
  const double bpd = lik.bits_per_dim.to(torch::kDouble).mean().item<double>();
  std::printf(
      "bits/dim on %lld test images: %.3f\n", static_cast<long long>(k), bpd);
  return {{"bits_per_dim", bpd}, {"likelihood_images", k}};
}

void save_image_samples(
    const std::string& out_dir,
    const torch::Tensor& samples,
    const std::vector<torch::Tensor>& trajectory,
    const DataTransform& to_data) {
  namespace fs = std::filesystem;
  io::write_npy((fs::path(out_dir) / "samples.npy").string(), samples);
  const auto nrow = static_cast<int64_t>(
      std::ceil(std::sqrt(static_cast<double>(samples.size(0)))));
  io::save_png(
      (fs::path(out_dir) / "samples.png").string(),
      io::image_grid(samples, nrow));
  std::vector<torch::Tensor> snaps;
  for (const auto& x : trajectory) {
    snaps.push_back(
        to_data.apply(x.slice(0, 0, 6)).to(torch::kCPU, torch::kFloat));
  }
  if (!snaps.empty()) {
    io::save_png(
        (fs::path(out_dir) / "denoise.png").string(), io::denoise_strip(snaps));
  }
}

int guarded_main(const std::function<int()>& body) {
  tune_cpu_allocator();  // reuse freed tensor memory (see sbgm/perf.h)
  // One LibTorch thread per core (Debian's LibTorch starts with 1 on this
  // 2-core machine, where 2 run the MNIST U-Net 1.45x faster), or
  // OMP_NUM_THREADS when set (torchrun sets 1); OpenBLAS at one thread so
  // that its pool does not fight LibTorch's (sbgm/perf.h).
  int threads = static_cast<int>(std::thread::hardware_concurrency());
  if (const char* env = std::getenv("OMP_NUM_THREADS")) {
    threads = std::atoi(env);
  }
  set_num_threads(std::max(threads, 1));
  try {
    return body();
  } catch (const c10::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what_without_backtrace());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
  }
  return 1;
}

nlohmann::json toy2d_distances(
    data::Toy2d kind,
    const torch::Tensor& samples,
    int64_t n,
    uint64_t seed,
    int64_t sets) {
  auto gen = make_generator(seed);
  const auto s = samples.slice(0, 0, n).to(torch::kCPU, torch::kFloat);
  auto sw = [&](const torch::Tensor& a, const torch::Tensor& b) {
    return metrics::sliced_wasserstein(a, b, 256, make_generator(7))
        .item<double>();
  };
  double sw_s = 0, sw_f = 0, mmd_s = 0, mmd_f = 0;
  for (int64_t k = 0; k < sets; ++k) {
    const auto a = data::make_toy2d(kind, n, gen);
    const auto b = data::make_toy2d(kind, n, gen);
    sw_s += sw(s, a) / sets;
    sw_f += sw(b, a) / sets;
    mmd_s += metrics::mmd_rbf(s, a).item<double>() / sets;
    mmd_f += metrics::mmd_rbf(b, a).item<double>() / sets;
  }
  std::printf(
      "sliced Wasserstein %.4f (floor %.4f, ratio %.2f); MMD %.2e (floor "
      "%.2e)\n",
      sw_s,
      sw_f,
      sw_s / sw_f,
      mmd_s,
      mmd_f);
  return {
      {"sliced_wasserstein", sw_s},
      {"sliced_wasserstein_floor", sw_f},
      {"sliced_wasserstein_ratio", sw_s / sw_f},
      {"mmd", mmd_s},
      {"mmd_floor", mmd_f},
      {"metric_points", n},
      {"metric_sets", sets}};
}

torch::Tensor scatter(
    const torch::Tensor& points,
    const std::string& title,
    double range,
    const torch::Tensor& reference) {
  std::vector<io::PointSet> sets;
  if (reference.defined()) {
    sets.push_back({reference.cpu(), {190, 190, 190}});
  }
  sets.push_back({points.cpu(), {214, 39, 40}});
  return io::scatter_plot(
      sets, io::ScatterOptions().range(-range, range).title(title));
}

void write_json(const std::string& path, const nlohmann::json& j) {
  std::ofstream out(path);
  out << j.dump(2) << "\n";
  if (!out) {
    throw std::runtime_error("cannot write " + path);
  }
}

nlohmann::json label_accuracy(
    const torch::Tensor& predicted,
    const torch::Tensor& requested,
    int64_t classes) {
  const auto want = requested.cpu();
  const auto hit = (predicted.cpu() == want).to(torch::kDouble);
  std::vector<double> per;
  for (int64_t k = 0; k < classes; ++k) {
    per.push_back(hit.index({want == k}).mean().item<double>());
  }
  return {
      {"overall", hit.mean().item<double>()},
      {"weakest", *std::min_element(per.begin(), per.end())},
      {"per_class", per}};
}

nlohmann::json image_stats(const torch::Tensor& images) {
  const auto x = images.to(torch::kCPU, torch::kDouble);
  return {
      {"sample_mean", x.mean().item<double>()},
      {"sample_std", x.std().item<double>()},
      {"ink_fraction", (x > 0.5).to(torch::kDouble).mean().item<double>()},
      {"grey_fraction",
       ((x > 0.1) & (x < 0.9)).to(torch::kDouble).mean().item<double>()}};
}

}  // namespace sbgm::examples
