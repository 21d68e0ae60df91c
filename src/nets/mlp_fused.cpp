#include "sbgm/nets/mlp_fused.h"

#include <ATen/ATen.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>

#include "internal.h"

namespace sbgm {

namespace {

// The grad of p, allocated as zeros the first time (as backward() does).
torch::Tensor& grad_of(torch::Tensor& p) {
  if (!p.mutable_grad().defined()) {
    p.mutable_grad() = torch::zeros_like(p);
  }
  return p.mutable_grad();
}

}  // namespace

bool FusedMLPStep::supports(const MLP& net) {
  return net->options.embedding() == TimeEmbeddingKind::Learned &&
         net->options.activation() == Activation::ReLU;
}

FusedMLPStep::FusedMLPStep(MLP net) : net_(std::move(net)) {
  TORCH_CHECK(
      supports(net_),
      "FusedMLPStep: needs an MLP with a Learned embedding and ReLU, got "
      "embedding ",
      to_string(net_->options.embedding()),
      " and activation ",
      to_string(net_->options.activation()));
}

torch::Tensor FusedMLPStep::operator()(
    const torch::Tensor& x,
    const torch::Tensor& t,
    const torch::Tensor& target) {
  const auto& o = net_->options;
  const int64_t depth = o.depth();
  detail::check_floating(x, "x", "FusedMLPStep");
  TORCH_CHECK(
      x.dim() == 2 && x.size(1) == o.input_dim(),
      "FusedMLPStep: x must have shape [N, ",
      o.input_dim(),
      "], got ",
      detail::shape_str(x));
  TORCH_CHECK(
      target.sizes() == x.sizes(),
      "FusedMLPStep: target has shape ",
      detail::shape_str(target),
      " but x has shape ",
      detail::shape_str(x));
  detail::check_time_tensor(t, x, /*integer=*/true, "FusedMLPStep");
  TORCH_CHECK(
      t.dim() == 1,
      "FusedMLPStep: t must have one step per sample, got shape ",
      detail::shape_str(t));
  const int64_t n = x.size(0);
  const auto opts = x.options();
  if (z_.size() != static_cast<size_t>(depth) || z_[0].size(0) != n ||
      z_[0].options().dtype() != opts.dtype() || z_[0].device() != x.device()) {
    z_.assign(depth, {});
    h_.assign(depth + 1, {});
    for (int64_t l = 0; l < depth; ++l) {
      z_[l] = torch::empty({n, o.hidden()}, opts);
      h_[l + 1] = torch::empty({n, o.hidden()}, opts);
    }
    emb_ = torch::empty({n, o.hidden()}, opts);
    dh_ = torch::empty({n, o.hidden()}, opts);
    out_ = torch::empty({n, o.input_dim()}, opts);
    ones_ = torch::ones({n}, opts);
  }
  torch::NoGradGuard no_grad;
  h_[0] = x;

  // Forward, keeping h_l for the backward pass.
  for (int64_t l = 0; l < depth; ++l) {
    auto lin = net_->layers[l]->as<torch::nn::Linear>();
    auto table = net_->embeddings[l]->as<TimeEmbedding>()->table->weight;
    at::index_select_out(emb_, table, 0, t);
    at::addmm_out(z_[l], lin->bias, h_[l], lin->weight.t());
    z_[l].add_(emb_);
    at::relu_out(h_[l + 1], z_[l]);
  }
  at::addmm_out(out_, net_->out->bias, h_[depth], net_->out->weight.t());

  // Loss and its gradient with respect to the output (out_ becomes g).
  out_.sub_(target);
  torch::Tensor loss = out_.square().mean();
  out_.mul_(2.0 / static_cast<double>(out_.numel()));

  // Backward.
  grad_of(net_->out->weight).addmm_(out_.t(), h_[depth]);
  grad_of(net_->out->bias).addmv_(out_.t(), ones_);
  at::mm_out(dh_, out_, net_->out->weight);
  for (int64_t l = depth - 1; l >= 0; --l) {
    auto lin = net_->layers[l]->as<torch::nn::Linear>();
    auto& table = net_->embeddings[l]->as<TimeEmbedding>()->table->weight;
    torch::Tensor& dz = z_[l];  // reuse: z_l is not needed any more
    at::threshold_backward_out(dz, dh_, h_[l + 1], 0);
    grad_of(lin->weight).addmm_(dz.t(), h_[l]);
    grad_of(lin->bias).addmv_(dz.t(), ones_);
    grad_of(table).index_add_(0, t, dz);
    if (l > 0) {
      at::mm_out(dh_, dz, lin->weight);
    }
  }
  return loss;
}

}  // namespace sbgm
