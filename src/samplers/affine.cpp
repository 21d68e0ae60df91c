#include "affine.h"

#include <c10/core/InferenceMode.h>

#include "graph.h"
#include "loop.h"

namespace sbgm::samplers::detail {

AffineSteps::AffineSteps(size_t n) {
  for (auto* v : {&t, &c_x, &c_out, &c_noise, &x0_x, &x0_out, &c1, &c2}) {
    v->assign(n, 0.0);
  }
}

void fold_eps(
    AffineSteps& st,
    size_t i,
    Prediction p,
    double m,
    double s,
    double a,
    double b) {
  switch (p) {
    case Prediction::Epsilon:
      st.c_x[i] = a;
      st.c_out[i] = b;
      break;
    case Prediction::Score:
      st.c_x[i] = a;
      st.c_out[i] = -b * s;
      break;
    case Prediction::X0:
      st.c_x[i] = a + b / s;
      st.c_out[i] = -b * m / s;
      break;
  }
}

void fold_x0(AffineSteps& st, size_t i, Prediction p, double m, double s) {
  switch (p) {
    case Prediction::Epsilon:
      st.x0_x[i] = 1.0 / m;
      st.x0_out[i] = -s / m;
      break;
    case Prediction::Score:
      st.x0_x[i] = 1.0 / m;
      st.x0_out[i] = s * s / m;
      break;
    case Prediction::X0:
      st.x0_x[i] = 0.0;
      st.x0_out[i] = 1.0;
      break;
  }
}

AffineStepper::AffineStepper(
    Model model,
    std::shared_ptr<const AffineSteps> steps,
    std::optional<torch::Generator> generator)
    : model_(std::move(model)),
      steps_(std::move(steps)),
      generator_(std::move(generator)) {}

void AffineStepper::step(torch::Tensor& x, int64_t i) {
  c10::InferenceMode guard;
  const auto& st = *steps_;
  const auto k = static_cast<size_t>(i);
  // One time for the whole batch, handed over as an expanded [N] tensor
  // (stride 0): one fill per step, and models can see that t is shared
  // (sbgm::MLP then embeds it once).
  const auto tdtype = st.discrete ? torch::kLong : x.scalar_type();
  if (!tbuf_.defined() || tbuf_.scalar_type() != tdtype ||
      tbuf_.device() != x.device()) {
    tbuf_ = torch::empty({1}, x.options().dtype(tdtype));
  }
  if (st.discrete) {
    tbuf_.fill_(static_cast<int64_t>(st.t[k]));
  } else {
    tbuf_.fill_(st.t[k]);
  }
  auto out = model_(x, tbuf_.expand({x.size(0)}));
  if (out.data_ptr() == x.data_ptr()) {
    out = out.clone();  // the model handed back x itself
  }
  if (st.clip) {
    auto x0 = out.mul(st.x0_out[k]);
    if (st.x0_x[k] != 0.0) {
      x0.add_(x, st.x0_x[k]);
    }
    x0.clamp_(-st.clip_range, st.clip_range);
    x.mul_(st.c2[k]).add_(x0, st.c1[k]);
  } else {
    x.mul_(st.c_x[k]).add_(out, st.c_out[k]);
  }
  if (st.c_noise[k] > 0.0) {
    fill_normal(noise_, x, generator_);
    x.add_(noise_, st.c_noise[k]);
  }
}

SampleResult run_affine(
    const Model& model,
    std::shared_ptr<const AffineSteps> steps,
    torch::Tensor x,
    const CommonOptions& common,
    const char* where) {
  c10::InferenceMode guard;
  const int64_t n = steps->size();
  Loop loop(common, n, where);
  loop.start(x);
  if (common.cuda_graph() && x.is_cuda()) {
    GraphedAffineStepper graphed(
        model, std::move(steps), x, common.generator());
    for (int64_t i = 0; i < n; ++i) {
      graphed.step(i);
      loop.step(i + 1, x);
    }
  } else {
    AffineStepper stepper(model, std::move(steps), common.generator());
    for (int64_t i = 0; i < n; ++i) {
      stepper.step(x, i);
      loop.step(i + 1, x);
    }
  }
  return loop.finish(std::move(x), n);
}

void check_no_cuda_graph(const CommonOptions& common, const char* where) {
  TORCH_CHECK(
      !common.cuda_graph(),
      where,
      ": cuda_graph is supported by ddpm, ddim and euler_maruyama only");
}

}  // namespace sbgm::samplers::detail
