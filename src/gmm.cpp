#include "sbgm/gmm.h"

#include <cmath>

#include "internal.h"
#include "sbgm/process.h"
#include "sbgm/random.h"

namespace sbgm {

namespace {
constexpr double kLog2Pi = 1.8378770664093454836;

// Scalar kernel coefficients m, s as float64 0-dim tensors on `device`, for
// the double overloads (which then call the tensor ones).
std::pair<torch::Tensor, torch::Tensor> scalar_ms(
    double m, double s, torch::Device device, const char* where) {
  TORCH_CHECK(
      m >= 0 && s >= 0 && std::isfinite(m) && std::isfinite(s),
      where,
      ": m and s must be finite and >= 0, got m = ",
      m,
      ", s = ",
      s);
  auto o = torch::TensorOptions().dtype(torch::kDouble).device(device);
  return {torch::scalar_tensor(m, o), torch::scalar_tensor(s, o)};
}
}  // namespace

GaussianMixture::GaussianMixture(
    const torch::Tensor& weights,
    const torch::Tensor& means,
    const torch::Tensor& stds) {
  const char* where = "GaussianMixture";
  detail::check_floating(weights, "weights", where);
  detail::check_floating(means, "means", where);
  detail::check_floating(stds, "stds", where);
  TORCH_CHECK(
      weights.dim() == 1 && weights.size(0) >= 1,
      where,
      ": weights must have shape [K] with K >= 1, got ",
      detail::shape_str(weights));
  const int64_t K = weights.size(0);
  TORCH_CHECK(
      means.dim() == 2 && means.size(0) == K && means.size(1) >= 1,
      where,
      ": means must have shape [K, D] = [",
      K,
      ", D], got ",
      detail::shape_str(means));
  const int64_t D = means.size(1);
  TORCH_CHECK(
      (stds.dim() == 1 && stds.size(0) == K) ||
          (stds.dim() == 2 && stds.size(0) == K && stds.size(1) == D),
      where,
      ": stds must have shape [K] = [",
      K,
      "] or [K, D] = [",
      K,
      ", ",
      D,
      "], got ",
      detail::shape_str(stds));
  detail::check_same_device(weights, "weights", means, "means", where);
  detail::check_same_device(stds, "stds", means, "means", where);
  auto w = weights.to(torch::kDouble);
  auto mu = means.to(torch::kDouble);
  auto sd = stds.to(torch::kDouble);
  // Parameters are small; checking them on the host is fine here.
  auto wc = w.cpu();
  auto sc = sd.cpu();
  TORCH_CHECK(
      wc.isfinite().all().item<bool>() && (wc > 0).all().item<bool>(),
      where,
      ": weights must be finite and > 0, got ",
      wc);
  TORCH_CHECK(
      sc.isfinite().all().item<bool>() && (sc > 0).all().item<bool>(),
      where,
      ": stds must be finite and > 0, got ",
      sc);
  TORCH_CHECK(
      mu.isfinite().all().item<bool>(), where, ": means must be finite");
  weights_ = w / w.sum();
  log_weights_ = weights_.log();
  means_ = mu.contiguous();
  stds_ = (sd.dim() == 1 ? sd.unsqueeze(1).expand({K, D}) : sd).contiguous();
}

int64_t GaussianMixture::num_components() const {
  return means_.size(0);
}
int64_t GaussianMixture::dim() const {
  return means_.size(1);
}
const torch::Tensor& GaussianMixture::weights() const {
  return weights_;
}
const torch::Tensor& GaussianMixture::means() const {
  return means_;
}
const torch::Tensor& GaussianMixture::stds() const {
  return stds_;
}
torch::Device GaussianMixture::device() const {
  return means_.device();
}

GaussianMixture GaussianMixture::to(torch::Device device) const {
  check_device(device, "GaussianMixture::to");
  GaussianMixture g = *this;
  g.weights_ = weights_.to(device);
  g.log_weights_ = log_weights_.to(device);
  g.means_ = means_.to(device);
  g.stds_ = stds_.to(device);
  return g;
}

torch::Tensor GaussianMixture::mean() const {
  return (weights_.unsqueeze(1) * means_).sum(0);
}

torch::Tensor GaussianMixture::covariance() const {
  auto mu = mean();
  auto second = torch::diag((weights_.unsqueeze(1) * stds_.square()).sum(0)) +
                torch::einsum("k,ki,kj->ij", {weights_, means_, means_});
  return second - torch::outer(mu, mu);
}

std::pair<torch::Tensor, torch::Tensor> GaussianMixture::sample_with_components(
    int64_t n,
    std::optional<torch::Generator> generator,
    torch::ScalarType dtype) const {
  TORCH_CHECK(n >= 0, "GaussianMixture::sample: n must be >= 0, got ", n);
  TORCH_CHECK(
      c10::isFloatingType(dtype),
      "GaussianMixture::sample: dtype must be floating point, got ",
      dtype);
  auto gen = detail::to_c10(generator);
  auto comp = torch::multinomial(weights_, n, /*replacement=*/true, gen);
  auto z = torch::randn(
      {n, dim()},
      gen,
      torch::TensorOptions().dtype(torch::kDouble).device(device()));
  auto x = means_.index_select(0, comp) + stds_.index_select(0, comp) * z;
  return {x.to(dtype), comp};
}

torch::Tensor GaussianMixture::sample(
    int64_t n,
    std::optional<torch::Generator> generator,
    torch::ScalarType dtype) const {
  return sample_with_components(n, std::move(generator), dtype).first;
}

torch::Tensor GaussianMixture::check_x(
    const torch::Tensor& x, const char* where) const {
  detail::check_floating(x, "x", where);
  TORCH_CHECK(
      x.dim() == 2 && x.size(1) == dim(),
      where,
      ": x must have shape [N, ",
      dim(),
      "], got ",
      detail::shape_str(x));
  detail::check_finite(x, "x", where);
  auto x64 = x.to(torch::kDouble);
  return x64.device() == device() ? x64 : x64.to(device());
}

std::pair<torch::Tensor, torch::Tensor> GaussianMixture::coeffs(
    const torch::Tensor& x,
    const torch::Tensor& m,
    const torch::Tensor& s,
    const char* where) const {
  detail::check_floating(m, "m", where);
  detail::check_floating(s, "s", where);
  for (const auto* c : {&m, &s}) {
    TORCH_CHECK(
        c->dim() == 0 || (c->dim() == 1 && c->size(0) == x.size(0)),
        where,
        ": m and s must be 0-dim or have shape [N] = [",
        x.size(0),
        "], got ",
        detail::shape_str(*c));
  }
  double lo = 0, hi = 0;
  if (detail::host_minmax(m, &lo, &hi)) {
    TORCH_CHECK(lo >= 0, where, ": m must be >= 0, got min ", lo);
  }
  if (detail::host_minmax(s, &lo, &hi)) {
    TORCH_CHECK(lo >= 0, where, ": s must be >= 0, got min ", lo);
  }
  auto shape = [&](const torch::Tensor& c) {
    auto c64 = c.to(device(), torch::kDouble);
    return c64.dim() == 0 ? c64 : c64.view({-1, 1, 1});
  };
  return {shape(m), shape(s)};
}

torch::Tensor GaussianMixture::joint_log(
    const torch::Tensor& x64,
    const torch::Tensor& m,
    const torch::Tensor& s,
    torch::Tensor* var,
    torch::Tensor* diff) const {
  // x64 [N, D] -> [N, 1, D]; means/stds [1, K, D].
  auto v = (m * stds_.unsqueeze(0)).square() + s.square();
  auto d = x64.unsqueeze(1) - m * means_.unsqueeze(0);
  auto lp = -0.5 * (d.square() / v + v.log() + kLog2Pi).sum(-1) +
            log_weights_.unsqueeze(0);
  if (var != nullptr) {
    *var = v;
  }
  if (diff != nullptr) {
    *diff = d;
  }
  return lp;
}

torch::Tensor GaussianMixture::log_prob(const torch::Tensor& x) const {
  return log_prob(x, 1.0, 0.0);
}

torch::Tensor GaussianMixture::log_prob(
    const torch::Tensor& x, double m, double s) const {
  auto [mt, st] = scalar_ms(m, s, device(), "GaussianMixture::log_prob");
  return log_prob(x, mt, st);
}

torch::Tensor GaussianMixture::log_prob(
    const torch::Tensor& x,
    const torch::Tensor& m,
    const torch::Tensor& s) const {
  const char* where = "GaussianMixture::log_prob";
  auto x64 = check_x(x, where);
  auto [mm, ss] = coeffs(x, m, s, where);
  return joint_log(x64, mm, ss, nullptr, nullptr)
      .logsumexp(1)
      .to(x.device(), x.scalar_type());
}

torch::Tensor GaussianMixture::responsibilities(
    const torch::Tensor& x, double m, double s) const {
  auto [mt, st] =
      scalar_ms(m, s, device(), "GaussianMixture::responsibilities");
  return responsibilities(x, mt, st);
}

torch::Tensor GaussianMixture::responsibilities(
    const torch::Tensor& x,
    const torch::Tensor& m,
    const torch::Tensor& s) const {
  const char* where = "GaussianMixture::responsibilities";
  auto x64 = check_x(x, where);
  auto [mm, ss] = coeffs(x, m, s, where);
  return joint_log(x64, mm, ss, nullptr, nullptr)
      .softmax(1)
      .to(x.device(), x.scalar_type());
}

torch::Tensor GaussianMixture::score(
    const torch::Tensor& x, double m, double s) const {
  auto [mt, st] = scalar_ms(m, s, device(), "GaussianMixture::score");
  return score(x, mt, st);
}

torch::Tensor GaussianMixture::score(
    const torch::Tensor& x,
    const torch::Tensor& m,
    const torch::Tensor& s) const {
  const char* where = "GaussianMixture::score";
  auto x64 = check_x(x, where);
  auto [mm, ss] = coeffs(x, m, s, where);
  torch::Tensor var, diff;
  auto r = joint_log(x64, mm, ss, &var, &diff).softmax(1);
  return -(r.unsqueeze(-1) * diff / var).sum(1).to(x.device(), x.scalar_type());
}

torch::Tensor GaussianMixture::epsilon(
    const torch::Tensor& x, double m, double s) const {
  TORCH_CHECK(
      s > 0 && std::isfinite(s),
      "GaussianMixture::epsilon: s must be finite and > 0, got ",
      s);
  return score(x, m, s).mul_(-s);
}

torch::Tensor GaussianMixture::epsilon(
    const torch::Tensor& x,
    const torch::Tensor& m,
    const torch::Tensor& s) const {
  double lo = 0, hi = 0;
  if (s.defined() && detail::host_minmax(s, &lo, &hi)) {
    TORCH_CHECK(
        lo > 0, "GaussianMixture::epsilon: s must be > 0, got min ", lo);
  }
  auto sc = score(x, m, s);
  auto sv = s.dim() == 0 ? s : s.view({-1, 1});
  return -sc * sv.to(sc.device(), sc.scalar_type());
}

Model GaussianMixture::model(
    std::shared_ptr<const NoiseProcess> process, Prediction prediction) const {
  TORCH_CHECK(process != nullptr, "GaussianMixture::model: process is null");
  GaussianMixture self = *this;
  return Model(
      [self, process, prediction](
          const torch::Tensor& x, const torch::Tensor& t) {
        const char* where = "GaussianMixture model";
        TORCH_CHECK(t.defined(), where, ": t is an undefined tensor");
        detail::check_time_tensor(t, x, !t.is_floating_point(), where);
        // One time shared by the batch (a 0-dim t, or an expanded one with
        // stride 0, as the samplers pass it), on the CPU where reading it
        // costs no sync: scalar coefficients, no per-sample tensors.
        if (t.device().is_cpu() &&
            (t.dim() == 0 || (x.size(0) > 0 && t.stride(0) == 0))) {
          const double tt = t.reshape({-1})[0].item<double>();
          const ProcessPoint at = process->at(tt);
          auto score = self.score(x, at.alpha, at.sigma);
          return prediction == Prediction::Score ? score
                                                 : convert_prediction(
                                                       score,
                                                       Prediction::Score,
                                                       prediction,
                                                       x,
                                                       at.alpha,
                                                       at.sigma);
        }
        auto t64 = t.to(torch::kDouble).reshape({-1}).expand({x.size(0)});
        process->check_time(t64, where);
        auto a = process->alpha(t64);
        auto s = process->sigma(t64);
        auto score = self.score(x, a, s);
        if (prediction == Prediction::Score) {
          return score;
        }
        return convert_prediction(
            score,
            Prediction::Score,
            prediction,
            x,
            a.view({-1, 1}).to(x.device()),
            s.view({-1, 1}).to(x.device()));
      },
      prediction);
}

Model GaussianMixture::conditional_model(
    std::shared_ptr<const NoiseProcess> process, Prediction prediction) const {
  const int64_t k_count = num_components();
  // The mixture, and each component as a mixture of one.
  std::vector<Model> parts;
  for (int64_t k = 0; k < k_count; ++k) {
    parts.push_back(GaussianMixture(
                        torch::ones({1}, torch::kDouble),
                        means_.slice(0, k, k + 1),
                        stds_.slice(0, k, k + 1))
                        .model(process, prediction));
  }
  parts.push_back(model(std::move(process), prediction));
  return Model::conditional(
      [parts, k_count](
          const torch::Tensor& x,
          const torch::Tensor& t,
          const torch::Tensor& cond) {
        const auto labels = detail::class_labels(
            cond, x, k_count, 0, "GaussianMixture conditional model");
        auto out = parts.back()(x, t);
        for (int64_t k = 0; k < k_count; ++k) {
          auto pick = detail::batch_view(labels == k, x);
          out = torch::where(pick, parts[k](x, t), out);
        }
        return out;
      },
      prediction);
}

}  // namespace sbgm
