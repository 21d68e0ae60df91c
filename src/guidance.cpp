#include "sbgm/guidance.h"

#include <cmath>

#include "internal.h"

namespace sbgm {

namespace {

// The "no condition" of the unconditional half.
torch::Tensor null_like(const torch::Tensor& c, int64_t null_class) {
  if (c.is_floating_point()) {
    return torch::zeros_like(c);
  }
  if (null_class < 0) {
    return {};
  }
  return torch::full_like(c, null_class);
}

// Per-sample standard deviation over all but the batch dimension, shaped to
// broadcast against x.
torch::Tensor sample_std(const torch::Tensor& x) {
  return detail::batch_view(x.reshape({x.size(0), -1}).std(1), x);
}

}  // namespace

Model classifier_free_guidance(
    const Model& model, const GuidanceOptions& options) {
  TORCH_CHECK(
      model.is_conditional(),
      "classifier_free_guidance: the model is not conditional (a ",
      to_string(model.prediction()),
      " model without a condition)");
  const double w = options.scale();
  const double phi = options.rescale();
  TORCH_CHECK(
      std::isfinite(w),
      "classifier_free_guidance: the scale must be finite, got ",
      w);
  TORCH_CHECK(
      phi >= 0 && phi <= 1,
      "classifier_free_guidance: rescale must lie in [0, 1], got ",
      phi);
  const int64_t null_class = options.null_class();
  TORCH_CHECK(
      null_class >= -1,
      "classifier_free_guidance: null_class must be >= 0 (or -1: an "
      "undefined condition), got ",
      null_class);
  Model inner = model;
  return Model::conditional(
      [inner, w, phi, null_class](
          const torch::Tensor& x,
          const torch::Tensor& t,
          const torch::Tensor& c) {
        if (!c.defined()) {
          return inner(x, t, c);
        }
        const auto uncond = null_like(c, null_class);
        if (w == 0) {
          return inner(x, t, uncond);
        }
        if (w == 1) {
          return inner(x, t, c);
        }
        TORCH_CHECK(
            uncond.defined(),
            "classifier_free_guidance: integer conditions need "
            "GuidanceOptions::null_class (the net's num_classes) to batch the "
            "unconditional half with the conditional one");
        // One call for both halves: a batched forward over [x; x] with
        // [c; ∅], or a net's own forward_conditions, which shares the part
        // that does not see the condition.
        auto outs = inner.evaluate_conditions(x, t, {c, uncond});
        const auto& cond_out = outs[0];
        const auto& uncond_out = outs[1];
        auto guided = uncond_out + w * (cond_out - uncond_out);
        if (phi > 0) {
          auto rescaled = guided * (sample_std(cond_out) / sample_std(guided));
          guided = phi * rescaled + (1 - phi) * guided;
        }
        return guided;
      },
      model.prediction(),
      model.discrete_steps());
}

torch::Tensor drop_condition(
    const torch::Tensor& cond,
    double p,
    int64_t null_class,
    std::optional<torch::Generator> generator) {
  TORCH_CHECK(cond.defined(), "drop_condition: the condition is undefined");
  TORCH_CHECK(
      cond.dim() >= 1,
      "drop_condition: the condition needs one row per sample, got shape ",
      detail::shape_str(cond));
  TORCH_CHECK(
      p >= 0 && p <= 1, "drop_condition: p must lie in [0, 1], got ", p);
  const int64_t n = cond.size(0);
  auto u = torch::rand(
      {n}, detail::to_c10(generator), cond.options().dtype(torch::kFloat));
  auto dropped = u < p;
  if (cond.is_floating_point()) {
    return cond * detail::batch_view(
                      dropped.logical_not().to(cond.scalar_type()), cond);
  }
  TORCH_CHECK(
      null_class >= 0,
      "drop_condition: null_class must be >= 0 for integer labels, got ",
      null_class);
  return cond.masked_fill(dropped, null_class);
}

}  // namespace sbgm
