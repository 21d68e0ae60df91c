#pragma once

/// \file
/// Continuous-time SDEs on t in [0, 1] (Song et al., "Score-Based Generative
/// Modeling through Stochastic Differential Equations", ICLR 2021):
///   forward   dx = f(x, t) dt + g(t) dw,
///   reverse   dx = [f(x, t) - g(t)^2 score(x, t)] dt + g(t) dw_bar,
///   prob.flow dx/dt = f(x, t) - 1/2 g(t)^2 score(x, t).
/// Every SDE here has a linear drift f(x, t) = a(t) x, so its perturbation
/// kernel is Gaussian: x_t | x_0 ~ N(m(t) x_0, s(t)^2 I).
///
/// Each coefficient comes in two forms: with a host `double` t (samplers that
/// step all samples at one time; no tensor work at all) and with a tensor t,
/// 0-dim or one entry per sample (training, where t is drawn per sample).

#include <torch/types.h>

#include <memory>
#include <optional>
#include <string>

namespace sbgm {

class Schedule;

/// Coefficients of one step of a discretized forward SDE over [t, t + dt]:
/// x_{t+dt} = x_t + f * x_t + G z (f multiplies x; f = a(t) dt for Euler).
struct DiscreteStep {
  double f;
  double G;
};

/// Base class of the SDEs. Subclasses give the scalar coefficient functions
/// (double and tensor forms); everything else is built on them here.
class SDE {
 public:
  virtual ~SDE() = default;

  /// Short name: "vp", "ve", "subvp".
  virtual std::string name() const = 0;
  /// The smallest t used for training and sampling by default (1e-3 for VP
  /// and sub-VP, 1e-5 for VE): the score blows up as t -> 0.
  virtual double default_eps() const = 0;

  /// a(t) in f(x, t) = a(t) x.
  virtual double drift_coeff(double t) const = 0;
  virtual torch::Tensor drift_coeff(const torch::Tensor& t) const = 0;
  /// g(t).
  virtual double diffusion(double t) const = 0;
  virtual torch::Tensor diffusion(const torch::Tensor& t) const = 0;
  /// m(t) in E[x_t | x_0] = m(t) x_0.
  virtual double mean_coeff(double t) const = 0;
  virtual torch::Tensor mean_coeff(const torch::Tensor& t) const = 0;
  /// s(t), the standard deviation of x_t | x_0.
  virtual double std(double t) const = 0;
  virtual torch::Tensor std(const torch::Tensor& t) const = 0;
  /// Standard deviation of the prior N(0, prior_std^2 I) that sampling
  /// starts from (the marginal at t = 1 for a point mass at 0).
  virtual double prior_std() const = 0;

  /// One step of the discretized forward process from t to t + dt (dt > 0).
  /// The default is Euler: f = a(t) dt, G = g(t) sqrt(dt). VP uses the DDPM
  /// discretization and VE the exact variance increment, as in the reference
  /// code of Song et al.; the reverse-diffusion predictor runs on these.
  virtual DiscreteStep discretize(double t, double dt) const;

  // ---- built on the coefficients ------------------------------------------
  /// f(x, t) = a(t) x. t is a double or a tensor (0-dim or [N]).
  torch::Tensor drift(const torch::Tensor& x, double t) const;
  torch::Tensor drift(const torch::Tensor& x, const torch::Tensor& t) const;

  /// E[x_t | x_0] = m(t) x_0.
  torch::Tensor marginal_mean(const torch::Tensor& x0, double t) const;
  torch::Tensor marginal_mean(
      const torch::Tensor& x0, const torch::Tensor& t) const;

  /// x_t = m(t) x_0 + s(t) noise.
  torch::Tensor perturb(
      const torch::Tensor& x0, double t, const torch::Tensor& noise) const;
  torch::Tensor perturb(
      const torch::Tensor& x0,
      const torch::Tensor& t,
      const torch::Tensor& noise) const;

  /// Score of the perturbation kernel, grad log p_0t(x_t | x_0) =
  /// -(x_t - m(t) x_0) / s(t)^2, the target of denoising score matching.
  torch::Tensor kernel_score(
      const torch::Tensor& xt,
      const torch::Tensor& x0,
      const torch::Tensor& t) const;

  /// Samples of the prior N(0, prior_std^2 I).
  torch::Tensor prior_sample(
      torch::IntArrayRef shape,
      const torch::TensorOptions& options = {},
      std::optional<torch::Generator> generator = std::nullopt) const;
  /// log N(z; 0, prior_std^2 I), summed over all but the first dimension
  /// (one value per sample; a 1-dim z is one sample of that dimension).
  torch::Tensor prior_log_prob(const torch::Tensor& z) const;

  /// Drift of the reverse-time SDE, f - g^2 score, or of the probability-flow
  /// ODE, f - 1/2 g^2 score, when `probability_flow` is true.
  torch::Tensor reverse_drift(
      const torch::Tensor& x,
      double t,
      const torch::Tensor& score,
      bool probability_flow = false) const;
  torch::Tensor reverse_drift(
      const torch::Tensor& x,
      const torch::Tensor& t,
      const torch::Tensor& score,
      bool probability_flow = false) const;

