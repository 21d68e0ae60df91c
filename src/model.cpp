#include "sbgm/model.h"

#include <cmath>

#include "internal.h"

namespace sbgm {

std::string to_string(Prediction p) {
  switch (p) {
    case Prediction::Epsilon:
      return "epsilon";
    case Prediction::Score:
      return "score";
    case Prediction::X0:
      return "x0";
  }
  return "unknown";
}

Model::Model(ModelFn fn, Prediction prediction)
    : fn_(std::move(fn)), prediction_(prediction) {
  TORCH_CHECK(static_cast<bool>(fn_), "Model: the callable is empty");
}

torch::Tensor Model::operator()(
    const torch::Tensor& x, const torch::Tensor& t) const {
  auto out = fn_(x, t);
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

namespace {

// m and s are doubles or broadcastable tensors.
template <class C>
torch::Tensor convert_impl(
    const torch::Tensor& out,
    Prediction from,
    Prediction to,
    const torch::Tensor& x,
    const C& m,
    const C& s) {
  if (from == to) {
    return out;
  }
  // Go through epsilon.
  torch::Tensor eps;
  switch (from) {
    case Prediction::Epsilon:
      eps = out;
      break;
    case Prediction::Score:
      eps = -out * s;
      break;
    case Prediction::X0:
      eps = (x - out * m) / s;
      break;
  }
  switch (to) {
    case Prediction::Epsilon:
      return eps;
    case Prediction::Score:
      return -eps / s;
    case Prediction::X0:
      return (x - eps * s) / m;
  }
  return eps;
}

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
    double m,
    double s) {
  check_convert(out, x);
  TORCH_CHECK(
      s > 0.0 && std::isfinite(s),
      "convert_prediction: std s must be > 0, got ",
      s);
  TORCH_CHECK(
      m > 0.0 && std::isfinite(m),
      "convert_prediction: mean coefficient m must be > 0, got ",
      m);
  return convert_impl(out, from, to, x, m, s);
}

torch::Tensor convert_prediction(
    const torch::Tensor& out,
    Prediction from,
    Prediction to,
    const torch::Tensor& x,
    const torch::Tensor& m,
    const torch::Tensor& s) {
  check_convert(out, x);
  return convert_impl(out, from, to, x, m, s);
}

}  // namespace sbgm
