#include "sbgm/nets/group_norm_silu.h"

#include <ATen/Parallel.h>
#include <torch/autograd.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "internal.h"

namespace sbgm {

namespace {

// exp(x) for float in a form the vectorizer takes: x = k ln2 + r, |r| <=
// ln2 / 2, e^r by its Taylor polynomial to r^7 (relative error < 2e-7, about
// one float ulp), 2^k through the exponent bits. Arguments are clamped to
// [-87, 88] (e^-87 ~ 1.6e-38, e^88 ~ 1.7e38); NaN propagates through the
// polynomial.
inline __attribute__((always_inline)) float exp_vec(float x) {
  x = x < -87.0f ? -87.0f : x;
  x = x > 88.0f ? 88.0f : x;
  float k = std::floor(x * 1.44269504088896341f + 0.5f);
  k = k == k ? k : 0.0f;  // NaN: keep the int conversion defined (p is NaN)
  const float r = (x - k * 0.693145751953125f) - k * 1.428606820309417e-06f;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(k) + 127) << 23;
  return p * __builtin_bit_cast(float, bits);
}

inline double exp_vec(double x) {
  return std::exp(x);
}

// out = silu(a x + b).
template <typename T>
inline __attribute__((always_inline)) void silu_affine_body(
    const T* __restrict x, T* __restrict out, int64_t n, T a, T b) {
  for (int64_t i = 0; i < n; ++i) {
    const T y = x[i] * a + b;
    out[i] = y / (T(1) + exp_vec(-y));
  }
}

// dy = dout silu'(a x + b), silu'(y) = s (1 + y (1 - s)), s = sigmoid(y).
template <typename T>
inline __attribute__((always_inline)) void silu_grad_body(
    const T* __restrict x,
    const T* __restrict dout,
    T* __restrict dy,
    int64_t n,
    T a,
    T b) {
  for (int64_t i = 0; i < n; ++i) {
    const T y = x[i] * a + b;
    const T s = T(1) / (T(1) + exp_vec(-y));
    dy[i] = dout[i] * (s * (T(1) + y * (T(1) - s)));
  }
}

// dx = k1 dy + k2 x + k3, in place over dy.
template <typename T>
inline __attribute__((always_inline)) void combine_body(
    T* __restrict dy, const T* __restrict x, int64_t n, T k1, T k2, T k3) {
  for (int64_t i = 0; i < n; ++i) {
    dy[i] = dy[i] * k1 + (x[i] * k2 + k3);
  }
}

// Sums in double, vectorized as reductions (-fopenmp-simd lets them be
// reassociated lane-wise, nothing else): sum(u) and sum(u v), or
// sum((u - c)^2).
template <typename T>
inline __attribute__((always_inline)) void sums_body(
    const T* __restrict u,
    const T* __restrict v,
    int64_t n,
    double* su,
    double* suv) {
  double s1 = 0, s2 = 0;
#pragma omp simd reduction(+ : s1, s2)
  for (int64_t i = 0; i < n; ++i) {
    const double x = static_cast<double>(u[i]);
    s1 += x;
    s2 += x * static_cast<double>(v[i]);
  }
  *su = s1;
  *suv = s2;
}

template <typename T>
inline __attribute__((always_inline)) double sum_body(
    const T* __restrict u, int64_t n) {
  double s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) {
    s += static_cast<double>(u[i]);
  }
  return s;
}

template <typename T>
inline __attribute__((always_inline)) double centered_squares_body(
    const T* __restrict u, int64_t n, double c) {
  double s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(u[i]) - c;
    s += d * d;
  }
  return s;
}

#define SBGM_GN_KERNELS(T)                                                    \
  SBGM_CLONES void silu_affine(                                               \
      const T* __restrict x, T* __restrict out, int64_t n, T a, T b) {        \
    silu_affine_body<T>(x, out, n, a, b);                                     \
  }                                                                           \
  SBGM_CLONES void silu_grad(                                                 \
      const T* __restrict x,                                                  \
      const T* __restrict dout,                                               \
      T* __restrict dy,                                                       \
      int64_t n,                                                              \
      T a,                                                                    \
      T b) {                                                                  \
    silu_grad_body<T>(x, dout, dy, n, a, b);                                  \
  }                                                                           \
  SBGM_CLONES void combine(                                                   \
      T* __restrict dy, const T* __restrict x, int64_t n, T k1, T k2, T k3) { \
    combine_body<T>(dy, x, n, k1, k2, k3);                                    \
  }                                                                           \
  SBGM_CLONES void sums(                                                      \
      const T* __restrict u,                                                  \
      const T* __restrict v,                                                  \
      int64_t n,                                                              \
      double* su,                                                             \
      double* suv) {                                                          \
    sums_body<T>(u, v, n, su, suv);                                           \
  }                                                                           \
  SBGM_CLONES double sum(const T* __restrict u, int64_t n) {                  \
    return sum_body<T>(u, n);                                                 \
  }                                                                           \
  SBGM_CLONES double centered_squares(                                        \
      const T* __restrict u, int64_t n, double c) {                           \
    return centered_squares_body<T>(u, n, c);                                 \
  }
