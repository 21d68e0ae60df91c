#include "sbgm/samplers/common.h"

#include <c10/core/InferenceMode.h>

#include <cmath>

#include "../internal.h"
#include "sbgm/random.h"

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

namespace {

// SplitMix64 (Steele, Lea & Flood 2014): a bijective mix, so distinct
// (seed, sample, stream) triples give unrelated generator seeds.
uint64_t splitmix64(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

}  // namespace

struct NoiseSource::State {
  std::optional<torch::Generator> generator;
  bool per_sample = false;
  uint64_t seed = 0;
  int64_t first = 0;
  uint64_t stream = 0;
  std::vector<torch::Generator> streams;
};

NoiseSource::NoiseSource(const CommonOptions& options, uint64_t stream)
    : state_(std::make_shared<State>()) {
  state_->generator = options.generator();
  state_->per_sample = options.per_sample_seed().has_value();
  state_->seed = options.per_sample_seed().value_or(0);
  state_->first = options.first_sample();
  state_->stream = stream;
  TORCH_CHECK(
      options.first_sample() >= 0,
      "CommonOptions: first_sample must be >= 0, got ",
      options.first_sample());
}

bool NoiseSource::per_sample() const {
  return state_->per_sample;
}

void NoiseSource::fill(torch::Tensor& buf) {
  auto& s = *state_;
  if (!s.per_sample) {
    buf.normal_(0.0, 1.0, sbgm::detail::to_c10(s.generator));
    return;
  }
  TORCH_CHECK(
      buf.dim() >= 1, "NoiseSource: per-sample noise needs a batch dimension");
  const int64_t n = buf.size(0);
  TORCH_CHECK(
      s.streams.empty() || static_cast<int64_t>(s.streams.size()) == n,
      "NoiseSource: the batch changed from ",
      s.streams.size(),
      " to ",
      n,
      " samples between draws");
  if (s.streams.empty()) {
    for (int64_t i = 0; i < n; ++i) {
      const auto index = static_cast<uint64_t>(s.first + i);
      s.streams.push_back(make_generator(
          splitmix64(splitmix64(splitmix64(s.seed) ^ index) ^ (s.stream + 1))));
    }
  }
  // Drawn row by row on the CPU, each row from its own stream, so a row's
  // numbers depend on nothing else; then moved to buf's device.
  auto host =
      buf.device().is_cpu() && buf.is_contiguous()
          ? buf
          : torch::empty(buf.sizes(), buf.options().device(torch::kCPU));
  for (int64_t i = 0; i < n; ++i) {
    host.select(0, i).normal_(0.0, 1.0, s.streams[static_cast<size_t>(i)]);
  }
  if (!host.is_same(buf)) {
    buf.copy_(host);
  }
}

torch::Tensor NoiseSource::randn(
    torch::IntArrayRef shape, const torch::TensorOptions& options) {
  auto x = torch::empty(shape, options);
  fill(x);
  return x;
}

Model batch_invariant_model(const Model& model, const CommonOptions& options) {
  if (!options.per_sample_seed()) {
    return model;
  }
  const int64_t chunk = options.model_batch();
  TORCH_CHECK(
      chunk >= 1, "CommonOptions: model_batch must be >= 1, got ", chunk);
  const int64_t first = options.first_sample();
  // A conditional model's condition is chunked with its rows.
  const Model inner = model;
  return Model(
      [inner, chunk, first](const torch::Tensor& x, const torch::Tensor& t) {
        const torch::Tensor& c = inner.condition();
        // Sample g (first + row) always sits at row g % chunk of a call of
        // exactly `chunk` rows: kernels whose arithmetic depends on the
        // row's position in the call (OpenBLAS's does, by the row index
        // modulo its tile) then compute it the same way in any batch.
        const int64_t n = x.size(0);
        const bool shared = t.dim() == 0 || (n > 0 && t.stride(0) == 0);
        std::vector<torch::Tensor> outs;
        for (int64_t g = first; g < first + n;) {
          const int64_t pos = g % chunk;
          const int64_t len = std::min(chunk - pos, first + n - g);
          const int64_t row = g - first;
          auto shape = x.sizes().vec();
          shape[0] = chunk;
          auto xs = torch::zeros(shape, x.options());
          xs.slice(0, pos, pos + len).copy_(x.slice(0, row, row + len));
          torch::Tensor ts;
          if (shared) {
            ts = t.reshape({-1}).slice(0, 0, 1).expand({chunk});
          } else {  // padded with a time the model accepts
            ts = t.slice(0, row, row + 1).repeat({chunk});
            ts.slice(0, pos, pos + len).copy_(t.slice(0, row, row + len));
          }
          torch::Tensor out;
          if (c.defined()) {  // padded with the first row's condition
            auto cshape = c.sizes().vec();
            cshape[0] = chunk;
            auto cs = c.slice(0, row, row + 1).expand(cshape).clone();
            cs.slice(0, pos, pos + len).copy_(c.slice(0, row, row + len));
            out = inner(xs, ts, cs);
          } else {
            out = inner(xs, ts);
          }
          outs.push_back(out.slice(0, pos, pos + len));
          g += len;
        }
        return outs.size() == 1 ? outs[0] : torch::cat(outs);
      },
      model.prediction(),
      model.discrete_steps());
}

torch::Tensor initial_state(
    const NoiseProcess& process,
    double t0,
    torch::IntArrayRef shape,
    const CommonOptions& options,
    const char* where) {
  check_device(options.device(), where);
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
    sbgm::detail::check_finite(x, "x_init", where);
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
  auto x = NoiseSource(options, /*stream=*/0)
               .randn(
                   shape,
                   torch::TensorOptions()
                       .dtype(options.dtype())
                       .device(options.device()));
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
