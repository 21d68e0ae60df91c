#include "sbgm/optim/flat_adam.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/serialize/archive.h>

#include <algorithm>
#include <cmath>

#include "internal.h"

namespace sbgm {

FlatAdamOptions::FlatAdamOptions(double lr) : lr_(lr) {}

double FlatAdamOptions::get_lr() const {
  return lr();
}
void FlatAdamOptions::set_lr(const double lr) {
  this->lr(lr);
}

namespace {
void check_options(const FlatAdamOptions& o) {
  TORCH_CHECK(
      std::isfinite(o.lr()) && o.lr() >= 0,
      "FlatAdam: lr must be >= 0, got ",
      o.lr());
  const auto [b1, b2] = o.betas();
  TORCH_CHECK(
      b1 >= 0 && b1 < 1 && b2 >= 0 && b2 < 1,
      "FlatAdam: betas must lie in [0, 1), got (",
      b1,
      ", ",
      b2,
      ")");
  TORCH_CHECK(o.eps() >= 0, "FlatAdam: eps must be >= 0, got ", o.eps());
  TORCH_CHECK(
      o.weight_decay() >= 0,
      "FlatAdam: weight_decay must be >= 0, got ",
      o.weight_decay());
}

std::vector<torch::optim::OptimizerParamGroup> one_group(
    std::vector<torch::Tensor> params, const FlatAdamOptions& o) {
  std::vector<torch::optim::OptimizerParamGroup> g;
  g.emplace_back(std::move(params), std::make_unique<FlatAdamOptions>(o));
  return g;
}

// Elements per task of the CPU kernels (below it one thread does it all).
constexpr int64_t kGrain = 32768;

struct AdamScalars {
  double max_norm, weight_decay, b1, b2, eps, step_size, sqrt_bc2;
};

// One contiguous chunk of the update: a plain loop the compiler vectorizes.
template <typename T>
inline __attribute__((always_inline)) void adam_update_body(
    T* __restrict p,
    T* __restrict g,
    T* __restrict m,
    T* __restrict v,
    int64_t n,
    T coef,
    T wd,
    T b1,
    T b2,
    T eps,
    T step,
    T sqrt_bc2) {
  const T one_b1 = 1 - b1, one_b2 = 1 - b2;
  for (int64_t i = 0; i < n; ++i) {
    const T gc = g[i] * coef;
    g[i] = gc;
    const T gi = gc + wd * p[i];
    const T mi = m[i] * b1 + gi * one_b1;
    const T vi = v[i] * b2 + gi * gi * one_b2;
    m[i] = mi;
    v[i] = vi;
    p[i] += step * (mi / (std::sqrt(vi) / sqrt_bc2 + eps));
  }
}

// Sum of squares in double with 8 independent partial sums (so that it
// vectorizes without reassociating).
template <typename T>
inline __attribute__((always_inline)) double sum_squares_body(
    const T* __restrict g, int64_t n) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) {
      const double x = static_cast<double>(g[i + j]);
      acc[j] += x * x;
    }
  }
  double total = 0;
  for (; i < n; ++i) {
    total += static_cast<double>(g[i]) * static_cast<double>(g[i]);
  }
  for (double a : acc) {
    total += a;
  }
  return total;
}

#define SBGM_ADAM_KERNELS(T)                                                   \
  SBGM_CLONES void adam_update(                                                \
      T* __restrict p,                                                         \
      T* __restrict g,                                                         \
      T* __restrict m,                                                         \
      T* __restrict v,                                                         \
      int64_t n,                                                               \
      T coef,                                                                  \
      T wd,                                                                    \
      T b1,                                                                    \
      T b2,                                                                    \
      T eps,                                                                   \
      T step,                                                                  \
      T sqrt_bc2) {                                                            \
    adam_update_body<T>(p, g, m, v, n, coef, wd, b1, b2, eps, step, sqrt_bc2); \
  }                                                                            \
  SBGM_CLONES double sum_squares(const T* __restrict g, int64_t n) {           \
    return sum_squares_body<T>(g, n);                                          \
  }
SBGM_ADAM_KERNELS(float)
SBGM_ADAM_KERNELS(double)
#undef SBGM_ADAM_KERNELS

// The whole FlatAdam step on CPU in two passes over the buffers, instead of
// ~15 tensor operations (each a pass of its own plus dispatch overhead):
// pass 1 the squared norm (in double), pass 2 clip, weight decay, moments
// and update, in the order and rounding of the tensor version. Returns the
// gradient norm (0 when not clipping).
template <typename T>
double adam_cpu(
    T* __restrict p,
    T* __restrict g,
    T* __restrict m,
    T* __restrict v,
    int64_t n,
    const AdamScalars& a) {
  double norm = 0;
  T coef = 1;
  if (a.max_norm > 0) {
    const double ss = at::parallel_reduce(
        0,
        n,
        kGrain,
        0.0,
        [&](int64_t lo, int64_t hi, double acc) {
          return acc + sum_squares(g + lo, hi - lo);
        },
        std::plus<double>());
    norm = std::sqrt(ss);
    coef = static_cast<T>(std::min(1.0, a.max_norm / (norm + 1e-6)));
  }
  const T wd = static_cast<T>(a.weight_decay), b1 = static_cast<T>(a.b1),
          b2 = static_cast<T>(a.b2), eps = static_cast<T>(a.eps),
          step = static_cast<T>(-a.step_size),
          sqrt_bc2 = static_cast<T>(a.sqrt_bc2);
  at::parallel_for(0, n, kGrain, [&](int64_t lo, int64_t hi) {
    adam_update(
        p + lo,
        g + lo,
        m + lo,
        v + lo,
        hi - lo,
        coef,
        wd,
        b1,
        b2,
        eps,
        step,
        sqrt_bc2);
  });
  return norm;
}
}  // namespace