SBGM_GN_KERNELS(float)
SBGM_GN_KERNELS(double)
#undef SBGM_GN_KERNELS

// Shape of one call: N samples, C channels in G groups of Cg, S positions.
struct Dims {
  int64_t N, C, G, Cg, S;
};

Dims dims_of(const torch::Tensor& x, int64_t groups) {
  Dims d{};
  d.N = x.size(0);
  d.C = x.size(1);
  d.G = groups;
  d.Cg = d.C / groups;
  d.S = d.C == 0 ? 0 : x.numel() / (d.N * d.C);
  return d;
}

// Forward: out, and per (n, g) the mean and 1 / sqrt(var + eps).
template <typename T>
void forward_kernel(
    const Dims& d,
    const T* x,
    const T* w,
    const T* b,
    double eps,
    T* out,
    double* mean,
    double* rstd) {
  const int64_t M = d.Cg * d.S;
  at::parallel_for(0, d.N * d.G, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t ng = lo; ng < hi; ++ng) {
      const int64_t g = ng % d.G;
      const T* xg = x + ng * M;
      T* og = out + ng * M;
      const double s = sum(xg, M);
      const double mu = s / static_cast<double>(M);
      const double var = centered_squares(xg, M, mu) / static_cast<double>(M);
      const double r = 1.0 / std::sqrt(var + eps);
      mean[ng] = mu;
      rstd[ng] = r;
      for (int64_t c = 0; c < d.Cg; ++c) {
        const int64_t ch = g * d.Cg + c;
        const double a = r * static_cast<double>(w[ch]);
        silu_affine(
            xg + c * d.S,
            og + c * d.S,
            d.S,
            static_cast<T>(a),
            static_cast<T>(static_cast<double>(b[ch]) - mu * a));
      }
    }
  });
}

// Backward: dx, and per (n, c) the partial sums for dweight and dbias.
template <typename T>
void backward_kernel(
    const Dims& d,
    const T* x,
    const T* dout,
    const T* w,
    const T* b,
    const double* mean,
    const double* rstd,
    T* dx,
    double* dw_part,
    double* db_part) {
  const int64_t M = d.Cg * d.S;
  at::parallel_for(0, d.N * d.G, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t ng = lo; ng < hi; ++ng) {
      const int64_t n = ng / d.G, g = ng % d.G;
      const double mu = mean[ng], r = rstd[ng];
      const T* xg = x + ng * M;
      const T* dg = dout + ng * M;
      T* dxg = dx + ng * M;
      // dy = dL/d(group-normed output), into dx; its sums per channel.
      double s1 = 0, s2 = 0;  // sum_c w_c sum dy, sum_c w_c sum dy xhat
      for (int64_t c = 0; c < d.Cg; ++c) {
        const int64_t ch = g * d.Cg + c;
        const double a = r * static_cast<double>(w[ch]);
        silu_grad(
            xg + c * d.S,
            dg + c * d.S,
            dxg + c * d.S,
            d.S,
            static_cast<T>(a),
            static_cast<T>(static_cast<double>(b[ch]) - mu * a));
        double sdy = 0, sdyx = 0;
        sums(dxg + c * d.S, xg + c * d.S, d.S, &sdy, &sdyx);
        const double sdy_xhat = r * (sdyx - mu * sdy);
        db_part[n * d.C + ch] = sdy;
        dw_part[n * d.C + ch] = sdy_xhat;
        s1 += static_cast<double>(w[ch]) * sdy;
        s2 += static_cast<double>(w[ch]) * sdy_xhat;
      }
      // dx = r (w_c dy - s1 / M - xhat s2 / M), xhat = (x - mu) r.
      const double m = static_cast<double>(M);
      const double k2 = -r * r * s2 / m;
      const double k3 = r * r * mu * s2 / m - r * s1 / m;
      for (int64_t c = 0; c < d.Cg; ++c) {
        const int64_t ch = g * d.Cg + c;
        combine(
            dxg + c * d.S,
            xg + c * d.S,
            d.S,
            static_cast<T>(r * static_cast<double>(w[ch])),
            static_cast<T>(k2),
            static_cast<T>(k3));
      }
    }
  });
}

