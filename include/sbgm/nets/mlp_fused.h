#pragma once

/// \file
/// A fast training step for the 2-D MLP: the eps-prediction loss and its
/// gradients computed by hand, without an autograd graph.
///
/// For small networks (the swiss-roll example's MLP does about 6.5 MFLOP per
/// training step at batch 128), a LibTorch step is dominated by per-operator
/// overhead: the autograd graph, ~40 small kernels forward and backward, and
/// a temporary for each. This class computes the same loss and gradients as
///   loss = mean((net(x, t) - target)^2);  loss.backward();
/// for an MLP with a Learned time embedding and ReLU, with about 35 kernels
/// writing into buffers kept between steps:
///   z_l = h_{l-1} W_l^T + b_l + E_l[t],  h_l = relu(z_l)   (l = 1..depth)
///   out = h_L W_o^T + b_o,  r = out - target,  g = 2 r / numel(r)
///   dW_o += g^T h_L,  db_o += g^T 1,  dh_L = g W_o
///   dz_l = dh_l * [h_l > 0],  dW_l += dz_l^T h_{l-1},  db_l += dz_l^T 1,
///   dE_l[t] += dz_l (index_add),  dh_{l-1} = dz_l W_l.
/// Gradients accumulate into each parameter's grad() as backward() would
/// (allocated as zeros when undefined), so any optimizer, and FlatAdam's
/// views into one flat buffer, work unchanged.
///
/// On CPU, for contiguous float32/float64 inputs and parameters, the step
/// skips ATen's operators altogether: it calls the BLAS that LibTorch links
/// (sgemm_/dgemm_, looked up at run time) for the seven matrix products and
/// does the elementwise work (bias, embedding rows, ReLU, loss, masks, bias
/// and embedding gradients) in one vectorized loop per layer. Elsewhere
/// (CUDA, other layouts, or a LibTorch without those symbols) it runs the
/// tensor version of the same equations.

#include <torch/types.h>

#include <vector>

#include "sbgm/nets/mlp.h"

namespace sbgm {

/// Hand-derived eps-loss and backward for an MLP (Learned embedding, ReLU).
///
/// Example:
/// ```
/// sbgm::FusedMLPStep step(net);
/// optimizer.zero_grad();
/// torch::Tensor loss = step(xt, t, noise);  // grads now in net's params
/// optimizer.step();
/// ```
class FusedMLPStep {
 public:
  /// Checks that `net` has a Learned embedding and ReLU activation (the
  /// only kind this path derives by hand).
  explicit FusedMLPStep(MLP net);

  /// Returns mean((net(x, t) - target)^2) as a 0-dim tensor (no host sync)
  /// and adds its gradient to every parameter's grad(). x, target:
  /// [N, input_dim] of the net's dtype and device; t: int64 [N] in [0, T).
  torch::Tensor operator()(
      const torch::Tensor& x,
      const torch::Tensor& t,
      const torch::Tensor& target);

  /// True when `net` is of the kind this path handles.
  static bool supports(const MLP& net);

 private:
  /// The CPU path (float/double, contiguous): BLAS called directly and the
  /// elementwise work fused per layer. False when it does not apply.
  bool raw_path(
      const torch::Tensor& x,
      const torch::Tensor& t,
      const torch::Tensor& target,
      torch::Tensor& loss);

  MLP net_;
  std::vector<torch::Tensor> z_;  // pre-activations, then dz in place
  std::vector<torch::Tensor> h_;  // h_0 = x (not owned), h_1..h_L
  torch::Tensor emb_, out_, dh_;
  torch::Tensor ones_;  // [N]: bias gradients as one matrix-vector product
};

}  // namespace sbgm
