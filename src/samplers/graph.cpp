#include "graph.h"

#include <c10/core/InferenceMode.h>

#include "../internal.h"

#ifdef SBGM_WITH_CUDA
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace sbgm::samplers::detail {

#ifdef SBGM_WITH_CUDA

namespace {
// Columns of the device coefficient table.
enum Col : int64_t { kCx, kCout, kNoise, kX0x, kX0out, kC1, kC2 };
}  // namespace

struct GraphedAffineStepper::Impl {
  Impl(
      Model m,
      std::shared_ptr<const AffineSteps> st,
      std::optional<torch::Generator> gen,
      torch::Tensor state)
      : model(std::move(m)),
        steps(std::move(st)),
        generator(std::move(gen)),
        x(std::move(state)) {}

  Model model;
  std::shared_ptr<const AffineSteps> steps;
  std::optional<torch::Generator> generator;
  torch::Tensor x, table, times, idx, noise;
  at::cuda::CUDAGraph graph;

  // One step, reading its coefficients and time from the device tables at
  // the device counter idx: no host value enters the captured kernels.
  void body() {
    auto row = table.index_select(0, idx).reshape({-1});
    auto t = times.index_select(0, idx).expand({x.size(0)});
    auto out = model(x, t);
    if (out.data_ptr() == x.data_ptr()) {
      out = out.clone();
    }
    if (steps->clip) {
      auto x0 = out.mul(row[kX0out]);
      x0.addcmul_(x, row[kX0x]);
      x0.clamp_(-steps->clip_range, steps->clip_range);
      x.mul_(row[kC2]).addcmul_(x0, row[kC1]);
    } else {
      x.mul_(row[kCx]).addcmul_(out, row[kCout]);
    }
    x.addcmul_(noise, row[kNoise]);
  }
};

GraphedAffineStepper::GraphedAffineStepper(
    Model model,
    std::shared_ptr<const AffineSteps> steps,
    torch::Tensor x,
    std::optional<torch::Generator> generator) {
  TORCH_CHECK(
      x.is_cuda(),
      "cuda_graph: the state must be a CUDA tensor, got device ",
      x.device());
  // The graph reads its coefficients as tensors of x's dtype; in half or
  // bfloat16 they would round (1 / sqrt(alpha) ~ 1.00005 becomes 1).
  TORCH_CHECK(
      x.scalar_type() == torch::kFloat || x.scalar_type() == torch::kDouble,
      "cuda_graph: the state must be float32 or float64, got ",
      x.scalar_type());
  c10::InferenceMode inference;
  c10::cuda::CUDAGuard device_guard(x.device());
  impl_ = std::make_unique<Impl>(
      std::move(model), std::move(steps), std::move(generator), x);
  auto& m = *impl_;
  const auto& st = *m.steps;
  auto col = [](const std::vector<double>& v) {
    return torch::tensor(v, torch::kDouble);
  };
  // Columns in the order of Col.
  m.table = torch::stack(
                {col(st.c_x),
                 col(st.c_out),
                 col(st.c_noise),
                 col(st.x0_x),
                 col(st.x0_out),
                 col(st.c1),
                 col(st.c2)},
                1)
                .to(x.options());
  m.times = col(st.t).to(
      x.options().dtype(st.integer_time ? torch::kLong : x.scalar_type()));
  m.idx = torch::zeros({1}, x.options().dtype(torch::kLong));
  // Zero, so that the warm-up and any noise-free step add nothing.
  m.noise = torch::zeros_like(x, torch::MemoryFormat::Contiguous);

  // Warm up and capture on a side stream (capture needs a non-default
  // stream; the warm-up lets cuBLAS and cuDNN set up outside the capture).
  // The warm-up steps change the state, which is restored afterwards.
  auto saved = x.clone();
  const auto dev = x.device().index();
  auto current = c10::cuda::getCurrentCUDAStream(dev);
  auto side = c10::cuda::getStreamFromPool(false, dev);
  at::cuda::CUDAEvent ready;
  ready.record(current);
  ready.block(side);
  {
    c10::cuda::CUDAStreamGuard stream_guard(side);
    for (int w = 0; w < 2; ++w) {
      m.body();
    }
    m.graph.capture_begin();
    try {
      m.body();
    } catch (...) {
      // End the capture so that the stream is usable again, then report
      // the model's error (e.g. a host sync inside it).
      try {
        m.graph.capture_end();
      } catch (...) {
      }
      throw;
    }
    m.graph.capture_end();
  }
  at::cuda::CUDAEvent captured;
  captured.record(side);
  captured.block(current);
  m.x.copy_(saved);
}

GraphedAffineStepper::~GraphedAffineStepper() = default;

void GraphedAffineStepper::step(int64_t i) {
  auto& m = *impl_;
  TORCH_CHECK(
      i >= 0 && i < m.steps->size(),
      "cuda_graph: step must lie in [0, ",
      m.steps->size(),
      "), got ",
      i);
  c10::InferenceMode inference;
  c10::cuda::CUDAGuard device_guard(m.x.device());
  m.idx.fill_(i);
  if (m.steps->c_noise[static_cast<size_t>(i)] > 0.0) {
    m.noise.normal_(0.0, 1.0, sbgm::detail::to_c10(m.generator));
  }
  m.graph.replay();
}

#else  // !SBGM_WITH_CUDA

struct GraphedAffineStepper::Impl {};

GraphedAffineStepper::GraphedAffineStepper(
    Model /*model*/,
    std::shared_ptr<const AffineSteps> /*steps*/,
    torch::Tensor x,
    std::optional<torch::Generator> /*generator*/) {
  TORCH_CHECK(
      false,
      "cuda_graph: this sbgm was built without CUDA support (its LibTorch "
      "has no CUDA); the state is on device ",
      x.device());
}

GraphedAffineStepper::~GraphedAffineStepper() = default;

void GraphedAffineStepper::step(int64_t /*i*/) {
  TORCH_CHECK(false, "cuda_graph: sbgm was built without CUDA support");
}

#endif

}  // namespace sbgm::samplers::detail
