#pragma once

/// \file
/// What every sampler shares, public so that a sampler of your own behaves
/// like the built-in ones: the run options (generator, dtype/device,
/// starting point, trajectory, progress, a per-step callback), the result,
/// the grid argument, the starting state, the batched model call and the
/// loop bookkeeping (SamplerLoop).
///
/// A sampler of your own, in full (DDIM with eta = 0):
/// ```
/// using namespace sbgm::samplers;
/// SampleResult my_ddim(const sbgm::Model& model,
///                      const sbgm::NoiseProcess& process,
///                      torch::IntArrayRef shape, const CommonOptions& common)
///                      {
///   c10::InferenceMode guard;
///   auto pts = sbgm::grids::default_grid(process, 20).points(process);
///   auto x = initial_state(process, pts.front().t, shape, common, "my_ddim");
///   ModelCaller call(model, process);
///   SamplerLoop loop(common, pts.size() - 1, "my_ddim");
///   loop.start(x);
///   for (size_t i = 0; i + 1 < pts.size(); ++i) {
///     auto d = update::denoised(x, call(x, pts[i].t), model.prediction(),
///                               pts[i]);
///     x = update::ddim(d.x0, d.eps, torch::Tensor(), pts[i], pts[i + 1],
///                      0.0);
///     loop.step(i + 1, pts[i + 1].t, x, d.x0);
///   }
///   return loop.finish(x, call.nfe());
/// }
/// ```

#include <torch/arg.h>
#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "sbgm/grid.h"
#include "sbgm/model.h"
#include "sbgm/process.h"

namespace sbgm::samplers {

/// Called after each step with (step, total): step runs 1..total. Adaptive
/// solvers, whose total is unknown, pass total = 0.
using ProgressFn = std::function<void(int64_t step, int64_t total)>;

/// What a step callback sees.
struct StepInfo {
  /// 1-based step number and the total (0 when unknown).
  int64_t step;
  int64_t total;
  /// The time the state is at after this step (the data time after the
  /// last step of a grid that ends there).
  double time;
  /// The state after the step.
  const torch::Tensor& x;
  /// The model's prediction of x0 made during the step (undefined for
  /// samplers that never form it).
  const torch::Tensor& x0;
};
using StepCallback = std::function<void(const StepInfo& info)>;

/// Options every sampler takes.
///
/// Example: `CommonOptions().generator(sbgm::make_generator(0))
///               .trajectory_every(10)`
struct CommonOptions {
  /// Random generator for the starting noise and every noise draw; the same
  /// seed gives the same samples. Default: none (torch's default generator).
  TORCH_ARG(std::optional<torch::Generator>, generator) = std::nullopt;
  /// dtype of the samples. Default: float32.
  TORCH_ARG(torch::ScalarType, dtype) = torch::kFloat;
  /// Device of the samples. Default: CPU.
  TORCH_ARG(torch::Device, device) = torch::Device(torch::kCPU);
  /// Starting point instead of a fresh prior draw; must have the requested
  /// shape and finite values (its dtype and device are then used).
  /// Default: undefined.
  TORCH_ARG(torch::Tensor, x_init) = {};
  /// Record the state every k steps (plus the start and the end) in
  /// `SampleResult::trajectory`; 0 records nothing. Default: 0.
  TORCH_ARG(int64_t, trajectory_every) = 0;
  /// Progress callback. Default: none.
  TORCH_ARG(ProgressFn, progress) = nullptr;
  /// Called after every step with {step, time, x, predicted x0}; forming x0
  /// costs a kernel or two per step, paid only when this is set.
  /// Default: none.
  TORCH_ARG(StepCallback, callback) = nullptr;
  /// ddpm, ddim and euler_maruyama on a CUDA state: capture one step as a
  /// CUDA graph (after two warm-up steps) and replay it for every step, so a
  /// step costs a few launches whatever the model's size. The samples equal
  /// the eager ones up to rounding (same generator, same draws). The model
  /// must not sync with the host (no .item(), no data-dependent shapes, no
  /// copies from the CPU) nor draw random numbers, and its parameters must
  /// not move while the run lasts; it is called three extra times (two
  /// warm-up steps and the capture; the state is restored, module state such
  /// as BatchNorm running statistics is not). The state must be float32 or
  /// float64; a step callback is not called. No effect on CPU states; the
  /// other samplers throw when it is set. Default: false.
  TORCH_ARG(bool, cuda_graph) = false;
  /// Per-sample noise streams: when set, sample i of the batch draws all
  /// its noise (the starting point and every step's noise) from
  /// generators of its own, seeded from (per_sample_seed, first_sample +
  /// i), instead of from `generator`. A sample then does not depend on the
  /// batch it is drawn in: 64 samples drawn at once equal, bit for bit on
  /// the CPU, the same 64 drawn 8 at a time with first_sample 0, 8, ..., 56
  /// (as far as the model itself treats samples independently; the
  /// predictor-corrector sampler then sizes its Langevin steps per sample
  /// instead of by batch means, and Dopri5's adaptive steps, chosen for the
  /// whole batch, still depend on it up to its tolerance). The model is
  /// then evaluated on chunks of exactly `model_batch` samples (see
  /// batch_invariant_model). Not with cuda_graph. Costs one small noise
  /// draw per sample and step. Default: unset.
  TORCH_ARG(std::optional<uint64_t>, per_sample_seed) = std::nullopt;
  /// Index of the batch's first sample in the per-sample streams (>= 0).
  /// Default: 0.
  TORCH_ARG(int64_t, first_sample) = 0;
  /// With per_sample_seed: the model sees calls of exactly this many
  /// samples (>= 1), sample g at row g % model_batch (see
  /// batch_invariant_model). Default: 64.
  TORCH_ARG(int64_t, model_batch) = 64;
};

/// The model as a sampler with these options calls it: itself, or with
/// per_sample_seed, evaluated in calls of exactly options.model_batch()
/// samples in which sample g (first_sample + its row) always sits at row
/// g % model_batch, the other rows zero (their outputs dropped; a time
/// shared by the batch stays a stride-0 view). Kernels pick their algorithm
/// by batch size, and OpenBLAS's arithmetic even depends on a row's index
/// within its tile, so without this a sample's last bits would depend on
/// the batch it is drawn in; with it, on its own input only (for networks
/// that treat samples independently). A batch of 8 then costs a call of
/// 64 rows.
Model batch_invariant_model(const Model& model, const CommonOptions& options);

/// Where a sampler's N(0, I) noise comes from: the options' generator (or
/// torch's default one), or, with CommonOptions::per_sample_seed, one
/// generator per sample. Stream 0 is the starting draw (initial_state);
/// a sampler draws its step noise from stream 1, so each per-sample stream
/// depends on nothing but its seed, sample index and stream. Copies share
/// their generators; a built-in sampler makes one per run.
class NoiseSource {
 public:
  explicit NoiseSource(const CommonOptions& options, uint64_t stream = 1);
  /// Fills `buf` (dimension 0 is the batch) with N(0, I) in place.
  void fill(torch::Tensor& buf);
  /// A fresh N(0, I) tensor of that shape and options.
  torch::Tensor randn(
      torch::IntArrayRef shape, const torch::TensorOptions& options);
  /// True with per-sample streams.
  bool per_sample() const;

