#pragma once

/// \file
/// The noise process: the one thing every Gaussian diffusion here shares.
///
/// Every forward process is x_t = alpha(t) x0 + sigma(t) eps, eps ~ N(0, I),
/// with the half log-SNR lambda(t) = log(alpha(t) / sigma(t)) decreasing in t.
/// Sampling runs from the prior at t_max() down to the data at data_time(),
/// where alpha = 1 and sigma = 0.
///
/// Any such process has an SDE (Kingma et al., "Variational Diffusion
/// Models", 2021, eq. 26-27; Song et al., ICLR 2021):
///   dx = f(t) x dt + g(t) dw,  f = d log alpha / dt,
///   g^2 = d sigma^2 / dt - 2 f sigma^2 = -2 sigma^2 d lambda / dt,
/// which the Euler-Maruyama, predictor-corrector and probability-flow ODE
/// samplers and the likelihood use.
///
/// The processes, one header each under sbgm/processes/: VPSDE and SubVPSDE
/// (vp.h), VESDE (the sigma^t form) and GeometricVESDE (score_sde's
/// sigma_min / sigma_max form) (ve.h), EDMProcess (edm.h) and
/// DiscreteProcess, any DDPM Schedule on its steps (discrete.h).
///
/// Each is registered by name in process_registry() and rebuilt from its
/// config: `process_from_config(p.config())` equals p.
///
/// What a new process must implement (the rest has defaults): name(),
/// describe(), config(), t_max(), t_min(), t_floor(), data_time(),
/// prior_std() and the four coefficient forms alpha_impl and sigma_impl
/// (double and tensor). lambda, its inverse (by bisection) and the SDE
/// (by central differences) then have numerical defaults; override their
/// *_impl forms with closed forms where speed matters. Register it with
/// `sbgm::process_registry().add("name", factory)` (one line in the user's
/// own code) and it is saved, loaded and sampled by name like the
/// built-ins. The public functions check t and call the *_impl ones.

#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "sbgm/registry.h"

namespace sbgm {

/// One time of a process with its coefficients: x_t = alpha x0 + sigma eps.
/// At the data (the end of every grid that ends there) alpha = 1, sigma = 0.
struct ProcessPoint {
  double t = 0.0;
  double alpha = 1.0;
  double sigma = 0.0;
  /// lambda = log(alpha / sigma); +inf at the data.
  double lambda() const;
  /// sigma / alpha = exp(-lambda), the noise level of x / alpha (the
  /// "sigma" of EDM and k-diffusion); 0 at the data.
  double scaled_sigma() const {
    return sigma / alpha;
  }
  /// True at the data (sigma = 0).
  bool is_data() const {
    return sigma == 0.0;
  }
};

/// How a process's grid is built when none is given (see sbgm/grid.h).
enum class GridKind {
  /// Uniform in t from t_max to t_min, then the data.
  Uniform,
  /// Uniform in lambda.
  LogSNR,
  /// Karras et al. (2022), rho = 7.
  Karras,
  /// Quadratic in t, denser near the data.
  Quadratic,
  /// diffusers' spacings of a discrete schedule's steps.
  Linspace,
  Leading,
  Trailing,
};

/// Base class of the noise processes.
///
/// Each coefficient has a host form (a double t, used to build per-step
/// tables: no tensor work, no device sync) and a tensor form (t of any
/// shape, per sample in training); tensor forms compute in float64 and
/// return float64 on t's device.
class NoiseProcess {
 public:
  virtual ~NoiseProcess() = default;

  /// Short name: "vp", "subvp", "ve", "ve_geometric", "edm", "discrete".
  virtual std::string name() const = 0;
  /// The name with its parameters, e.g. "vp(beta_min=0.1, beta_max=20)".
  virtual std::string describe() const = 0;
  /// The name and parameters as a JSON object, {"name": name(), ...}, from
  /// which process_from_config rebuilds an equal process (what model files
  /// store). The default throws: a process that is to be saved or built by
  /// name overrides it.
  virtual Config config() const;

  // ---- time range ----------------------------------------------------------
  /// The prior's time, where sampling starts.
  virtual double t_max() const = 0;
  /// The smallest time grids and training use by default (1e-3 for VP,
  /// 1e-5 for VE, sigma_min for EDM, step 0 for a discrete schedule): the
  /// score blows up as sigma -> 0.
  virtual double t_min() const = 0;
  /// The smallest time at which alpha and sigma are defined (t_min() is the
  /// default end of grids; a grid may go below it down to t_floor()).
  virtual double t_floor() const = 0;
  /// The time of the data: alpha = 1, sigma = 0 (0 for VP, VE and EDM, -1
  /// for a discrete schedule, -inf for GeometricVESDE). A grid may end
  /// there; no model is ever evaluated there.
  virtual double data_time() const = 0;
  /// Throws unless t lies in [t_floor(), t_max()] or equals data_time();
  /// the message names t and the range.
  void check_time(double t, const char* where) const;
  /// The same for a tensor t (a host read on the CPU only: on a device the
  /// check would cost a sync, so it is skipped there).
  void check_time(const torch::Tensor& t, const char* where) const;