class GroupNormSiLU : public torch::autograd::Function<GroupNormSiLU> {
 public:
  static torch::Tensor forward(
      torch::autograd::AutogradContext* ctx,
      const torch::Tensor& x,
      int64_t groups,
      const torch::Tensor& weight,
      const torch::Tensor& bias,
      double eps) {
    const Dims d = dims_of(x, groups);
    auto out = torch::empty_like(x, torch::MemoryFormat::Contiguous);
    auto stats =
        torch::empty({2, d.N * d.G}, x.options().dtype(torch::kDouble));
    double* mean = stats.data_ptr<double>();
    double* rstd = mean + d.N * d.G;
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "group_norm_silu", [&] {
      forward_kernel<scalar_t>(
          d,
          x.data_ptr<scalar_t>(),
          weight.data_ptr<scalar_t>(),
          bias.data_ptr<scalar_t>(),
          eps,
          out.data_ptr<scalar_t>(),
          mean,
          rstd);
    });
    ctx->save_for_backward({x, weight, bias, stats});
    ctx->saved_data["groups"] = groups;
    return out;
  }

  static torch::autograd::variable_list backward(
      torch::autograd::AutogradContext* ctx,
      torch::autograd::variable_list grad_out) {
    const auto saved = ctx->get_saved_variables();
    const auto& x = saved[0];
    const auto& weight = saved[1];
    const auto& bias = saved[2];
    const auto& stats = saved[3];
    const int64_t groups = ctx->saved_data["groups"].toInt();
    const Dims d = dims_of(x, groups);
    auto dout = grad_out[0].contiguous();
    auto dx = torch::empty_like(x, torch::MemoryFormat::Contiguous);
    std::vector<double> dw_part(static_cast<size_t>(d.N * d.C));
    std::vector<double> db_part(static_cast<size_t>(d.N * d.C));
    const double* mean = stats.data_ptr<double>();
    AT_DISPATCH_FLOATING_TYPES(
        x.scalar_type(), "group_norm_silu_backward", [&] {
          backward_kernel<scalar_t>(
              d,
              x.data_ptr<scalar_t>(),
              dout.data_ptr<scalar_t>(),
              weight.data_ptr<scalar_t>(),
              bias.data_ptr<scalar_t>(),
              mean,
              mean + d.N * d.G,
              dx.data_ptr<scalar_t>(),
              dw_part.data(),
              db_part.data());
        });
    // Sum the per-sample partials over the batch, in double.
    auto opts = torch::TensorOptions().dtype(torch::kDouble);
    auto dw = torch::from_blob(dw_part.data(), {d.N, d.C}, opts)
                  .sum(0)
                  .to(weight.scalar_type());
    auto db = torch::from_blob(db_part.data(), {d.N, d.C}, opts)
                  .sum(0)
                  .to(bias.scalar_type());
    return {dx, torch::Tensor(), dw, db, torch::Tensor()};
  }
};

}  // namespace

torch::Tensor group_norm_silu(
    const torch::Tensor& x,
    int64_t groups,
    const torch::Tensor& weight,
    const torch::Tensor& bias,
    double eps) {
  const char* where = "group_norm_silu";
  detail::check_floating(x, "x", where);
  TORCH_CHECK(
      x.dim() >= 2,
      where,
      ": x must have shape [N, C, ...], got ",
      detail::shape_str(x));
  TORCH_CHECK(
      groups > 0 && x.size(1) % groups == 0,
      where,
      ": groups (",
      groups,
      ") must be > 0 and divide the channel count ",
      x.size(1));
  TORCH_CHECK(
      weight.defined() == bias.defined(),
      where,
      ": weight and bias must both be given or both be undefined");
  TORCH_CHECK(
      eps > 0 && std::isfinite(eps), where, ": eps must be > 0, got ", eps);
  if (weight.defined()) {
    TORCH_CHECK(
        weight.dim() == 1 && weight.size(0) == x.size(1) && bias.dim() == 1 &&
            bias.size(0) == x.size(1),
        where,
        ": weight and bias must have shape [",
        x.size(1),
        "], got ",
        detail::shape_str(weight),
        " and ",
        detail::shape_str(bias));
  }
  const auto dtype = x.scalar_type();
  const bool fused =
      weight.defined() && x.device().is_cpu() &&
      (dtype == torch::kFloat || dtype == torch::kDouble) &&
      x.is_contiguous() && x.numel() > 0 && weight.scalar_type() == dtype &&
      bias.scalar_type() == dtype && weight.device().is_cpu() &&
      bias.device().is_cpu() && weight.is_contiguous() && bias.is_contiguous();
  if (!fused) {
    return torch::silu(torch::group_norm(x, groups, weight, bias, eps));
  }
  return GroupNormSiLU::apply(x, groups, weight, bias, eps);
}

}  // namespace sbgm
