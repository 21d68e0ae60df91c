#pragma once

/// \file
/// The built-in samplers, on any noise process and any time grid, and
/// `sample()`, which picks one by name.
///
/// Each takes (model, process, shape, options); every options struct holds
/// its grid (a number of steps or a TimeGrid; see GridSpec) and the
/// CommonOptions, so nothing is passed positionally:
/// ```
/// auto r = sbgm::samplers::ddim(model, process, {64, 2},
///     DDIMOptions().grid(50).common(CommonOptions().generator(gen)));
/// auto s = sbgm::samplers::sample(model, process, {64, 2},
///     SampleOptions().sampler("ddim").grid("trailing").steps(10));
/// ```
/// Every grid that ends at the data ends with a step that lands on the
/// model's x0 (the DDPM/DDIM step into alpha = 1, sigma = 0, or Tweedie's
/// denoising step x <- x0 for the SDE and ODE samplers), so the samples
/// carry no residual noise. The step math is in sbgm/samplers/updates.h.

#include <torch/arg.h>
#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "sbgm/model.h"
#include "sbgm/registry.h"
#include "sbgm/samplers/common.h"
#include "sbgm/samplers/updates.h"

namespace sbgm::samplers {

namespace detail {
class AffineStepper;
}

/// Example: `DDPMOptions().variance(DDPMVariance::Posterior).clip_x0(true)`
struct DDPMOptions {
  /// Default: every step of a discrete schedule (linspace with T steps),
  /// 1000 steps of the default grid otherwise.
  TORCH_ARG(GridSpec, grid) = {};
  /// Which variance. Default: Beta.
  TORCH_ARG(DDPMVariance, variance) = DDPMVariance::Beta;
  /// Clip the predicted x0 to [-clip_range, clip_range] before the step.
  /// Default: false.
  TORCH_ARG(bool, clip_x0) = false;
  /// Default: 1.
  TORCH_ARG(double, clip_range) = 1.0;
  TORCH_ARG(CommonOptions, common) = {};
};

/// Ancestral sampling (Ho et al. 2020, Alg. 2) on the grid: update::ddpm
/// at every step. One model evaluation per step.
SampleResult ddpm(
    const Model& model,
    const NoiseProcess& process,
    torch::IntArrayRef shape,
    const DDPMOptions& options = {});

/// Example: `DDIMOptions().grid(50).eta(0.0)`
struct DDIMOptions {
  /// Default: 50 steps of the process's default grid.
  TORCH_ARG(GridSpec, grid) = {};
  /// eta = 0: deterministic DDIM; eta = 1: the DDPM posterior variance.
  /// Default: 0.
  TORCH_ARG(double, eta) = 0.0;
  /// Clip the predicted x0 (and step with the eps consistent with it).
  /// Default: false.
  TORCH_ARG(bool, clip_x0) = false;
  /// Default: 1.
  TORCH_ARG(double, clip_range) = 1.0;
  TORCH_ARG(CommonOptions, common) = {};
};

/// DDIM (Song, Meng & Ermon 2021, eq. 12) on the grid: update::ddim at
/// every step. One model evaluation per step.
SampleResult ddim(
    const Model& model,
    const NoiseProcess& process,
    torch::IntArrayRef shape,
    const DDIMOptions& options = {});

/// Example: `EulerMaruyamaOptions().grid(500)`
struct EulerMaruyamaOptions {
  /// Default: 1000 steps of the process's default grid.
  TORCH_ARG(GridSpec, grid) = {};
  TORCH_ARG(CommonOptions, common) = {};
};

/// Euler-Maruyama on the reverse SDE (update::euler_maruyama) between the
/// grid's times; a last step into the data is Tweedie's x <- x0. One model
/// evaluation per step.
SampleResult euler_maruyama(
    const Model& model,
    const NoiseProcess& process,
    torch::IntArrayRef shape,
    const EulerMaruyamaOptions& options = {});

/// The predictor of the predictor-corrector sampler.
enum class Predictor {
  /// update::reverse_diffusion.
  ReverseDiffusion,
  /// update::euler_maruyama.
  EulerMaruyama,
};

/// Example: `PredictorCorrectorOptions().grid(500).snr(0.16)`
struct PredictorCorrectorOptions {
  /// Default: 1000 steps of the process's default grid.
  TORCH_ARG(GridSpec, grid) = {};
  /// Default: ReverseDiffusion.
  TORCH_ARG(Predictor, predictor) = Predictor::ReverseDiffusion;
  /// Langevin steps before each predictor step (>= 0). Default: 1.
  TORCH_ARG(int64_t, corrector_steps) = 1;
  /// Signal-to-noise ratio of the Langevin corrector (> 0). Default: 0.16.
  TORCH_ARG(double, snr) = 0.16;
  TORCH_ARG(CommonOptions, common) = {};
};

/// Predictor-corrector sampling (Song et al. 2021, Alg. 1-3 and score_sde):
/// at each grid time, `corrector_steps` Langevin steps
///   e = 2 k^2 (snr |z| / |score|)^2,  x <- x + e score + sqrt(2 e) z
/// (|.| the per-sample L2 norm averaged over the batch, kept on the device;
/// k = alpha_from / alpha_to of the step), then the predictor to the next
/// time; into the data, the corrector then Tweedie's x <- x0.
/// (1 + corrector_steps) model evaluations per step.
SampleResult predictor_corrector(
    const Model& model,
    const NoiseProcess& process,
    torch::IntArrayRef shape,
    const PredictorCorrectorOptions& options = {});

/// ODE solvers.
enum class ODEMethod {
  /// Euler on the grid; 1 evaluation per step.
  Euler,
  /// Heun (explicit trapezoid, order 2) on the grid; 2 evaluations per step.
  Heun,
  /// Dormand-Prince 5(4) with adaptive steps between consecutive grid times
  /// (rtol, atol; error measured as the RMS over all entries of err / (atol
  /// + rtol max(|y0|, |y1|))). Each step reads the error norm on the host:
  /// one device sync per step.
  Dopri5,
};

/// Example: `ODEOptions().method(ODEMethod::Heun).grid(100)`
struct ODEOptions {
  /// Default: 2 steps of the default grid, i.e. from t_max to t_min and
  /// then Tweedie's step to the data (with Dopri5 between them).
  TORCH_ARG(GridSpec, grid) = {};
  /// Default: Dopri5.
  TORCH_ARG(ODEMethod, method) = ODEMethod::Dopri5;
  /// Relative tolerance of Dopri5 (> 0). Default: 1e-5.
  TORCH_ARG(double, rtol) = 1e-5;
  /// Absolute tolerance of Dopri5 (> 0). Default: 1e-5.
  TORCH_ARG(double, atol) = 1e-5;
  /// Most Dopri5 steps (accepted or not) per grid interval before giving
  /// up with an error. Default: 10000.
  TORCH_ARG(int64_t, max_steps) = 10000;
  TORCH_ARG(CommonOptions, common) = {};
};

/// The probability-flow ODE dx/dt = f x - g^2 score / 2 (Song et al. 2021,
/// eq. 13; update::probability_flow) solved in t between the grid's times;
/// a last step into the data is Tweedie's x <- x0 (score_sde's noise
/// removal). The trajectory and progress count grid steps.
SampleResult ode(
    const Model& model,
    const NoiseProcess& process,
    torch::IntArrayRef shape,
    const ODEOptions& options = {});

// ---- the few-step solvers (Karras et al. 2022; Lu et al. 2022) -------------

/// Example: `EulerAncestralOptions().grid(30).eta(1.0)`
struct EulerAncestralOptions {
  /// Default: 50 steps of the process's default grid.
  TORCH_ARG(GridSpec, grid) = {};
  /// Scale of the ancestral noise (0: deterministic Euler). Default: 1.
  TORCH_ARG(double, eta) = 1.0;
  /// Factor on the noise drawn (> 0). Default: 1.
  TORCH_ARG(double, s_noise) = 1.0;
  TORCH_ARG(CommonOptions, common) = {};
};

/// Euler-ancestral (k-diffusion's sample_euler_ancestral; update::
/// euler_ancestral) on the grid. One model evaluation per step; with
/// cuda_graph on CUDA like ddpm.
SampleResult euler_ancestral(
    const Model& model,
    const NoiseProcess& process,
    torch::IntArrayRef shape,
    const EulerAncestralOptions& options = {});

/// Example: `HeunOptions().grid(18)` (EDM's deterministic sampler) or
/// `HeunOptions().s_churn(40).s_tmin(0.05).s_tmax(50).s_noise(1.003)`
struct HeunOptions {
  /// Default: 18 steps of the process's default grid (Karras' for EDM).
  TORCH_ARG(GridSpec, grid) = {};
  /// 2: Heun (EDM Alg. 2); 1: Euler with the same churn. Default: 2.
  TORCH_ARG(int64_t, order) = 2;
  /// Stochasticity S_churn >= 0; gamma = min(S_churn / N, sqrt(2) - 1) on
  /// the steps whose noise level lies in [s_tmin, s_tmax]. Default: 0.
  TORCH_ARG(double, s_churn) = 0.0;
  /// Range of noise levels (sigma / alpha) that churn. Defaults: 0, inf.
  TORCH_ARG(double, s_tmin) = 0.0;
  TORCH_ARG(double, s_tmax) = std::numeric_limits<double>::infinity();
  /// Factor on the churn noise (> 0). Default: 1.
  TORCH_ARG(double, s_noise) = 1.0;
  TORCH_ARG(CommonOptions, common) = {};
};

/// EDM's sampler (Karras et al. 2022, Alg. 2) in the scaled variables of
/// any process: churn (update::edm_churn), an Euler step (update::euler)
/// and, unless the step lands on the data, Heun's correction
/// (update::heun_correct). 2 model evaluations per step, 1 into the data.
/// The trapezoid needs steps that are small next to sigma / alpha: on a
/// discrete cosine schedule, whose sigma / alpha is 1e4 at its last step,
/// use Karras' grid (a linspace step from 1e4 to 30 ruins the correction).
SampleResult heun(
    const Model& model,
    const NoiseProcess& process,
    torch::IntArrayRef shape,
    const HeunOptions& options = {});

/// Example: `DPMSolverOptions().order(2).grid(20)`
struct DPMSolverOptions {
  /// Default: 20 steps of the process's default grid.
  TORCH_ARG(GridSpec, grid) = {};
  /// 1, 2 or 3 (the multistep order; the first steps use what history
  /// there is). Default: 2.
  TORCH_ARG(int64_t, order) = 2;
  /// The SDE variant (SDE-DPM-Solver++; order 1 or 2). Default: false.
  TORCH_ARG(bool, sde) = false;
  /// Lower the order on the last steps of a grid that ends at the data:
  /// the step into the data is always first order (its h is infinite), and
  /// with order 3 the one before is at most second order. Default: true.
  TORCH_ARG(bool, lower_order_final) = true;
  TORCH_ARG(CommonOptions, common) = {};
};

/// DPM-Solver++ (Lu et al. 2022) with data prediction, multistep:
/// update::dpmpp_1, dpmpp_2m, dpmpp_3m (or the SDE ones). One model
/// evaluation per step; the folded per-step coefficients (x, the current
/// and two earlier x0 estimates, noise) are precomputed on the host from
/// those functions.
SampleResult dpm_solver(
    const Model& model,
    const NoiseProcess& process,
    torch::IntArrayRef shape,
    const DPMSolverOptions& options = {});

/// A sampler's step objects: one object, one run. Steps are numbered i =
/// 0..num_steps()-1 in the order they run (from the prior to the data);
/// step(x, i) moves x from time(i) to time(i + 1) in place, with every
/// per-step coefficient precomputed on the host (a model call plus two or
/// three in-place kernels and a noise draw). Runs under its own
/// c10::InferenceMode and reuses internal buffers: one object per thread.
/// These are what ddpm() and euler_maruyama() run; benchmarks time `step`.
///
/// Example:
/// ```
/// sbgm::samplers::DDPMSampler s(model, process, DDPMOptions());
/// c10::InferenceMode guard;
/// auto x = torch::randn({n, 2});
/// for (int64_t i = 0; i < s.num_steps(); ++i) s.step(x, i);
/// ```
class StepSampler {
 public:
  int64_t num_steps() const;
  /// Time of the state before step i (i in [0, num_steps()]; the last is
  /// where the run ends).
  double time(int64_t i) const;
  /// Step i in place.
  void step(torch::Tensor& x, int64_t i);