  // ---- coefficients (each checks t; the virtual *_impl compute) -----------
  double alpha(double t) const;
  torch::Tensor alpha(const torch::Tensor& t) const;
  double sigma(double t) const;
  torch::Tensor sigma(const torch::Tensor& t) const;
  /// lambda(t) = log(alpha / sigma) (+inf at the data time).
  double lambda(double t) const;
  torch::Tensor lambda(const torch::Tensor& t) const;
  /// The inverse of lambda, clamped to [t_floor(), t_max()]; +inf gives the
  /// data time.
  double t_of_lambda(double lambda) const;
  torch::Tensor t_of_lambda(const torch::Tensor& lambda) const;
  /// (t, alpha, sigma) at t (alpha = 1, sigma = 0 at the data time).
  ProcessPoint at(double t) const;

  // ---- SDE -----------------------------------------------------------------
  /// f(t) = d log alpha / dt, the drift coefficient: f(x, t) = f(t) x.
  double drift_coeff(double t) const;
  /// g(t)^2 = -2 sigma^2 d lambda / dt.
  double diffusion_sq(double t) const;
  torch::Tensor diffusion_sq(const torch::Tensor& t) const;

  // ---- prior ---------------------------------------------------------------
  /// Standard deviation of the prior N(0, prior_std^2 I) that sampling
  /// starts from at t_max(): 1 for VP-type processes, sigma(t_max) for VE
  /// and EDM (as score_sde and k-diffusion start them).
  virtual double prior_std() const = 0;
  /// log N(z; 0, prior_std^2 I) summed over all but the first dimension.
  torch::Tensor prior_log_prob(const torch::Tensor& z) const;

  // ---- what the network is fed --------------------------------------------
  /// True when model_time() gives integer step indices (a discrete schedule
  /// whose network embeds its steps); false for continuous times.
  virtual bool integer_model_time() const {
    return false;
  }
  /// The number of steps the model time counts (a discrete schedule's T);
  /// 0 for continuous processes.
  virtual int64_t num_model_steps() const {
    return 0;
  }
  /// The value fed to the network at time t: t itself for the continuous
  /// processes (sigma for EDM), the rounded step for a discrete schedule.
  virtual double model_time(double t) const {
    return t;
  }
  /// Tensor form: int64 when integer_model_time(), else t's values in
  /// `dtype`.
  virtual torch::Tensor model_time(
      const torch::Tensor& t, torch::ScalarType dtype) const;

  /// The grid sampling uses when none is given.
  virtual GridKind default_grid() const {
    return GridKind::Uniform;
  }

  // ---- built on the coefficients ------------------------------------------
  /// x_t = alpha(t) x0 + sigma(t) noise, t of shape [N] (or 0-dim),
  /// floating; the coefficients are cast to x0's dtype.
  torch::Tensor perturb(
      const torch::Tensor& x0,
      const torch::Tensor& t,
      const torch::Tensor& noise) const;

 protected:
  // What a process implements; t has been checked (host t is never the data
  // time here; tensor t is float64). alpha, sigma are required; the rest
  // have defaults: lambda = log alpha - log sigma, its inverse by bisection,
  // f and g^2 by central differences. Every built-in process overrides them
  // with closed forms.
  virtual double alpha_impl(double t) const = 0;
  virtual torch::Tensor alpha_impl(const torch::Tensor& t) const = 0;
  virtual double sigma_impl(double t) const = 0;
  virtual torch::Tensor sigma_impl(const torch::Tensor& t) const = 0;
  virtual double lambda_impl(double t) const;
  virtual torch::Tensor lambda_impl(const torch::Tensor& t) const;
  virtual double t_of_lambda_impl(double lambda) const;
  virtual torch::Tensor t_of_lambda_impl(const torch::Tensor& lambda) const;
  virtual double drift_coeff_impl(double t) const;
  virtual double diffusion_sq_impl(double t) const;
  virtual torch::Tensor diffusion_sq_impl(const torch::Tensor& t) const;
};

/// Short alias used across the library.
using ProcessPtr = std::shared_ptr<const NoiseProcess>;

/// The table of processes by name. Built in: "vp", "subvp", "ve",
/// "ve_geometric", "edm" and "discrete"; a factory receives the whole
/// config (with "name") and fills missing parameters with their defaults.
///
/// Example (a user's process, registered once at start-up):
/// ```
/// sbgm::process_registry().add("my_vp", [](const sbgm::Config& c) {
///   return std::make_shared<MyVP>(c.value("beta_max", 20.0));
/// });
/// auto p = sbgm::process_from_config({{"name", "my_vp"}});
/// ```
Registry<std::shared_ptr<NoiseProcess>>& process_registry();

/// The process `config` describes: config["name"] picks the registry entry,
/// which reads the rest. `process_from_config(p.config())` equals p.
std::shared_ptr<NoiseProcess> process_from_config(const Config& config);

}  // namespace sbgm
