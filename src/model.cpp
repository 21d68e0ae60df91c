#include "sbgm/model.h"

#include <cmath>

#include "conditions.h"
#include "internal.h"
#include "sbgm/process.h"

namespace sbgm {

std::string to_string(Prediction p) {
  switch (p) {
    case Prediction::Epsilon:
      return "epsilon";
    case Prediction::Score:
      return "score";
    case Prediction::X0:
      return "x0";
    case Prediction::V:
      return "v";
  }
  return "unknown";
}

Prediction prediction_from_string(const std::string& name) {
  for (auto p :
       {Prediction::Epsilon,
        Prediction::Score,
        Prediction::X0,
        Prediction::V}) {
    if (to_string(p) == name) {
      return p;
    }
  }
  if (name == "eps") {
    return Prediction::Epsilon;
  }
  TORCH_CHECK(
      false,
      "unknown prediction '",
      name,
      "' (expected epsilon, score, x0 or v)");
}

Model::Model(ModelFn fn, Prediction prediction, int64_t discrete_steps)
    : fn_(std::move(fn)),
      prediction_(prediction),
      discrete_steps_(discrete_steps) {
  TORCH_CHECK(static_cast<bool>(fn_), "Model: the callable is empty");
  TORCH_CHECK(
      discrete_steps >= 0,
      "Model: discrete_steps must be >= 0, got ",
      discrete_steps);
}

Model::Model(Fns fns, Prediction prediction, int64_t discrete_steps)
    : fn_(std::move(fns.fn)),
      cond_fn_(std::move(fns.cond_fn)),
      set_fn_(std::move(fns.set_fn)),
      prediction_(prediction),
      discrete_steps_(discrete_steps) {
  TORCH_CHECK(
      static_cast<bool>(fn_) || static_cast<bool>(cond_fn_),
      "Model: the callable is empty");
  TORCH_CHECK(
      discrete_steps >= 0,
      "Model: discrete_steps must be >= 0, got ",
      discrete_steps);
}

Model Model::conditional(
    CondModelFn fn,
    Prediction prediction,
    int64_t discrete_steps,
    CondSetModelFn set_fn) {
  TORCH_CHECK(
      static_cast<bool>(fn), "Model::conditional: the callable is empty");
  return Model(
      Fns{ModelFn(), std::move(fn), std::move(set_fn)},
      prediction,
      discrete_steps);
}

Model Model::with_condition(torch::Tensor cond) const {
  TORCH_CHECK(
      is_conditional(),
      "Model::with_condition: this ",
      to_string(prediction_),
      " model takes no condition (make it with Model::conditional or from a "
      "network built with num_classes)");
  TORCH_CHECK(
      !cond.defined() || cond.dim() >= 1,
      "Model::with_condition: the condition needs one row per sample, got a "
      "0-dim tensor");
  Model m = *this;
  m.condition_ = std::move(cond);
  return m;
}

torch::Tensor Model::operator()(
    const torch::Tensor& x, const torch::Tensor& t) const {
  if (cond_fn_) {
    return (*this)(x, t, condition_);
  }
  return checked(fn_(x, t), x);
}

torch::Tensor Model::operator()(
    const torch::Tensor& x,
    const torch::Tensor& t,
    const torch::Tensor& cond) const {
  TORCH_CHECK(
      cond_fn_,
      "Model: a condition was given to an unconditional ",
      to_string(prediction_),
      " model");
  if (cond.defined()) {
    TORCH_CHECK(
        cond.dim() >= 1 && x.dim() >= 1 && cond.size(0) == x.size(0),
        "Model: the condition has shape ",
        detail::shape_str(cond),
        " for a batch of shape ",
        detail::shape_str(x),
        "; it needs one row per sample (",
        x.dim() >= 1 ? x.size(0) : 0,
        ")");
    detail::check_same_device(cond, "the condition", x, "x", "Model");
  }
  return checked(cond_fn_(x, t, cond), x);
}

std::vector<torch::Tensor> Model::evaluate_conditions(
    const torch::Tensor& x,
    const torch::Tensor& t,
    const std::vector<torch::Tensor>& conds) const {
  TORCH_CHECK(
      cond_fn_,
      "Model::evaluate_conditions: this ",
      to_string(prediction_),
      " model takes no condition");
  TORCH_CHECK(
      !conds.empty(), "Model::evaluate_conditions: no condition was given");
  TORCH_CHECK(
      x.dim() >= 1 && x.size(0) > 0,
      "Model::evaluate_conditions: x needs a non-empty batch, got shape ",
      detail::shape_str(x));
  const int64_t n = x.size(0);
  const auto k = static_cast<int64_t>(conds.size());
  for (int64_t i = 0; i < k; ++i) {
    const auto& c = conds[static_cast<size_t>(i)];
    TORCH_CHECK(
        c.defined(),
        "Model::evaluate_conditions: condition ",
        i,
        " is undefined; pass the network's null class (or zeros) instead");
    TORCH_CHECK(
        c.dim() >= 1 && c.size(0) == n,
        "Model::evaluate_conditions: condition ",
        i,
        " has shape ",
        detail::shape_str(c),
        " for a batch of ",
        n,
        "; it needs one row per sample");
    detail::check_same_device(
        c, "the condition", x, "x", "Model::evaluate_conditions");
  }
  std::vector<torch::Tensor> outs;
  if (k == 1) {
    outs.push_back(checked(cond_fn_(x, t, conds[0]), x));
    return outs;
  }
  if (set_fn_) {
    outs = set_fn_(x, t, conds);
    TORCH_CHECK(
        static_cast<int64_t>(outs.size()) == k,
        "Model::evaluate_conditions: the model returned ",
        outs.size(),
        " outputs for ",
        k,
        " conditions");
    for (auto& o : outs) {
      checked(o, x);
    }
    return outs;
  }
  return detail::batched_conditions(
      x,
      t,
      conds,
      [this](
          const torch::Tensor& xk,
          const torch::Tensor& tk,
          const torch::Tensor& ck) {
        return checked(cond_fn_(xk, tk, ck), xk);
      });
}

torch::Tensor Model::checked(
    const torch::Tensor& out, const torch::Tensor& x) const {
  TORCH_CHECK(out.defined(), "Model: the model returned an undefined tensor");
  TORCH_CHECK(
      out.sizes() == x.sizes(),
      "Model: the model returned shape ",
      detail::shape_str(out),
      " for input of shape ",
      detail::shape_str(x),
      "; a ",
      to_string(prediction_),
      " model must return the input's shape");
  TORCH_CHECK(
      out.device() == x.device(),
      "Model: the model returned a tensor on ",
      out.device(),
      " for input on ",
      x.device());
  TORCH_CHECK(
      out.scalar_type() == x.scalar_type(),
      "Model: the model returned dtype ",
      out.scalar_type(),
      " for input of dtype ",
      x.scalar_type());
  return out;
}

void Model::check_process(
    const NoiseProcess& process, const char* where) const {
  if (discrete_steps_ == 0) {
    return;
  }
  TORCH_CHECK(
      process.integer_model_time(),
      where,
      ": the model takes integer step indices in [0, ",
      discrete_steps_,
      ") (a network with a learned per-step time embedding), but the ",
      process.describe(),
      " process feeds it continuous times; sample it under a "
      "DiscreteProcess of its schedule (with quantize on), or train a "
      "network with sinusoidal or Fourier time features");
  TORCH_CHECK(
      process.num_model_steps() <= discrete_steps_,
      where,
      ": the ",
      process.describe(),
      " process has ",
      process.num_model_steps(),
      " steps but the model embeds only ",
      discrete_steps_);
}

namespace {

void check_convert(const torch::Tensor& out, const torch::Tensor& x) {
  detail::check_floating(out, "out", "convert_prediction");
  TORCH_CHECK(
      x.defined() && out.sizes() == x.sizes(),
      "convert_prediction: output has shape ",
      detail::shape_str(out),
      " but x has shape ",
      x.defined() ? detail::shape_str(x) : std::string("(undefined)"));
}

}  // namespace

torch::Tensor convert_prediction(
    const torch::Tensor& out,
    Prediction from,
    Prediction to,
    const torch::Tensor& x,
    double alpha,
    double sigma) {
  check_convert(out, x);
  TORCH_CHECK(
      sigma > 0.0 && std::isfinite(sigma),
      "convert_prediction: sigma must be finite and > 0, got ",
      sigma);
  TORCH_CHECK(
      alpha > 0.0 && std::isfinite(alpha),
      "convert_prediction: alpha must be finite and > 0, got ",
      alpha);
  if (from == to) {
    return out;
  }
  const auto c = prediction_coeffs(from, to, alpha, sigma);
  auto r = out * c.out_coeff;
  return c.x_coeff_is_zero ? r : r.add_(x, c.x_coeff);
}

torch::Tensor convert_prediction(
    const torch::Tensor& out,
    Prediction from,
    Prediction to,
    const torch::Tensor& x,
    const torch::Tensor& alpha,
    const torch::Tensor& sigma) {
  check_convert(out, x);
  detail::check_floating(alpha, "alpha", "convert_prediction");
  detail::check_floating(sigma, "sigma", "convert_prediction");
  if (from == to) {
    return out;
  }
  // Coefficients in the output's dtype, so float64 tables keep a float32
  // output float32.
  const auto c = prediction_coeffs(
      from, to, alpha.to(out.scalar_type()), sigma.to(out.scalar_type()));
  auto r = out * c.out_coeff;
  return c.x_coeff_is_zero ? r : r.addcmul_(x, c.x_coeff);
}

}  // namespace sbgm