 protected:
  /// Throws unless 0 <= t <= 1.
  static void check_time(double t, const char* where);
  /// Checks dtype, device and batch of a tensor t against x, and (on CPU,
  /// where it costs no device sync) that its values lie in [0, 1].
  static void check_time(
      const torch::Tensor& t, const torch::Tensor& x, const char* where);
  /// Checks dtype and (on CPU) values of a tensor t on its own.
  static void check_time(const torch::Tensor& t, const char* where);
};

/// Variance-preserving SDE: dx = -1/2 beta(t) x dt + sqrt(beta(t)) dw with
/// beta(t) = beta_min + t (beta_max - beta_min). Kernel:
/// m(t) = exp(-1/2 B(t)), s(t)^2 = 1 - exp(-B(t)), B(t) = int_0^t beta.
/// The continuous limit of the DDPM chain (`from_schedule`).
class VPSDE : public SDE {
 public:
  explicit VPSDE(double beta_min = 0.1, double beta_max = 20.0);
  /// The VP SDE whose discretization with T steps is the given linear
  /// schedule: beta_min = T beta_start, beta_max = T beta_end. DDPM step i
  /// then sits at t = (i + 1) / T, and alpha_bar_i -> m(t)^2 as T grows.
  static VPSDE from_schedule(const Schedule& schedule);

  double beta_min() const {
    return beta_min_;
  }
  double beta_max() const {
    return beta_max_;
  }
  /// beta(t).
  double beta(double t) const;
  torch::Tensor beta(const torch::Tensor& t) const;

  std::string name() const override {
    return "vp";
  }
  double default_eps() const override {
    return 1e-3;
  }
  double drift_coeff(double t) const override;
  torch::Tensor drift_coeff(const torch::Tensor& t) const override;
  double diffusion(double t) const override;
  torch::Tensor diffusion(const torch::Tensor& t) const override;
  double mean_coeff(double t) const override;
  torch::Tensor mean_coeff(const torch::Tensor& t) const override;
  double std(double t) const override;
  torch::Tensor std(const torch::Tensor& t) const override;
  double prior_std() const override {
    return 1.0;
  }
  /// DDPM: beta_i = beta(t) dt, f = sqrt(1 - beta_i) - 1, G = sqrt(beta_i).
  DiscreteStep discretize(double t, double dt) const override;

 private:
  double beta_min_;
  double beta_max_;
};

/// Sub-VP SDE: dx = -1/2 beta(t) x dt + sqrt(beta(t)(1 - exp(-2 B(t)))) dw.
/// Kernel: m(t) = exp(-1/2 B(t)), s(t) = 1 - exp(-B(t)).
class SubVPSDE : public SDE {
 public:
  explicit SubVPSDE(double beta_min = 0.1, double beta_max = 20.0);
  double beta_min() const {
    return beta_min_;
  }
  double beta_max() const {
    return beta_max_;
  }

  std::string name() const override {
    return "subvp";
  }
  double default_eps() const override {
    return 1e-3;
  }
  double drift_coeff(double t) const override;
  torch::Tensor drift_coeff(const torch::Tensor& t) const override;
  double diffusion(double t) const override;
  torch::Tensor diffusion(const torch::Tensor& t) const override;
  double mean_coeff(double t) const override;
  torch::Tensor mean_coeff(const torch::Tensor& t) const override;
  double std(double t) const override;
  torch::Tensor std(const torch::Tensor& t) const override;
  double prior_std() const override {
    return 1.0;
  }

 private:
  double beta_min_;
  double beta_max_;
};

/// Variance-exploding SDE in the sigma^t form: dx = sigma^t dw (f = 0), as in
/// the score-SDE tutorial. Kernel: m(t) = 1,
/// s(t)^2 = (sigma^{2t} - 1) / (2 ln sigma); prior N(0, s(1)^2 I).
class VESDE : public SDE {
 public:
  explicit VESDE(double sigma = 25.0);
  double sigma() const {
    return sigma_;
  }

  std::string name() const override {
    return "ve";
  }
  double default_eps() const override {
    return 1e-5;
  }
  double drift_coeff(double t) const override;
  torch::Tensor drift_coeff(const torch::Tensor& t) const override;
  double diffusion(double t) const override;
  torch::Tensor diffusion(const torch::Tensor& t) const override;
  double mean_coeff(double t) const override;
  torch::Tensor mean_coeff(const torch::Tensor& t) const override;
  double std(double t) const override;
  torch::Tensor std(const torch::Tensor& t) const override;
  double prior_std() const override;
  /// Exact variance increment: f = 0, G^2 = s(t + dt)^2 - s(t)^2.
  DiscreteStep discretize(double t, double dt) const override;

 private:
  double sigma_;
  double log_sigma_;
};

}  // namespace sbgm
