// UniPC (Zhao et al. 2023, "UniPC: A Unified Predictor-Corrector Framework
// for Fast Sampling of Diffusion Models"), the B(h) = e^-h - 1 ("bh2")
// variant with data prediction: a multistep predictor UniP-p and, after
// each model evaluation, the corrector UniC that reuses that evaluation
// (no extra one), so a step costs one model evaluation and UniC raises the
// order by one. Registered as "unipc" with the options `order` (1, 2 or 3;
// default 2) and `lower_order_final` (default true).
//
// With lambda = log(alpha / sigma), h = lambda_to - lambda_from, the model's
// x0 estimates m0 (at `from`) and m_k (at earlier points), r_k = (lambda_k
// - lambda_from) / h and D_k = (m_k - m0) / r_k:
//   base      = (s_to / s) x - a_to (e^-h - 1) m0        (DPM-Solver++ 1)
//   UniP-p:   x_to = base - a_to B(h) sum_k rho_k D_k     (k < p)
//   UniC-p:   x_to = base - a_to B(h) (sum_k rho_k D_k + rho_p (m_to - m0))
// where rho solves R rho = b: R_ij = r_j^i (r_p = 1 for UniC's new point),
// b_i = i! phi_{i+1}(h) / B(h) with phi_1 = (e^-h - 1) / (-h) and
// phi_{k+1} = phi_k / (-h) - 1 / k! written as in the paper's Alg. 1-3;
// UniP-2 takes rho = 1/2 and UniC-1 rho = 1/2 (the paper's choice for B2).

#include <c10/core/InferenceMode.h>

#include <array>
#include <cmath>

#include "affine.h"
#include "checks.h"
#include "options.h"
#include "sbgm/samplers/samplers.h"