FlatAdam::FlatAdam(std::vector<torch::Tensor> params, FlatAdamOptions options)
    : torch::optim::Optimizer(
          one_group(params, options),
          std::make_unique<FlatAdamOptions>(options)) {
  check_options(options);
  TORCH_CHECK(!params.empty(), "FlatAdam: no parameters given");
  const auto& first = params.front();
  int64_t total = 0;
  for (size_t i = 0; i < params.size(); ++i) {
    const auto& p = params[i];
    TORCH_CHECK(p.defined(), "FlatAdam: parameter ", i, " is undefined");
    TORCH_CHECK(
        p.is_floating_point(),
        "FlatAdam: parameter ",
        i,
        " has dtype ",
        p.scalar_type(),
        "; parameters must be floating point");
    TORCH_CHECK(
        p.scalar_type() == first.scalar_type() && p.device() == first.device(),
        "FlatAdam: all parameters must share dtype and device; parameter ",
        i,
        " is ",
        p.scalar_type(),
        " on ",
        p.device(),
        ", parameter 0 is ",
        first.scalar_type(),
        " on ",
        first.device());
    slots_.push_back({p, total, p.numel()});
    total += p.numel();
  }
  auto opts = first.options().requires_grad(false);
  torch::NoGradGuard no_grad;
  flat_ = torch::empty({total}, opts);
  flat_grad_ = torch::zeros({total}, opts);
  exp_avg_ = torch::zeros({total}, opts);
  exp_avg_sq_ = torch::zeros({total}, opts);
  last_norm_ = torch::zeros({}, opts);
  for (auto& s : slots_) {
    flat_.narrow(0, s.offset, s.numel).copy_(s.param.reshape({-1}));
    if (s.param.grad().defined()) {
      flat_grad_.narrow(0, s.offset, s.numel)
          .copy_(s.param.grad().reshape({-1}));
    }
  }
  resync();
}

FlatAdamOptions& FlatAdam::opts() {
  return static_cast<FlatAdamOptions&>(param_groups_.at(0).options());
}

// Points every parameter (and its gradient) at its slice of the buffers. A
// parameter whose storage was replaced since (e.g. by loading a checkpoint)
// has its values copied into the buffer first; a gradient that was replaced
// (set to none, or freshly allocated) likewise.
void FlatAdam::resync() {
  torch::NoGradGuard no_grad;
  // Fast path: every parameter and gradient still points into the buffers
  // (pointer comparisons only; building the slice tensors costs a few
  // dispatcher calls per parameter, most of a small model's step).
  const auto esize = static_cast<int64_t>(flat_.element_size());
  const char* p0 = static_cast<const char*>(flat_.data_ptr());
  const char* g0 = static_cast<const char*>(flat_grad_.data_ptr());
  bool in_place = true;
  for (const auto& s : slots_) {
    const auto& g = s.param.grad();
    if (s.param.data_ptr() != p0 + s.offset * esize || !g.defined() ||
        g.data_ptr() != g0 + s.offset * esize) {
      in_place = false;
      break;
    }
  }
  if (in_place) {
    return;
  }
  for (auto& s : slots_) {
    auto pv = flat_.narrow(0, s.offset, s.numel).view(s.param.sizes());
    if (s.param.data_ptr() != pv.data_ptr()) {
      pv.copy_(s.param.detach());
      s.param.set_data(pv);
    }
    // The gradient aliases its slice through set_() rather than a view:
    // torch::optim::Optimizer::zero_grad() (not virtual in LibTorch 1.13)
    // calls detach_() on every gradient, which a view refuses.
    auto gv = torch::empty({0}, flat_grad_.options())
                  .set_(
                      flat_grad_.storage(),
                      flat_grad_.storage_offset() + s.offset,
                      s.param.sizes(),
                      pv.strides());
    auto& g = s.param.mutable_grad();
    if (!g.defined()) {
      gv.zero_();
      g = gv;
    } else if (g.data_ptr() != gv.data_ptr()) {
      gv.copy_(g);
      g = gv;
    }
  }
}

