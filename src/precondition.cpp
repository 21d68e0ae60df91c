#include "sbgm/precondition.h"

#include <cmath>

#include "internal.h"

namespace sbgm {

EDMCoefficients edm_coefficients(double s, double sd) {
  TORCH_CHECK(
      s > 0 && std::isfinite(s),
      "edm_coefficients: the noise level must be finite and > 0, got ",
      s);
  TORCH_CHECK(
      sd > 0 && std::isfinite(sd),
      "edm_coefficients: sigma_data must be finite and > 0, got ",
      sd);
  const double n = std::sqrt(s * s + sd * sd);
  return {sd * sd / (n * n), s * sd / n, 1.0 / n, 0.25 * std::log(s)};
}

Model edm_precondition(
    ModelFn net,
    std::shared_ptr<const NoiseProcess> process,
    double sigma_data) {
  const char* where = "edm_precondition";
  TORCH_CHECK(static_cast<bool>(net), where, ": the network is empty");
  TORCH_CHECK(process != nullptr, where, ": process is null");
  TORCH_CHECK(
      !process->integer_model_time(),
      where,
      ": the ",
      process->describe(),
      " process feeds integer steps; EDM's preconditioning needs continuous "
      "times (use DiscreteProcessOptions().quantize(false))");
  TORCH_CHECK(
      sigma_data > 0 && std::isfinite(sigma_data),
      where,
      ": sigma_data must be finite and > 0, got ",
      sigma_data);
  return Model(
      [net = std::move(net), process, sigma_data](
          const torch::Tensor& x, const torch::Tensor& t) {
        const char* where = "edm_precondition";
        TORCH_CHECK(t.defined(), where, ": t is an undefined tensor");
        detail::check_time_tensor(t, x, /*integer=*/false, where);
        auto t64 = t.to(torch::kDouble).reshape({-1}).expand({x.size(0)});
        auto a = process->alpha(t64);
        auto s = process->sigma(t64) / a;  // the noise level of x / alpha
        const double sd2 = sigma_data * sigma_data;
        auto n = (s.square() + sd2).sqrt();
        auto col = [&](const torch::Tensor& c) {
          return detail::batch_view(c.to(x.scalar_type()), x);
        };
        auto xs = x / col(a);
        auto c_skip = col(sd2 / n.square());
        auto c_out = col(s * sigma_data / n);
        auto c_in = col(1.0 / n);
        auto c_noise = (s.log() * 0.25).to(x.scalar_type());
        auto f = net(xs * c_in, c_noise);
        TORCH_CHECK(
            f.defined() && f.sizes() == x.sizes(),
            where,
            ": the network returned shape ",
            f.defined() ? detail::shape_str(f) : std::string("(undefined)"),
            " for input of shape ",
            detail::shape_str(x));
        return torch::addcmul(c_skip * xs, c_out, f);
      },
      Prediction::X0);
}

}  // namespace sbgm
