#include "sbgm/samplers/common.h"

#include <c10/core/InferenceMode.h>

#include <cmath>

#include "../internal.h"

namespace sbgm::samplers {

GridSpec::GridSpec(int64_t num_steps) : num_steps_(num_steps) {
  TORCH_CHECK(
      num_steps >= 1, "GridSpec: num_steps must be >= 1, got ", num_steps);
}

GridSpec::GridSpec(TimeGrid grid) : grid_(std::move(grid)) {}

TimeGrid GridSpec::resolve(
    const NoiseProcess& process, int64_t default_steps) const {
  if (grid_) {
    return *grid_;
  }
  return grids::default_grid(
      process, num_steps_ > 0 ? num_steps_ : default_steps);
}

torch::Tensor initial_state(
    const NoiseProcess& process,
    double t0,
    torch::IntArrayRef shape,
    const CommonOptions& options,
    const char* where) {
  TORCH_CHECK(
      !shape.empty(), where, ": shape must have at least one dimension");
  for (auto s : shape) {
    TORCH_CHECK(
        s >= 1, where, ": every size in shape must be >= 1, got ", shape);
  }
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
    TORCH_CHECK(
        x.isfinite().all().item<bool>(),
        where,
        ": x_init holds non-finite values (NaN or Inf)");
    return x.clone();
  }
  TORCH_CHECK(
      c10::isFloatingType(options.dtype()),
      where,
      ": dtype must be floating point, got ",
      options.dtype());
  double std = process.prior_std();
  if (t0 != process.t_max()) {
    const ProcessPoint p0 = process.at(t0), pm = process.at(process.t_max());
    std *= std::sqrt(
        (p0.alpha * p0.alpha + p0.sigma * p0.sigma) /
        (pm.alpha * pm.alpha + pm.sigma * pm.sigma));
  }
  auto x = torch::randn(
      shape,
      sbgm::detail::to_c10(options.generator()),
      torch::TensorOptions().dtype(options.dtype()).device(options.device()));
  if (std != 1.0) {
    x.mul_(std);
  }
  return x;
}

ModelCaller::ModelCaller(
    Model model, const NoiseProcess& process, const char* where)
    : model_(std::move(model)), process_(process) {
  model_.check_process(process_, where);
}

torch::Tensor ModelCaller::operator()(const torch::Tensor& x, double t) {
  const auto dtype =
      process_.integer_model_time() ? torch::kLong : x.scalar_type();
  if (!tbuf_.defined() || tbuf_.scalar_type() != dtype ||
      tbuf_.device() != x.device()) {
    tbuf_ = torch::empty({1}, x.options().dtype(dtype));
  }
  const double mt = process_.model_time(t);
  if (dtype == torch::kLong) {
    tbuf_.fill_(static_cast<int64_t>(mt));
  } else {
    tbuf_.fill_(mt);
  }
  ++nfe_;
  auto out = model_(x, tbuf_.expand({x.size(0)}));
  if (out.data_ptr() == x.data_ptr()) {
    out = out.clone();  // the model handed back x itself
  }
  return out;
}

void check_finite(const torch::Tensor& x, const char* where) {
  TORCH_CHECK(
      x.isfinite().all().item<bool>(),
      where,
      ": the model produced non-finite values (NaN or Inf); the samples are "
      "not usable");
}

SamplerLoop::SamplerLoop(
    const CommonOptions& options, int64_t total, std::string where)
    : options_(options), total_(total), where_(std::move(where)) {}

void SamplerLoop::start(const torch::Tensor& x) {
  if (options_.trajectory_every() > 0) {
    trajectory_.push_back(x.clone());
    last_recorded_ = 0;
  }
}

void SamplerLoop::step(
    int64_t step, double t, const torch::Tensor& x, const torch::Tensor& x0) {
  last_step_ = step;
  const int64_t k = options_.trajectory_every();
  if (k > 0 && step % k == 0) {
    check_finite(x, where_.c_str());
    trajectory_.push_back(x.clone());
    last_recorded_ = step;
  }
  if (options_.progress()) {
    options_.progress()(step, total_);
  }
  if (options_.callback()) {
    options_.callback()(StepInfo{step, total_, t, x, x0});
  }
}

SampleResult SamplerLoop::finish(torch::Tensor x, int64_t nfe) {
  check_finite(x, where_.c_str());
  if (options_.trajectory_every() > 0 && last_recorded_ != last_step_) {
    trajectory_.push_back(x.clone());
  }
  SampleResult r;
  r.samples = std::move(x);
  r.trajectory = std::move(trajectory_);
  r.nfe = nfe;
  return r;
}

}  // namespace sbgm::samplers
