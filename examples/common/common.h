#pragma once

// What the example programs share: device choice, the sampler flags and
// their SampleOptions, the noise process by name, timing, the loss curve
// and metrics.json. The library holds the logic; this is command-line glue.

#include <sbgm/model_file.h>
#include <sbgm/sbgm.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace sbgm::examples {

/// "auto" (CUDA when available), "cpu", "cuda", "cuda:1", ...; an
/// unusable device is an error that says why.
torch::Device pick_device(const std::string& name);

/// The flags every demo's sampling takes.
struct SamplingFlags {
  std::string sampler = "default";
  std::string grid = "default";
  int64_t steps = 0;  // 0: the sampler's default
  std::optional<double> eta;
  bool cuda_graph = false;
};
/// Adds --sampler, --grid, --sample-steps (or `steps_flag`), --eta and
/// --cuda-graph; the names are checked against the library's lists.
void add_sampling_flags(
    CLI::App& app,
    SamplingFlags& flags,
    const std::string& steps_flag = "--sample-steps");
/// SampleOptions from the flags, for `device`, recording about `frames`
/// trajectory states. The noise comes from per-sample streams seeded with
/// `seed` (CommonOptions::per_sample_seed), so the samples do not depend on
/// the batch size; with --cuda-graph, from one generator seeded so.
samplers::SampleOptions sample_options(
    const SamplingFlags& flags,
    const NoiseProcess& process,
    torch::Device device,
    uint64_t seed,
    int64_t frames);

/// The flags every demo's training takes, with the demo's defaults.
struct TrainingFlags {
  int64_t steps = 1000;
  int64_t batch = 32;
  double lr = 1e-3;
  int64_t lr_warmup = 0;
  std::string lr_schedule = "constant";
  double ema = 0.999;
  bool ema_warmup = true;
  std::string device = "auto";
  uint64_t seed = 0;
  bool resume = false;
  std::string out = "out";
  double dist_timeout = 300;  // seconds, data-parallel collectives
};
/// Adds --steps, --batch, --lr, --lr-warmup, --lr-schedule, --ema,
/// --ema-warmup, --device, --seed, --resume, --out and --dist-timeout.
void add_training_flags(CLI::App& app, TrainingFlags& flags);
/// TrainerOptions with the steps, learning rate and its schedule, and the
/// EMA of the flags.
TrainerOptions trainer_options(const TrainingFlags& flags);

/// A noise process by name, through sbgm::process_registry(): any
/// registered process ("vp", "subvp", "ve" with sigma = ve_sigma,
/// "ve_geometric", "edm", a user's) with its default parameters, or a DDPM
/// schedule "linear" (also "discrete"), "cosine", "sigmoid" with T steps as
/// a "discrete" process (quantized model time when `quantize`).
std::shared_ptr<NoiseProcess> make_process(
    const std::string& name,
    int64_t num_timesteps = 1000,
    double ve_sigma = 25.0,
    bool quantize = true);
/// The names make_process knows: the registry's and the schedules'.
std::vector<std::string> process_names();

/// Joins the data-parallel group that the environment describes (torchrun,
/// Slurm, or RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT set by hand)
/// when it has more than one process, for tensors on `device`; returns
/// null for a single process. train() then trains data-parallel on it:
/// --batch and --steps are per process; rank 0 writes every file and
/// samples, the other ranks exit 0 when training ends.
std::shared_ptr<dist::ProcessGroup> join_launch(
    torch::Device device, const TrainingFlags& flags);
/// The group join_launch() joined, or null.
std::shared_ptr<dist::ProcessGroup> launch_group();

/// Seconds since `start`.
double seconds_since(std::chrono::steady_clock::time_point start);

/// The "loss" column of the trainer's CSV log (finite, positive values).
std::vector<double> read_losses(const std::string& csv_path);
/// Writes loss.png (log scale) when there are losses.
void save_loss_plot(const std::string& path, const std::vector<double>& losses);

/// What train() reports.
struct TrainReport {
  double seconds = 0;
  double final_loss = 0;
  int64_t steps = 0;
  std::vector<double> losses;  // the logged means, for loss.png
};

/// Called by train() when training ends, before the EMA is swapped in:
/// the module holds the trained weights, `ema` (null without one) their
/// average. Where the demos save their model file.
using TrainedFn =
    std::function<void(const EMA* ema, const TrainReport& report)>;

/// Trains `module` with a Trainer writing loss.csv and checkpoint.pt into
/// `out_dir` (continuing from them with `resume`, else starting afresh),
/// prints about ten progress lines and a summary, calls `on_trained`, then
/// swaps the EMA weights in (when there is an EMA) and puts the module in
/// eval mode. A resumed run's time and final loss include those of the
/// run it continues, as stored in `out_dir`/model.safetensors.
/// `generators` are the loss's own generators (besides the global one),
/// saved in the checkpoints so that a resumed run continues bit for bit.
/// Ctrl-C (SIGINT) or SIGTERM writes the checkpoint and exits the process
/// with 128 + the signal's number, saying how to resume. `states` are
/// further Trainer::add_state states (name, save, load).
struct NamedState {
  std::string name;
  std::function<torch::Tensor()> save;
  std::function<void(const torch::Tensor&)> load;
};
TrainReport train(
    std::shared_ptr<torch::nn::Module> module,
    LossFn loss,
    TrainerOptions options,
    const std::string& out_dir,
    bool resume,
    std::shared_ptr<torch::optim::Optimizer> optimizer = nullptr,
    const TrainedFn& on_trained = nullptr,
    const std::vector<std::pair<std::string, at::Generator>>& generators = {},
    const std::vector<NamedState>& states = {});

