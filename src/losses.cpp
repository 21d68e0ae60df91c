#include "sbgm/losses.h"

#include <cmath>

#include "internal.h"
#include "sbgm/random.h"

namespace sbgm {

namespace {

void check_x0_noise(
    const torch::Tensor& x0, const torch::Tensor& noise, const char* where) {
  detail::check_floating(x0, "x0", where);
  TORCH_CHECK(
      x0.dim() >= 1 && x0.size(0) > 0,
      where,
      ": x0 must have a non-empty batch dimension, got shape ",
      detail::shape_str(x0));
  TORCH_CHECK(
      noise.defined() && noise.sizes() == x0.sizes(),
      where,
      ": noise has shape ",
      noise.defined() ? detail::shape_str(noise) : std::string("(undefined)"),
      " but x0 has shape ",
      detail::shape_str(x0));
  detail::check_same_device(noise, "noise", x0, "x0", where);
  TORCH_CHECK(
      noise.scalar_type() == x0.scalar_type(),
      where,
      ": noise has dtype ",
      noise.scalar_type(),
      " but x0 has dtype ",
      x0.scalar_type());
  // On the CPU only: elsewhere the check would stall the device every step
  // (the Trainer names the step whose loss is not finite).
  detail::check_finite(x0, "x0", where, /*sync_ok=*/false);
  detail::check_finite(noise, "noise", where, /*sync_ok=*/false);
}

void check_options(const LossOptions& o, const char* where) {
  TORCH_CHECK(
      o.min_snr_gamma() > 0 && std::isfinite(o.min_snr_gamma()),
      where,
      ": min_snr_gamma must be finite and > 0, got ",
      o.min_snr_gamma());
  TORCH_CHECK(
      o.sigma_data() > 0 && std::isfinite(o.sigma_data()),
      where,
      ": sigma_data must be finite and > 0, got ",
      o.sigma_data());
  TORCH_CHECK(
      o.p_std() > 0 && std::isfinite(o.p_std()) && std::isfinite(o.p_mean()),
      where,
      ": p_std must be finite and > 0 and p_mean finite, got p_mean = ",
      o.p_mean(),
      ", p_std = ",
      o.p_std());
}

// The per-sample weight on the target's MSE (float64 [N]); undefined for
// Unit. lambda_x0 / c_target, see the header.
torch::Tensor loss_weight(
    const NoiseProcess& process,
    const LossOptions& o,
    const torch::Tensor& t,
    const torch::Tensor& a,
    const torch::Tensor& s) {
  if (o.weighting() == LossWeighting::Unit) {
    return {};
  }
  const auto a2 = a.square(), s2 = s.square();
  const auto snr = a2 / s2;
  torch::Tensor lambda_x0;
  switch (o.weighting()) {
    case LossWeighting::Unit:
      break;
    case LossWeighting::SigmaSquared:
      lambda_x0 = snr;
      break;
    case LossWeighting::Likelihood:
      lambda_x0 = process.diffusion_sq(t) * a2 / s2.square();
      break;
    case LossWeighting::MinSNR:
      lambda_x0 = snr.clamp_max(o.min_snr_gamma());
      break;
    case LossWeighting::EDM: {
      const double sd2 = o.sigma_data() * o.sigma_data();
      const auto ss2 = s2 / a2;  // (sigma / alpha)^2
      lambda_x0 = (ss2 + sd2) / (ss2 * sd2);
      break;
    }
  }
  switch (o.target()) {
    case Prediction::Epsilon:
      return lambda_x0 / snr;
    case Prediction::X0:
      return lambda_x0;
    case Prediction::V:
      return lambda_x0 * s2 / (a2 + s2).square();
    case Prediction::Score:
      return lambda_x0 * s2.square() / a2;
  }
  return lambda_x0;
}

}  // namespace

torch::Tensor sample_times(
    const NoiseProcess& process,
    int64_t n,
    const LossOptions& o,
    torch::Device device,
    std::optional<torch::Generator> generator) {
  const char* where = "sample_times";
  check_device(device, where);
  TORCH_CHECK(n > 0, where, ": n must be > 0, got ", n);
  check_options(o, where);
  const double hi = process.t_max();
  const double lo = o.t_min() ? *o.t_min() : process.t_min();
  TORCH_CHECK(
      std::isfinite(lo) && lo >= process.t_floor() && lo <= hi,
      where,
      ": t_min must lie in [",
      process.t_floor(),
      ", ",
      hi,
      "] for the ",
      process.describe(),
      " process, got ",
      lo);
  const bool integer = process.integer_model_time();
  auto opts = torch::TensorOptions().dtype(torch::kDouble).device(device);
  auto g = detail::to_c10(generator);
  torch::Tensor t;
  if (o.sampling() == TimeSampling::LogNormal) {
    auto lam = -(torch::randn({n}, g, opts) * o.p_std() + o.p_mean());
    t = process.t_of_lambda(lam).to(device).clamp(lo, hi);
    return integer ? t.round_() : t;
  }
  const int64_t k = o.sampling() == TimeSampling::Uniform ? n : (n + 1) / 2;
  if (integer) {
    const auto first = static_cast<int64_t>(std::ceil(lo));
    t = torch::randint(first, static_cast<int64_t>(hi) + 1, {k}, g, opts);
  } else {
    t = torch::rand({k}, g, opts) * (hi - lo) + lo;
  }
  if (o.sampling() == TimeSampling::Antithetic) {
    t = torch::cat({t, (lo + hi) - t}).slice(0, 0, n);
  }
  return t;
}

torch::Tensor diffusion_loss(
    const Model& model,
    const NoiseProcess& process,
    const torch::Tensor& x0,
    const torch::Tensor& t,
    const torch::Tensor& noise,
    const LossOptions& o) {
  const char* where = "diffusion_loss";
  check_x0_noise(x0, noise, where);
  check_options(o, where);
  TORCH_CHECK(t.defined(), where, ": t is an undefined tensor");
  TORCH_CHECK(
      t.is_floating_point() ||
          (c10::isIntegralType(t.scalar_type(), /*includeBool=*/false)),
      where,
      ": t must be a floating or integer tensor, got dtype ",
      t.scalar_type());
  detail::check_time_tensor(t, x0, !t.is_floating_point(), where);
  model.check_process(process, where);
  const auto tt =
      (t.dim() == 0 ? t.expand({x0.size(0)}) : t).to(torch::kDouble);
  process.check_time(tt, where);
  const auto a64 = process.alpha(tt);
  const auto s64 = process.sigma(tt);
  const auto a = detail::batch_view(a64.to(x0.scalar_type()), x0);
  const auto s = detail::batch_view(s64.to(x0.scalar_type()), x0);
  const auto xt = torch::addcmul(a * x0, s, noise);
  const auto out = model(xt, process.model_time(tt, x0.scalar_type()));
  const auto hat =
      convert_prediction(out, model.prediction(), o.target(), xt, a, s);
  torch::Tensor target;
  switch (o.target()) {
    case Prediction::Epsilon:
      target = noise;
      break;
    case Prediction::X0:
      target = x0;
      break;
    case Prediction::V:
      target = a * noise - s * x0;
      break;
    case Prediction::Score:
      target = -noise / s;
      break;
  }
  auto per = (hat - target).square().reshape({x0.size(0), -1}).mean(1);
  const auto w = loss_weight(process, o, tt, a64, s64);
  if (w.defined()) {
    per = per * w.to(per.scalar_type());
  }
  return per.mean();
}

torch::Tensor diffusion_loss(
    const Model& model,
    const NoiseProcess& process,
    const torch::Tensor& x0,
    const LossOptions& options,
    std::optional<torch::Generator> generator) {
  detail::check_floating(x0, "x0", "diffusion_loss");
  TORCH_CHECK(
      x0.dim() >= 1 && x0.size(0) > 0,
      "diffusion_loss: x0 must have a non-empty batch dimension, got shape ",
      detail::shape_str(x0));
  auto t = sample_times(process, x0.size(0), options, x0.device(), generator);
  auto z = torch::randn(x0.sizes(), detail::to_c10(generator), x0.options());
  return diffusion_loss(model, process, x0, t, z, options);
}

torch::Tensor epsilon_loss(
    const Model& model,
    const NoiseProcess& process,
    const torch::Tensor& x0,
    LossOptions options,
    std::optional<torch::Generator> generator) {
  return diffusion_loss(
      model, process, x0, options.target(Prediction::Epsilon), generator);
}

torch::Tensor x0_loss(
    const Model& model,
    const NoiseProcess& process,
    const torch::Tensor& x0,
    LossOptions options,
    std::optional<torch::Generator> generator) {
  return diffusion_loss(
      model, process, x0, options.target(Prediction::X0), generator);
}

torch::Tensor v_loss(
    const Model& model,
    const NoiseProcess& process,
    const torch::Tensor& x0,
    LossOptions options,
    std::optional<torch::Generator> generator) {
  return diffusion_loss(
      model, process, x0, options.target(Prediction::V), generator);
}

torch::Tensor dsm_loss(
    const Model& model,
    const NoiseProcess& process,
    const torch::Tensor& x0,
    bool likelihood_weighting,
    LossOptions options,
    std::optional<torch::Generator> generator) {
  options.target(Prediction::Score)
      .weighting(
          likelihood_weighting ? LossWeighting::Likelihood
                               : LossWeighting::SigmaSquared);
  return diffusion_loss(model, process, x0, options, generator);
}

}  // namespace sbgm
