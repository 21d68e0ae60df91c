#pragma once

// What the example programs share: device choice, the sampler flags and
// their SampleOptions, the noise process by name, timing, the loss curve
// and metrics.json. The library holds the logic; this is command-line glue.

#include <sbgm/model_file.h>
#include <sbgm/sbgm.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <functional>
#include <iostream>
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
  std::optional<double> eta = std::nullopt;
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

/// The flags every demo's training takes, with the demo's defaults (the
/// first five in aggregate initialization: steps, batch, lr, out, device).
struct TrainingFlags {
  int64_t steps = 1000;
  int64_t batch = 32;
  double lr = 1e-3;
  std::string out = "out";
  std::string device = "auto";
  int64_t lr_warmup = 0;
  std::string lr_schedule = "constant";
  double ema = 0.999;
  bool ema_warmup = true;
  uint64_t seed = 0;
  bool resume = false;
  double dist_timeout = 300;  // seconds, data-parallel collectives
};
/// Adds --steps, --batch, --lr, --lr-warmup, --lr-schedule, --ema,
/// --ema-warmup, --device, --seed, --resume, --out and --dist-timeout.
void add_training_flags(CLI::App& app, TrainingFlags& flags);
/// TrainerOptions with the steps, learning rate and its schedule, and the
/// EMA of the flags.
TrainerOptions trainer_options(const TrainingFlags& flags);

/// A noise process by name: a registered one (sbgm::process_registry():
/// "vp", "subvp", "ve", "ve_geometric", "edm", a user's) with its default
/// parameters, or a DDPM schedule "linear", "cosine" or "sigmoid" of T
/// steps as a "discrete" process with quantized model time.
std::shared_ptr<NoiseProcess> make_process(
    const std::string& name, int64_t T = 1000);
/// The names make_process knows: the registry's and the schedules'.
std::vector<std::string> process_names();

/// Joins the data-parallel group that the environment describes (torchrun,
/// Slurm, or RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT set by hand)
/// when it has more than one process, for tensors on `device`; returns
/// null for a single process. A demo then trains data-parallel on it
/// (TrainerOptions::process_group): --batch and --steps are per process;
/// rank 0 writes every file and samples (see exit_if_done).
std::shared_ptr<dist::ProcessGroup> join_launch(
    torch::Device device, const TrainingFlags& flags);

/// Minibatches of indices into `n` training items, for a loss closure: on
/// one process, `batch` uniform draws (the global generator); data-parallel
/// (`group`), a disjoint shard of each epoch's permutation on each rank
/// (data::ShardSampler, seeded with `seed`), whose place in the epoch
/// add_state_to() puts into the trainer's checkpoints.
class Minibatches {
 public:
  Minibatches(
      int64_t n,
      int64_t batch,
      uint64_t seed,
      const std::shared_ptr<dist::ProcessGroup>& group,
      torch::Device device);
  /// The next minibatch: [batch] int64 indices on the device.
  torch::Tensor next();
  /// Data-parallel: saves the shard's place in the trainer's checkpoints
  /// (and restores it on resume); nothing on one process.
  void add_state_to(Trainer& trainer);

 private:
  int64_t n_, batch_;
  torch::Device device_;
  std::optional<data::ShardSampler> shard_;
};

/// "16,32,64" as {16, 32, 64}; an entry that is not an integer is an error
/// that names it.
std::vector<int64_t> int_list(const std::string& text);

/// Seconds since `start`.
double seconds_since(std::chrono::steady_clock::time_point start);

/// The files of a demo's training run in its output directory: the
/// Trainer's CSV log and checkpoint, and the model file.
struct RunFiles {
  std::string csv;         // loss.csv
  std::string checkpoint;  // checkpoint.pt
  std::string model;       // model.safetensors
};
/// Creates `out_dir` and names its files; a fresh run (not `resume`) first
/// removes the log and checkpoint of an earlier one (on rank 0 of `group`).
RunFiles run_files(
    const std::string& out_dir,
    bool resume,
    const std::shared_ptr<dist::ProcessGroup>& group);
/// Writes loss.png (log scale) beside files.csv, of the "loss" column of
/// that log (its finite, positive values), when there are any.
void save_loss_plot(const RunFiles& files);

/// After Trainer::run(), ends the processes that have nothing left to do:
/// when a signal stopped the run (TrainerOptions::stop_on_signal; the
/// checkpoint is written), says how to resume and exits with 128 + the
/// signal's number; data-parallel, leaves `group` and exits 0 on every rank
/// but rank 0, which samples and writes the files alone.
void exit_if_done(
    const Trainer& trainer, const std::shared_ptr<dist::ProcessGroup>& group);

/// What a finished training run reports.
struct TrainReport {
  int64_t steps = 0;
  double seconds = 0;  // with the earlier runs' (a resumed run)
  double final_loss = 0;
};
/// Times a training run from its construction, counting the run it
/// continues: with `resume`, the figures stored in files.model, when that
/// file was saved at the step the checkpoint resumes from.
class RunTimer {
 public:
  RunTimer(RunFiles files, bool resume);
  /// The report of the run that ended with `last`: its steps, time (with the
  /// earlier run's) and final loss (a run resumed at its last step trains
  /// nothing: the stored one, else the last one in files.csv). Prints it.
  TrainReport report(const Trainer& trainer, const TrainLogEntry& last) const;

 private:
  RunFiles files_;
  std::optional<TrainingInfo> earlier_;
  std::chrono::steady_clock::time_point start_;
};

/// Copies the trainer's EMA weights (when it has an EMA) into `module`, to
/// sample with them, and puts the module in eval mode.
void use_ema(Trainer& trainer, torch::nn::Module& module);
/// The report's figures as a model file stores them.
TrainingInfo training_info(const TrainReport& report);

/// The standardizer's inverse as a model file's data transform.
DataTransform data_transform(const data::Standardizer& standard);

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

/// The digit classifier (sbgm-mnist-classifier's weights) at `path`, in
/// eval mode.
DigitClassifier load_classifier(const std::string& path);

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
