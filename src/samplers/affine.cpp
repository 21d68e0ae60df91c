#include "affine.h"

#include <c10/core/InferenceMode.h>

#include "../internal.h"
#include "graph.h"

namespace sbgm::samplers::detail {

AffineSteps::AffineSteps(size_t n) {
  for (auto* v :
       {&t,
        &t_next,
        &c_x,
        &c_out,
        &c_noise,
        &x0_x,
        &x0_out,
        &c1,
        &c2,
        &c_m1,
        &c_m2}) {
    v->assign(n, 0.0);
  }
}

void AffineSteps::set_point(
    size_t i,
    const NoiseProcess& process,
    Prediction p,
    const ProcessPoint& at,
    double next) {
  t[i] = process.model_time(at.t);
  t_next[i] = next;
  const auto m = prediction_coeffs(p, Prediction::X0, at.alpha, at.sigma);
  x0_x[i] = m.x_coeff;
  x0_out[i] = m.out_coeff;
}

void fill_normal(
    torch::Tensor& buf, const torch::Tensor& x, NoiseSource& source) {
  if (!buf.defined() || buf.sizes() != x.sizes() ||
      buf.scalar_type() != x.scalar_type() || buf.device() != x.device()) {
    buf = torch::empty_like(x, torch::MemoryFormat::Contiguous);
  }
  source.fill(buf);
}

AffineStepper::AffineStepper(
    Model model,
    std::shared_ptr<const AffineSteps> steps,
    const CommonOptions& common)
    : model_(batch_invariant_model(model, common)),
      steps_(std::move(steps)),
      source_(common) {}

void AffineStepper::step(torch::Tensor& x, int64_t i, torch::Tensor* x0_out) {
  c10::InferenceMode guard;
  const auto& st = *steps_;
  const auto k = static_cast<size_t>(i);
  // One time for the whole batch, handed over as an expanded [N] tensor
  // (stride 0): one fill per step (see ModelCaller).
  const auto tdtype = st.integer_time ? torch::kLong : x.scalar_type();
  if (!tbuf_.defined() || tbuf_.scalar_type() != tdtype ||
      tbuf_.device() != x.device()) {
    tbuf_ = torch::empty({1}, x.options().dtype(tdtype));
  }
  if (st.integer_time) {
    tbuf_.fill_(static_cast<int64_t>(st.t[k]));
  } else {
    tbuf_.fill_(st.t[k]);
  }
  auto out = model_(x, tbuf_.expand({x.size(0)}));
  if (out.data_ptr() == x.data_ptr()) {
    out = out.clone();  // the model handed back x itself
  }
  torch::Tensor x0;
  if (st.clip || st.history || x0_out != nullptr) {
    x0 = out.mul(st.x0_out[k]);
    if (st.x0_x[k] != 0.0) {
      x0.add_(x, st.x0_x[k]);
    }
    if (st.clip) {
      x0.clamp_(-st.clip_range, st.clip_range);
    }
  }
  if (st.clip) {
    x.mul_(st.c2[k]).add_(x0, st.c1[k]);
  } else {
    x.mul_(st.c_x[k]).add_(out, st.c_out[k]);
  }
  if (st.c_m1[k] != 0.0) {
    x.add_(m1_, st.c_m1[k]);
  }
  if (st.c_m2[k] != 0.0) {
    x.add_(m2_, st.c_m2[k]);
  }
  if (st.history) {
    m2_ = std::move(m1_);
    m1_ = x0;
  }
  if (st.c_noise[k] != 0.0) {
    fill_normal(noise_, x, source_);
    x.add_(noise_, st.c_noise[k]);
  }
  if (x0_out != nullptr) {
    *x0_out = x0;
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
  SamplerLoop loop(common, n, where);
  loop.start(x);
  TORCH_CHECK(
      !(common.cuda_graph() && common.per_sample_seed()),
      where,
      ": cuda_graph cannot be combined with per_sample_seed (a captured "
      "step draws from one generator)");
  TORCH_INTERNAL_ASSERT(
      !(common.cuda_graph() && steps->history),
      where,
      ": a multistep table under cuda_graph");
  if (common.cuda_graph() && x.is_cuda()) {
    GraphedAffineStepper graphed(model, steps, x, common.generator());
    for (int64_t i = 0; i < n; ++i) {
      graphed.step(i);
      loop.step(i + 1, steps->t_next[i], x);
    }
  } else {
    AffineStepper stepper(model, steps, common);
    torch::Tensor x0;
    torch::Tensor* want = loop.wants_x0() ? &x0 : nullptr;
    for (int64_t i = 0; i < n; ++i) {
      stepper.step(x, i, want);
      loop.step(i + 1, steps->t_next[i], x, x0);
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