 protected:
  StepSampler() = default;
  std::shared_ptr<detail::AffineStepper> impl_;
  std::vector<double> times_;
};

/// The DDPM step object (update::ddpm at every step).
class DDPMSampler : public StepSampler {
 public:
  DDPMSampler(
      Model model,
      const NoiseProcess& process,
      const DDPMOptions& options = {});
};

/// The Euler-Maruyama step object (update::euler_maruyama, then Tweedie's
/// step into the data).
class EulerMaruyamaSampler : public StepSampler {
 public:
  EulerMaruyamaSampler(
      Model model,
      const NoiseProcess& process,
      const EulerMaruyamaOptions& options = {});
};

// ---- by name ----------------------------------------------------------------

/// What all samplers share, for choosing one by name (command lines,
/// configuration files), plus the chosen sampler's own options as a JSON
/// object (`set` or `options`; each sampler reads its own fields, and a
/// field it does not know is an error that names the allowed ones).
///
/// The fields by sampler (defaults as in its options struct):
/// ddpm: variance ("beta", "posterior"), clip_x0, clip_range (clip_range
/// alone turns clipping on); ddim: eta, clip_x0, clip_range; euler_maruyama
/// (em): none; pc: predictor ("reverse_diffusion", "euler_maruyama"),
/// corrector_steps, snr; ode, ode_euler, dopri5: rtol, atol, max_steps;
/// euler, heun: s_churn, s_tmin, s_tmax, s_noise; euler_ancestral: eta,
/// s_noise; dpmpp_2m, dpmpp_3m, dpmpp_2m_sde: lower_order_final; unipc:
/// order (1, 2 or 3), lower_order_final.
///
/// Example:
/// `SampleOptions().sampler("ddim").grid("trailing").steps(10).set("eta", 0.5)`
struct SampleOptions {
  /// A name of sampler_names(). Default: "default" (dpmpp_2m).
  TORCH_ARG(std::string, sampler) = "default";
  /// A name of grids::names(). Default: "default" (the process's).
  TORCH_ARG(std::string, grid) = "default";
  /// Steps of the grid; 0 takes the sampler's default. Default: 0.
  TORCH_ARG(int64_t, steps) = 0;
  /// A grid of your own; when set, `grid` and `steps` are not used.
  /// Default: unset.
  TORCH_ARG(std::optional<TimeGrid>, time_grid) = std::nullopt;
  /// Karras' rho for grid "karras". Default: 7.
  TORCH_ARG(double, rho) = 7.0;
  TORCH_ARG(CommonOptions, common) = {};