namespace sbgm::samplers {

namespace {

constexpr int64_t kUniPCSteps = 20;

/// UniPC's options (by name: "order", "lower_order_final").
struct UniPCOptions {
  TORCH_ARG(GridSpec, grid) = {};
  /// 1, 2 or 3: UniP's order (UniC adds one). Default: 2.
  TORCH_ARG(int64_t, order) = 2;
  /// Lower the order on the last steps of a grid that ends at the data, as
  /// DPMSolverOptions::lower_order_final. Default: true.
  TORCH_ARG(bool, lower_order_final) = true;
  TORCH_ARG(CommonOptions, common) = {};
};

/// Solves the n x n system a rho = b (n <= 3) by Gaussian elimination with
/// partial pivoting.
std::vector<double> solve(
    std::array<std::array<double, 3>, 3> a, std::array<double, 3> b, int n) {
  for (int c = 0; c < n; ++c) {
    int piv = c;
    for (int r = c + 1; r < n; ++r) {
      if (std::abs(a[r][c]) > std::abs(a[piv][c])) {
        piv = r;
      }
    }
    std::swap(a[c], a[piv]);
    std::swap(b[c], b[piv]);
    for (int r = c + 1; r < n; ++r) {
      const double f = a[r][c] / a[c][c];
      for (int k = c; k < n; ++k) {
        a[r][k] -= f * a[c][k];
      }
      b[r] -= f * b[c];
    }
  }
  std::vector<double> x(static_cast<size_t>(n));
  for (int r = n - 1; r >= 0; --r) {
    double s = b[r];
    for (int k = r + 1; k < n; ++k) {
      s -= a[r][k] * x[static_cast<size_t>(k)];
    }
    x[static_cast<size_t>(r)] = s / a[r][r];
  }
  return x;
}

/// The weights rho of one UniPC step of order p from `from` to `to` with
/// the earlier points `earlier` (most recent first, p - 1 of them): for the
/// predictor (p - 1 weights on D_1..D_{p-1}) or the corrector (p weights,
/// the last on m_to - m0).
std::vector<double> unipc_rho(
    const ProcessPoint& from,
    const std::vector<ProcessPoint>& earlier,
    const ProcessPoint& to,
    int p,
    bool corrector) {
  const double h = to.lambda() - from.lambda();
  std::vector<double> r;
  for (int k = 0; k + 1 < p; ++k) {
    r.push_back((earlier[static_cast<size_t>(k)].lambda() - from.lambda()) / h);
  }
  r.push_back(1.0);
  const double hh = -h;
  const double B = std::expm1(hh);  // bh2
  double phi = std::expm1(hh) / hh - 1.0;
  double factorial = 1.0;
  std::array<std::array<double, 3>, 3> R{};
  std::array<double, 3> b{};
  for (int i = 0; i < p; ++i) {
    for (int j = 0; j < p; ++j) {
      R[i][j] = std::pow(r[static_cast<size_t>(j)], i);
    }
    b[i] = phi * factorial / B;
    factorial *= i + 2;
    phi = phi / hh - 1.0 / factorial;
  }
  if (corrector) {
    return p == 1 ? std::vector<double>{0.5} : solve(R, b, p);
  }
  if (p == 1) {
    return {};
  }
  return p == 2 ? std::vector<double>{0.5} : solve(R, b, p - 1);
}

/// One UniPC update from x at `from` (x0 estimates m[0] there and m[k] at
/// earlier[k - 1]) to `to`: the predictor, or with m_to (the x0 estimate at
/// `to`) the corrector. Into the data: m0.
torch::Tensor unipc_update(
    const torch::Tensor& x,
    const std::vector<torch::Tensor>& m,
    const ProcessPoint& from,
    const std::vector<ProcessPoint>& earlier,
    const ProcessPoint& to,
    int p,
    const torch::Tensor& m_to = {}) {
  if (to.is_data()) {
    return m[0];
  }
  const bool corrector = m_to.defined();
  const auto rho = unipc_rho(from, earlier, to, p, corrector);
  const double h = to.lambda() - from.lambda();
  const double B = std::expm1(-h);
  // The base is DPM-Solver++'s first-order step; each D_k = (m_k - m0) / r_k
  // term is added in place (no temporaries per step).
  auto x_to = update::dpmpp_1(x, m[0], from, to);
  for (int k = 0; k + 1 < p; ++k) {
    const auto ku = static_cast<size_t>(k);
    const double r = (earlier[ku].lambda() - from.lambda()) / h;
    const double c = to.alpha * B * rho[ku] / r;
    x_to.add_(m[ku + 1], -c).add_(m[0], c);
  }
  if (corrector) {
    const double c = to.alpha * B * rho.back();
    x_to.add_(m_to, -c).add_(m[0], c);
  }
  return x_to;
}

SampleResult unipc(
    const Model& model,
    const NoiseProcess& process,
    torch::IntArrayRef shape,
    const UniPCOptions& o) {
  const char* where = "unipc";
  const auto& common = o.common();
  detail::check_no_cuda_graph(common, where);
  TORCH_CHECK(
      o.order() >= 1 && o.order() <= 3,
      where,
      ": order must be 1, 2 or 3, got ",
      o.order());
  const auto pts =
      detail::grid_points(model, process, o.grid(), kUniPCSteps, where);
  const auto n = static_cast<int64_t>(pts.size()) - 1;
  const bool to_data = pts.back().is_data();
  const Prediction pred = model.prediction();
  c10::InferenceMode guard;
  auto x = initial_state(process, pts.front().t, shape, common, where);
  SamplerLoop loop(common, n, where);
  loop.start(x);
  ModelCaller call(batch_invariant_model(model, common), process, where);
  // The x0 estimates and their points, most recent first.
  std::vector<torch::Tensor> ms;
  std::vector<ProcessPoint> at;
  torch::Tensor x_prev;
  int p_prev = 0;
  for (int64_t i = 0; i < n; ++i) {
    const ProcessPoint& from = pts[i];
    const ProcessPoint& to = pts[i + 1];
    const auto m = update::x0_of(x, call(x, from.t), pred, from);
    if (i > 0) {
      // UniC: redo the last step with the estimate at its end.
      const std::vector<ProcessPoint> earlier(at.begin() + 1, at.end());
      x = unipc_update(x_prev, ms, at[0], earlier, from, p_prev, m);
    }
    ms.insert(ms.begin(), m);
    at.insert(at.begin(), from);
    if (ms.size() > 3) {
      ms.pop_back();
      at.pop_back();
    }
    int p = static_cast<int>(std::min<int64_t>(o.order(), i + 1));
    if (to_data && (o.lower_order_final() || to.is_data())) {
      if (to.is_data()) {
        p = 1;
      } else if (i + 2 == n) {
        p = std::min(p, 2);
      }
    }
    x_prev = x;
    const std::vector<ProcessPoint> earlier(at.begin() + 1, at.end());
    x = unipc_update(x, ms, from, earlier, to, p);
    p_prev = p;
    loop.step(i + 1, to.t, x, m);
  }
  return loop.finish(x, call.nfe());
}

}  // namespace

void detail::register_unipc(Registry<Sampler>& table) {
  table.add(
      "unipc",
      [](const Config& c) {
        OptionReader r(c, "unipc", {"order", "lower_order_final"});
        UniPCOptions o;
        o.order(r.integer("order", o.order()))
            .lower_order_final(
                r.flag("lower_order_final", o.lower_order_final()));
        return make_sampler(o, unipc, steps(kUniPCSteps));
      },
      "UniPC, bh2 (Zhao et al. 2023)");
}

}  // namespace sbgm::samplers
