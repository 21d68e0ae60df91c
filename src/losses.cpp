#include "sbgm/losses.h"

#include <cmath>

#include "internal.h"
#include "sbgm/schedule.h"
#include "sbgm/sde.h"

namespace sbgm {

namespace {

void check_x0(const torch::Tensor& x0, const char* where) {
  detail::check_floating(x0, "x0", where);
  TORCH_CHECK(
      x0.dim() >= 1 && x0.size(0) > 0,
      where,
      ": x0 must have a non-empty batch dimension, got shape ",
      detail::shape_str(x0));
}

void check_x0_noise(
    const torch::Tensor& x0, const torch::Tensor& noise, const char* where) {
  check_x0(x0, where);
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
}

// t of shape [N] for the model (a 0-dim t is repeated).
torch::Tensor per_sample(const torch::Tensor& t, const torch::Tensor& x0) {
  return t.dim() == 0 ? t.expand({x0.size(0)}) : t;
}

// mean_i w_i mean_d (eps_hat_i - z_i)^2 with x_t = m x0 + s z; m, s already
// shaped to broadcast against x0 and in x0's dtype; w is [N] or undefined.
torch::Tensor eps_matching(
    const Model& model,
    const torch::Tensor& x0,
    const torch::Tensor& noise,
    const torch::Tensor& m,
    const torch::Tensor& s,
    const torch::Tensor& t_model,
    const torch::Tensor& w) {
  auto xt = torch::addcmul(m * x0, s, noise);
  auto out = model(xt, t_model);
  auto eps_hat = convert_prediction(
      out, model.prediction(), Prediction::Epsilon, xt, m, s);
  auto per = (eps_hat - noise).square().reshape({x0.size(0), -1}).mean(1);
  if (w.defined()) {
    per = per * w;
  }
  return per.mean();
}

double resolve_eps(const SDE& sde, const SDELossOptions& o, const char* where) {
  const double eps = o.eps() < 0 ? sde.default_eps() : o.eps();
  TORCH_CHECK(
      std::isfinite(eps) && eps < 1.0,
      where,
      ": eps must lie in [0, 1), got ",
      eps);
  return eps;
}

struct Kernel {
  torch::Tensor m, s, t_model;
};

// m(t) and s(t) shaped against x0; the SDE's coefficient functions check
// that t lies in [0, 1] (on the CPU, without a device sync).
Kernel sde_kernel(
    const SDE& sde,
    const torch::Tensor& x0,
    const torch::Tensor& t,
    const char* where) {
  detail::check_time_tensor(t, x0, /*integer=*/false, where);
  auto tt = per_sample(t, x0);
  auto m = detail::batch_view(sde.mean_coeff(tt).to(x0.scalar_type()), x0);
  auto s = detail::batch_view(sde.std(tt).to(x0.scalar_type()), x0);
  return {m, s, tt.to(x0.scalar_type())};
}

torch::Tensor schedule_loss(
    const Model& model,
    const Schedule& schedule,
    const torch::Tensor& x0,
    const torch::Tensor& t,
    const torch::Tensor& noise,
    const char* where) {
  check_x0_noise(x0, noise, where);
  detail::check_time_tensor(t, x0, /*integer=*/true, where);
  auto tt = per_sample(t, x0);
  // extract() checks the range of t (on the CPU) and moves the table.
  auto m = schedule.extract(schedule.sqrt_alphas_cumprod(), tt, x0);
  auto s = schedule.extract(schedule.sqrt_one_minus_alphas_cumprod(), tt, x0);
  return eps_matching(model, x0, noise, m, s, tt, torch::Tensor());
}

}  // namespace

torch::Tensor sample_timesteps(
    int64_t n,
    int64_t num_timesteps,
    TimeSampling sampling,
    torch::Device device,
    std::optional<torch::Generator> generator) {
  TORCH_CHECK(n > 0, "sample_timesteps: n must be > 0, got ", n);
  TORCH_CHECK(
      num_timesteps > 0,
      "sample_timesteps: num_timesteps must be > 0, got ",
      num_timesteps);
  auto opts = torch::TensorOptions().dtype(torch::kLong).device(device);
  auto g = detail::to_c10(generator);
  if (sampling == TimeSampling::Uniform) {
    return torch::randint(0, num_timesteps, {n}, g, opts);
  }
  auto u = torch::randint(0, num_timesteps, {(n + 1) / 2}, g, opts);
  return torch::cat({u, (num_timesteps - 1) - u}).slice(0, 0, n);
}

torch::Tensor sample_times(
    int64_t n,
    double eps,
    TimeSampling sampling,
    const torch::TensorOptions& options,
    std::optional<torch::Generator> generator) {
  TORCH_CHECK(n > 0, "sample_times: n must be > 0, got ", n);
  TORCH_CHECK(
      std::isfinite(eps) && eps >= 0.0 && eps < 1.0,
      "sample_times: eps must lie in [0, 1), got ",
      eps);
  TORCH_CHECK(
      c10::isFloatingType(c10::typeMetaToScalarType(options.dtype())),
      "sample_times: options must have a floating dtype, got ",
      options.dtype());
  auto g = detail::to_c10(generator);
  const int64_t k = sampling == TimeSampling::Uniform ? n : (n + 1) / 2;
  auto u = torch::rand({k}, g, options) * (1.0 - eps) + eps;
  if (sampling == TimeSampling::Uniform) {
    return u;
  }
  return torch::cat({u, (1.0 + eps) - u}).slice(0, 0, n);
}

namespace {

// t ~ U(eps, 1) (as options.sampling() says) and z ~ N(0, I) for x0.
std::pair<torch::Tensor, torch::Tensor> draw_t_noise(
    const SDE& sde,
    const torch::Tensor& x0,
    const SDELossOptions& options,
    const std::optional<torch::Generator>& generator,
    const char* where) {
  check_x0(x0, where);
  const double eps = resolve_eps(sde, options, where);
  auto t = sample_times(
      x0.size(0), eps, options.sampling(), x0.options(), generator);
  auto z = torch::randn(x0.sizes(), detail::to_c10(generator), x0.options());
  return {t, z};
}

}  // namespace

torch::Tensor epsilon_loss(
    const Model& model,
    const Schedule& schedule,
    const torch::Tensor& x0,
    const torch::Tensor& t,
    const torch::Tensor& noise) {
  return schedule_loss(model, schedule, x0, t, noise, "epsilon_loss");
}

torch::Tensor epsilon_loss(
    const Model& model,
    const Schedule& schedule,
    const torch::Tensor& x0,
    const ScheduleLossOptions& options,
    std::optional<torch::Generator> generator) {
  check_x0(x0, "epsilon_loss");
  auto t = sample_timesteps(
      x0.size(0),
      schedule.num_timesteps(),
      options.sampling(),
      x0.device(),
      generator);
  auto z = torch::randn(x0.sizes(), detail::to_c10(generator), x0.options());
  return schedule_loss(model, schedule, x0, t, z, "epsilon_loss");
}

torch::Tensor dsm_loss(
    const Model& model,
    const Schedule& schedule,
    const torch::Tensor& x0,
    const ScheduleLossOptions& options,
    std::optional<torch::Generator> generator) {
  return epsilon_loss(model, schedule, x0, options, generator);
}

torch::Tensor epsilon_loss(
    const Model& model,
    const SDE& sde,
    const torch::Tensor& x0,
    const torch::Tensor& t,
    const torch::Tensor& noise) {
  check_x0_noise(x0, noise, "epsilon_loss");
  auto k = sde_kernel(sde, x0, t, "epsilon_loss");
  return eps_matching(model, x0, noise, k.m, k.s, k.t_model, torch::Tensor());
}

torch::Tensor epsilon_loss(
    const Model& model,
    const SDE& sde,
    const torch::Tensor& x0,
    const SDELossOptions& options,
    std::optional<torch::Generator> generator) {
  auto [t, z] = draw_t_noise(sde, x0, options, generator, "epsilon_loss");
  return epsilon_loss(model, sde, x0, t, z);
}

torch::Tensor dsm_loss(
    const Model& model,
    const SDE& sde,
    const torch::Tensor& x0,
    const torch::Tensor& t,
    const torch::Tensor& noise,
    const SDELossOptions& options) {
  check_x0_noise(x0, noise, "dsm_loss");
  auto k = sde_kernel(sde, x0, t, "dsm_loss");
  torch::Tensor w;
  if (options.likelihood_weighting()) {
    // g(t)^2 / s(t)^2, with s(t) from the kernel already computed.
    w = sde.diffusion(per_sample(t, x0)).to(x0.scalar_type()).square() /
        k.s.reshape({-1}).square();
  }
  return eps_matching(model, x0, noise, k.m, k.s, k.t_model, w);
}

torch::Tensor dsm_loss(
    const Model& model,
    const SDE& sde,
    const torch::Tensor& x0,
    const SDELossOptions& options,
    std::optional<torch::Generator> generator) {
  auto [t, z] = draw_t_noise(sde, x0, options, generator, "dsm_loss");
  return dsm_loss(model, sde, x0, t, z, options);
}

}  // namespace sbgm