 private:
  struct State;
  std::shared_ptr<State> state_;
};

/// What a sampler returns.
struct SampleResult {
  /// The samples, of the requested shape.
  torch::Tensor samples;
  /// States at the start, every `trajectory_every` steps, and the end
  /// (copies); empty unless asked for.
  std::vector<torch::Tensor> trajectory;
  /// Number of model evaluations.
  int64_t nfe = 0;
};

/// A grid given as a number of steps (the process's default grid with that
/// many steps), as a TimeGrid, or left to the sampler's default.
///
/// Example: `DDIMOptions().grid(50)` or `.grid(sbgm::grids::karras(p, 20))`
class GridSpec {
 public:
  /// The sampler's default.
  GridSpec() = default;
  /// The process's default grid with this many steps (>= 1).
  GridSpec(int64_t num_steps);  // NOLINT: implicit on purpose
  GridSpec(int num_steps) : GridSpec(static_cast<int64_t>(num_steps)) {}
  GridSpec(TimeGrid grid);  // NOLINT: implicit on purpose

  /// The grid for `process`, with `default_steps` steps when none is set.
  TimeGrid resolve(const NoiseProcess& process, int64_t default_steps) const;
  bool is_default() const {
    return !grid_ && num_steps_ == 0;
  }

 private:
  int64_t num_steps_ = 0;
  std::optional<TimeGrid> grid_;
};

/// The starting state: options.x_init (checked against shape and for
/// finite values: one host read) or N(0, std^2 I) drawn from the options'
/// noise (NoiseSource stream 0), where std is process.prior_std() at t_max and
/// prior_std * sqrt((a^2 + s^2) / (a_max^2 + s_max^2)) when the grid starts
/// at an earlier time t0 (the spread of unit-variance data there).
torch::Tensor initial_state(
    const NoiseProcess& process,
    double t0,
    torch::IntArrayRef shape,
    const CommonOptions& options,
    const char* where);

/// Calls a model at one time for a whole batch, as the built-in samplers
/// do: the process's model time is written into a one-element buffer and
/// handed over as an expanded [N] tensor (stride 0), so networks can see
/// that the time is shared (sbgm::MLP then embeds it once). Counts calls.
/// Checks once that the process can feed the model (Model::check_process).
class ModelCaller {
 public:
  ModelCaller(
      Model model, const NoiseProcess& process, const char* where = "sampler");
  /// The model's raw output at time t.
  torch::Tensor operator()(const torch::Tensor& x, double t);
  /// Number of model evaluations so far.
  int64_t nfe() const {
    return nfe_;
  }
  const Model& model() const {
    return model_;
  }

 private:
  Model model_;
  const NoiseProcess& process_;
  torch::Tensor tbuf_;
  int64_t nfe_ = 0;
};

/// Trajectory, progress and callback bookkeeping for one run, and the
/// finiteness check at the end.
class SamplerLoop {
 public:
  /// total: the number of steps (0 when unknown).
  SamplerLoop(const CommonOptions& options, int64_t total, std::string where);
  /// Records the starting state.
  void start(const torch::Tensor& x);
  /// True when a callback wants the predicted x0 (so a sampler forms it).
  bool wants_x0() const {
    return static_cast<bool>(options_.callback());
  }
  /// After step `step` (1-based) to time t: progress, callback and a
  /// trajectory record every k steps (each record checks for NaN).
  void step(
      int64_t step,
      double t,
      const torch::Tensor& x,
      const torch::Tensor& x0 = torch::Tensor());
  /// Checks the final state (one device sync; "the model produced
  /// non-finite values"), records it and builds the result.
  SampleResult finish(torch::Tensor x, int64_t nfe);

 private:
  const CommonOptions& options_;
  int64_t total_;
  std::string where_;
  int64_t last_recorded_ = -1;
  int64_t last_step_ = 0;
  std::vector<torch::Tensor> trajectory_;
};

/// Throws unless every value of x is finite (one device sync), blaming the
/// model.
void check_finite(const torch::Tensor& x, const char* where);

}  // namespace sbgm::samplers