/// The standardizer's inverse as a model file's data transform.
DataTransform data_transform(const data::Standardizer& standard);

/// The model file the demos write into their output directory.
std::string model_path(const std::string& out_dir);
/// The report's figures as a model file stores them.
TrainingInfo training_info(const TrainReport& report);
/// A TrainedFn that saves `net` (an MLP or UNet) with `options`, the EMA
/// and the training figures to model_path(out_dir).
template <class Net>
TrainedFn model_saver(
    const std::string& out_dir,
    Net net,
    Prediction prediction,
    std::shared_ptr<const NoiseProcess> process,
    SaveModelOptions options) {
  return [=](const EMA* ema, const TrainReport& report) {
    auto o = options;
    o.ema(ema).training(training_info(report));
    save_model(model_path(out_dir), net, prediction, *process, o);
  };
}

/// The training figures for metrics.json: steps, batch, lr (and its
/// warm-up and schedule), EMA, train_seconds, final_loss.
nlohmann::json training_json(
    const TrainingFlags& flags, const TrainReport& report);

/// The sampling figures for metrics.json: process, sampler, grid, device,
/// num_samples, nfe, sample_seconds.
nlohmann::json sampling_json(
    const NoiseProcess& process,
    const SamplingFlags& flags,
    torch::Device device,
    const samplers::SampleResult& result,
    double seconds);

/// MNIST quality figures with the digit classifier at `classifier_path`:
/// the Fréchet distance of classifier features of the samples against the
/// test images and its floor (as many training images against the test
/// images), the classifier score of both, and the share of the samples
/// read as each digit (class_fractions). Images in [0, 1].
nlohmann::json mnist_quality(
    const std::string& classifier_path,
    const torch::Tensor& samples,
    const torch::Tensor& train_images,
    const torch::Tensor& test_images);

/// Runs a sampler (by name, see sample_options), timing it and printing
/// what it did.
struct Sampled {
  samplers::SampleResult result;
  double seconds = 0;
};
/// In batches of `batch` samples (0: all at once), each told its first
/// sample's index; trajectories are joined along the batch. The model's
/// calls (CommonOptions::model_batch) have at most shape[0] rows.
Sampled sample(
    const Model& model,
    const NoiseProcess& process,
    torch::IntArrayRef shape,
    samplers::SampleOptions options,
    int64_t batch = 0);

/// MNIST's training split and, when present, its test split; a missing
/// training split is an error that says how to fetch MNIST.
struct MnistSplits {
  data::MnistData train;
  std::optional<data::MnistData> test;
};
MnistSplits load_mnist_splits(const std::string& dir);

/// Mean bits/dim of the first k test images (uniformly dequantized 8-bit
/// values mapped by `to_model` onto an interval of width `data_width`)
/// through the probability-flow ODE, Dopri5 with rtol = atol = tol.
nlohmann::json mnist_bits_per_dim(
    const Model& model,
    const NoiseProcess& process,
    const torch::Tensor& test_images,
    int64_t k,
    const std::function<torch::Tensor(const torch::Tensor&)>& to_model,
    double data_width,
    double tol,
    torch::Device device);

/// Statistics of images in [0, 1] for metrics.json: sample_mean, sample_std,
/// ink_fraction (the share of pixels above 0.5; MNIST's is about 0.13) and
/// grey_fraction (the share in (0.1, 0.9): clean strokes have few, leftover
/// noise many).
nlohmann::json image_stats(const torch::Tensor& images);

/// Writes samples.npy, samples.png (a grid) and denoise.png (the first six
/// samples along the trajectory, mapped by `to_data`) for images in [0, 1].
void save_image_samples(
    const std::string& out_dir,
    const torch::Tensor& samples,
    const std::vector<torch::Tensor>& trajectory,
    const DataTransform& to_data = {});

/// Runs `body` and turns an exception into a message on stderr and exit
/// status 1; sets up the CPU allocator and the threads (one per core, or
/// OMP_NUM_THREADS; OpenBLAS at one) first (sbgm/perf.h).
int guarded_main(const std::function<int()>& body);

/// Distances of 2-D samples to a toy set, and their floors: the sliced
/// Wasserstein distance (256 projections) and MMD of the first n samples
/// against `sets` fresh draws of n points each, averaged, and the same
/// between as many pairs of fresh draws (what exact samples would score).
/// A ratio near 1 means the samples are as close to the data as the data
/// is to itself.
nlohmann::json toy2d_distances(
    data::Toy2d kind,
    const torch::Tensor& samples,
    int64_t n,
    uint64_t seed,
    int64_t sets = 8);

/// A scatter plot of `points` (red) over `reference` (grey, optional) in
/// [-range, range]^2, titled.
torch::Tensor scatter(
    const torch::Tensor& points,
    const std::string& title,
    double range,
    const torch::Tensor& reference = {});

/// The share of `predicted` labels equal to `requested` ([N] int64 each):
/// {"overall", "weakest" (the lowest class), "per_class": [...]}.
nlohmann::json label_accuracy(
    const torch::Tensor& predicted,
    const torch::Tensor& requested,
    int64_t classes);

/// Writes `j` to `path` (2-space indent), throwing when it cannot.
void write_json(const std::string& path, const nlohmann::json& j);

}  // namespace sbgm::examples
