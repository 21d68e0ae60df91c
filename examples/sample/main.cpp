// sbgm-sample: loads a model file (sbgm::save_model; the demos write
// model.safetensors) and samples it with any sampler and grid by name.
//
//   sbgm-sample runs/swiss/model.safetensors --sampler dpmpp_2m
//       --steps 20 --num-samples 64 --seed 0 --out samples
//
// Every sample draws its noise from a stream of its own (seeded by --seed
// and its index) and the model sees fixed chunks of samples, so the samples
// do not depend on --batch: a demo that sampled with the same sampler,
// grid, steps, seed and number of threads (sbgm-swiss-roll uses one by
// default) wrote the same samples.npy, bit for bit on the CPU. Writes
// samples.npy (mapped to the data by the file's data transform) and
// samples.png: an image grid for images, a scatter plot for 2-D points.

#include "../common/common.h"

namespace ex = sbgm::examples;
namespace fs = std::filesystem;

namespace {

struct Config {
  std::string model;
  ex::SamplingFlags sampling;
  int64_t num_samples = 64;
  int64_t batch = 0;
  uint64_t seed = 0;
  std::string device = "cpu";
  std::string weights = "ema";
  int threads = 0;
  std::string out = "samples";
};

int run(const Config& c) {
  if (c.threads > 0) {
    sbgm::set_num_threads(c.threads);
  }
  const torch::Device device = ex::pick_device(c.device);
  const auto m = sbgm::load_model(
      c.model,
      device,
      c.weights == "raw" ? sbgm::ModelWeights::Raw
                         : sbgm::ModelWeights::Sampling);
  std::printf(
      "%s: a %s predicting %s on %s",
      c.model.c_str(),
      m.network_kind.c_str(),
      sbgm::to_string(m.model.prediction()).c_str(),
      m.process->describe().c_str());
  if (m.training) {
    std::printf(
        ", trained %lld steps in %.1f s (final loss %.4f)",
        static_cast<long long>(m.training->step),
        m.training->train_seconds,
        m.training->final_loss);
  }
  std::printf("\n");
  std::vector<int64_t> shape{c.num_samples};
  shape.insert(shape.end(), m.sample_shape.begin(), m.sample_shape.end());
  const auto so =
      ex::sample_options(c.sampling, *m.process, device, c.seed, /*frames=*/1);
  const auto [result, seconds] =
      ex::sample(m.model, *m.process, shape, so, c.batch);
  const auto data =
      m.data_transform.apply(result.samples).to(torch::kCPU, torch::kFloat);
  fs::create_directories(c.out);
  const auto out = [&](const char* f) {
    return (fs::path(c.out) / f).string();
  };
  if (m.sample_shape.size() == 3) {
    ex::save_image_samples(c.out, data, {});
  } else {
    sbgm::io::write_npy(out("samples.npy"), data);
    if (m.sample_shape == std::vector<int64_t>{2}) {
      const double range = 1.15 * data.abs().max().item<double>();
      sbgm::io::save_png(
          out("samples.png"),
          ex::scatter(data, c.sampling.sampler + " samples", range));
    }
  }
  std::printf(
      "wrote samples.npy%s to %s\n",
      m.sample_shape.size() == 3 || m.sample_shape == std::vector<int64_t>{2}
          ? " and samples.png"
          : "",
      c.out.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"sbgm-sample: samples a saved model"};
  Config c;
  app.add_option("model", c.model, "model file (sbgm::save_model)")
      ->required()
      ->check(CLI::ExistingFile);
  c.sampling.sampler = "dpmpp_2m";
  ex::add_sampling_flags(app, c.sampling, "--steps");
  app.add_option("--num-samples", c.num_samples, "samples to draw")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 30))
      ->capture_default_str();
  app.add_option(
         "--batch", c.batch, "samples per sampler call (0: all at once)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--seed", c.seed, "seed of the noise streams")
      ->capture_default_str();
  app.add_option("--device", c.device, "cpu, cuda, cuda:1 or auto")
      ->capture_default_str();
  app.add_option(
         "--weights", c.weights, "ema (what was saved to sample) or raw")
      ->check(CLI::IsMember({"ema", "raw"}));
  app.add_option(
      "--threads",
      c.threads,
      "CPU threads (0: LibTorch's default); the bits of the samples can "
      "depend on it");
  app.add_option("--out", c.out, "output directory")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  return ex::guarded_main([&] { return run(c); });
}
