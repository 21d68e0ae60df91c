#include "sbgm/optim/flat_adam.h"

#include <torch/serialize/archive.h>

#include <cmath>

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
  const auto [b1, b2] = o.betas();
  const double k = static_cast<double>(step_);
  const double bc1 = 1.0 - std::pow(b1, k);
  const double bc2 = 1.0 - std::pow(b2, k);
  exp_avg_.mul_(b1).add_(grad, 1.0 - b1);
  exp_avg_sq_.mul_(b2).addcmul_(grad, grad, 1.0 - b2);
  auto denom = (exp_avg_sq_.sqrt() / std::sqrt(bc2)).add_(o.eps());
  flat_.addcdiv_(exp_avg_, denom, -o.lr() / bc1);
  return loss;
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