 public:
  /// The sampler's own options (a JSON object; null for none).
  /// Default: null.
  SampleOptions& options(const Config& config);
  const Config& options() const;
  /// Sets one field of options().
  SampleOptions& set(const std::string& key, double value);
  SampleOptions& set(const std::string& key, int value);
  SampleOptions& set(const std::string& key, int64_t value);
  SampleOptions& set(const std::string& key, bool value);
  SampleOptions& set(const std::string& key, const char* value);
  SampleOptions& set(const std::string& key, const std::string& value);

 private:
  std::shared_ptr<const Config> options_;  // copy on write
};

/// A sampler as the registry builds it from its options: run it on
/// (model, process, shape) with a grid and the shared options.
struct Sampler {
  /// What runs the sampler: the grid is the one SampleOptions chose (or the
  /// default GridSpec, leaving the choice to the sampler).
  using RunFn = std::function<SampleResult(
      const Model& model,
      const NoiseProcess& process,
      torch::IntArrayRef shape,
      const GridSpec& grid,
      const CommonOptions& common)>;
  /// Runs the sampler with the options it was built from.
  RunFn run;
  /// The step count of a grid chosen by name when SampleOptions::steps is
  /// 0 (a default grid with no steps is left to the sampler itself).
  std::function<int64_t(const NoiseProcess&)> default_steps;
};

/// The samplers by name: each built-in registers itself with its default
/// step count, and a sampler of your own registers the same way, after
/// which `sample()` runs it by name with its options from
/// SampleOptions::options().
///
/// Example:
/// ```
/// sbgm::samplers::sampler_registry().add("mine", [](const sbgm::Config& c) {
///   return sbgm::samplers::Sampler{my_run, [](const auto&) { return 20; }};
/// });
/// ```
Registry<Sampler>& sampler_registry();

/// The sampler names `sample` knows (sampler_registry().names(), sorted):
/// the built-ins ddpm, ddim, euler_maruyama (or em), pc, ode (Heun on the
/// probability-flow ODE in t), ode_euler, dopri5, euler, heun (EDM),
/// euler_ancestral, dpmpp_2m, dpmpp_3m, dpmpp_2m_sde, unipc; "default" is
/// dpmpp_2m.
std::vector<std::string> sampler_names();

/// Runs the named sampler; an unknown sampler or grid name is an error that
/// lists the valid ones.
SampleResult sample(
    const Model& model,
    const NoiseProcess& process,
    torch::IntArrayRef shape,
    const SampleOptions& options = {});

}  // namespace sbgm::samplers
