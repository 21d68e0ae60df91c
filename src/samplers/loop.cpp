#include "loop.h"

namespace sbgm::samplers::detail {

void check_shape(torch::IntArrayRef shape, const char* where) {
  TORCH_CHECK(
      !shape.empty(), where, ": shape must have at least one dimension");
  for (auto s : shape) {
    TORCH_CHECK(
        s >= 1, where, ": every size in shape must be >= 1, got ", shape);
  }
}

torch::Tensor initial_state(
    torch::IntArrayRef shape,
    double prior_std,
    const CommonOptions& options,
    const char* where) {
  check_shape(shape, where);
  TORCH_CHECK(
      options.trajectory_every() >= 0,
      where,
      ": trajectory_every must be >= 0, got ",
      options.trajectory_every());
  if (options.x_init().defined()) {
    const auto& x = options.x_init();
    sbgm::detail::check_floating(x, "x_init", where);
    TORCH_CHECK(
        x.sizes() == shape,
        where,
        ": x_init has shape ",
        sbgm::detail::shape_str(x),
        " but the requested shape is ",
        shape);
    return x.clone();
  }
  TORCH_CHECK(
      c10::isFloatingType(options.dtype()),
      where,
      ": dtype must be floating point, got ",
      options.dtype());
  auto x = torch::randn(
      shape,
      sbgm::detail::to_c10(options.generator()),
      torch::TensorOptions().dtype(options.dtype()).device(options.device()));
  if (prior_std != 1.0) {
    x.mul_(prior_std);
  }
  return x;
}

torch::Tensor noise_like(
    const torch::Tensor& x, const std::optional<torch::Generator>& gen) {
  return torch::randn(x.sizes(), sbgm::detail::to_c10(gen), x.options());
}

void fill_normal(
    torch::Tensor& buf,
    const torch::Tensor& x,
    const std::optional<torch::Generator>& gen) {
  if (!buf.defined() || buf.sizes() != x.sizes() ||
      buf.scalar_type() != x.scalar_type() || buf.device() != x.device()) {
    buf = torch::empty_like(x, torch::MemoryFormat::Contiguous);
  }
  buf.normal_(0.0, 1.0, sbgm::detail::to_c10(gen));
}

void check_finite(const torch::Tensor& x, const char* where) {
  TORCH_CHECK(
      x.isfinite().all().item<bool>(),
      where,
      ": the model produced non-finite values (NaN or Inf); the samples are "
      "not usable");
}

Loop::Loop(const CommonOptions& options, int64_t total, const char* where)
    : options_(options), total_(total), where_(where) {}

void Loop::start(const torch::Tensor& x) {
  if (options_.trajectory_every() > 0) {
    trajectory_.push_back(x.clone());
    last_recorded_ = 0;
  }
}

void Loop::step(int64_t step, const torch::Tensor& x) {
  last_step_ = step;
  const int64_t k = options_.trajectory_every();
  if (k > 0 && step % k == 0) {
    check_finite(x, where_);
    trajectory_.push_back(x.clone());
    last_recorded_ = step;
  }
  if (options_.progress()) {
    options_.progress()(step, total_);
  }
}

SampleResult Loop::finish(torch::Tensor x, int64_t nfe) {
  check_finite(x, where_);
  if (options_.trajectory_every() > 0 && last_recorded_ != last_step_) {
    trajectory_.push_back(x.clone());
  }
  SampleResult r;
  r.samples = std::move(x);
  r.trajectory = std::move(trajectory_);
  r.nfe = nfe;
  return r;
}

}  // namespace sbgm::samplers::detail