torch::Tensor FlatAdam::step(LossClosure closure) {
  torch::Tensor loss;
  if (closure) {
    torch::AutoGradMode grad_mode(true);
    loss = closure();
  }
  torch::NoGradGuard no_grad;
  resync();
  auto& o = opts();
  check_options(o);
  ++step_;
  const auto [b1, b2] = o.betas();
  const double k = static_cast<double>(step_);
  const double bc1 = 1.0 - std::pow(b1, k);
  const double bc2 = 1.0 - std::pow(b2, k);
  if (flat_.device().is_cpu() && (flat_.scalar_type() == torch::kFloat ||
                                  flat_.scalar_type() == torch::kDouble)) {
    const AdamScalars a{
        o.max_grad_norm(),
        o.weight_decay(),
        b1,
        b2,
        o.eps(),
        o.lr() / bc1,
        std::sqrt(bc2)};
    AT_DISPATCH_FLOATING_TYPES(flat_.scalar_type(), "FlatAdam::step", [&] {
      const double norm = adam_cpu<scalar_t>(
          flat_.data_ptr<scalar_t>(),
          flat_grad_.data_ptr<scalar_t>(),
          exp_avg_.data_ptr<scalar_t>(),
          exp_avg_sq_.data_ptr<scalar_t>(),
          flat_.numel(),
          a);
      if (o.max_grad_norm() > 0) {
        last_norm_ = torch::scalar_tensor(norm, flat_.options());
      }
    });
    return loss;
  }
  auto& g = flat_grad_;
  if (o.max_grad_norm() > 0) {
    last_norm_ = g.norm();
    // min(1, max_norm / (norm + 1e-6)) computed on the device: no sync.
    auto coef = (o.max_grad_norm() / (last_norm_ + 1e-6)).clamp_max_(1.0);
    g.mul_(coef);
  }
  torch::Tensor grad = g;
  if (o.weight_decay() != 0) {
    grad = g.add(flat_, o.weight_decay());
  }
  exp_avg_.mul_(b1).add_(grad, 1.0 - b1);
  exp_avg_sq_.mul_(b2).addcmul_(grad, grad, 1.0 - b2);
  auto denom = (exp_avg_sq_.sqrt() / std::sqrt(bc2)).add_(o.eps());
  flat_.addcdiv_(exp_avg_, denom, -o.lr() / bc1);
  return loss;
}

const torch::Tensor& FlatAdam::flat_grad() {
  resync();
  return flat_grad_;
}

void FlatAdam::zero_flat_grad() {
  resync();
  flat_grad_.zero_();
}

void FlatAdam::save(torch::serialize::OutputArchive& archive) const {
  archive.write("flat_adam/step", torch::tensor(step_, torch::kLong));
  archive.write("flat_adam/exp_avg", exp_avg_, /*is_buffer=*/true);
  archive.write("flat_adam/exp_avg_sq", exp_avg_sq_, /*is_buffer=*/true);
  archive.write(
      "flat_adam/lr",
      torch::tensor(
          static_cast<const FlatAdamOptions&>(param_groups_.at(0).options())
              .lr(),
          torch::kDouble));
}

void FlatAdam::load(torch::serialize::InputArchive& archive) {
  torch::Tensor step, m, v, lr;
  archive.read("flat_adam/step", step);
  archive.read("flat_adam/exp_avg", m, /*is_buffer=*/true);
  archive.read("flat_adam/exp_avg_sq", v, /*is_buffer=*/true);
  archive.read("flat_adam/lr", lr);
  TORCH_CHECK(
      m.numel() == exp_avg_.numel() && v.numel() == exp_avg_sq_.numel(),
      "FlatAdam::load: the saved state has ",
      m.numel(),
      " parameters but this optimizer has ",
      exp_avg_.numel());
  torch::NoGradGuard no_grad;
  exp_avg_.copy_(m);
  exp_avg_sq_.copy_(v);
  step_ = step.item<int64_t>();
  opts().lr(lr.item<double>());
}

}  // namespace sbgm

namespace sbgm {

FlatAdamOptimizer::FlatAdamOptimizer(std::shared_ptr<FlatAdam> adam)
    : TorchOptimizer(adam), adam_(std::move(adam)) {}

void FlatAdamOptimizer::zero_grad() {
  adam_->zero_flat_grad();
}

torch::Tensor FlatAdamOptimizer::flat_grad() {
  return adam_->flat_grad();
}

bool FlatAdamOptimizer::fuse_grad_clip(double max_norm) {
  TORCH_CHECK(
      std::isfinite(max_norm) && max_norm > 0,
      "FlatAdamOptimizer::fuse_grad_clip: max_norm must be finite and > 0, "
      "got ",
      max_norm);
  static_cast<FlatAdamOptions&>(adam_->param_groups().at(0).options())
      .max_grad_norm(max_norm);
  return true;
}

bool FlatAdamOptimizer::clips() const {
  return static_cast<const FlatAdamOptions&>(
             adam_->param_groups().at(0).options())
             .max_grad_norm() > 0;
}

torch::Tensor FlatAdamOptimizer::last_grad_norm() const {
  return clips() ? adam_->last_grad_norm() : torch::Tensor();
}

}  // namespace sbgm
