#pragma once

/// \file
/// A time-conditional U-Net for images (Ronneberger et al. 2015, in the form
/// used by Ho et al., "Denoising Diffusion Probabilistic Models", 2020, and
/// Song et al., ICLR 2021): residual blocks with GroupNorm and SiLU, the time
/// embedding added inside every block, self-attention at chosen levels, and
/// skip connections between the matching levels of the two paths.
///
/// Level i works at spatial size ceil(H / 2^i) x ceil(W / 2^i): downsampling
/// is a 3x3 convolution with stride 2 and padding 1, and upsampling a 3x3
/// transposed convolution with stride 2, padding 1 and an output padding of
/// 0 or 1 picked per call so that the result has exactly the size of the
/// matching skip tensor (2 h - 1 + p = s): odd sizes such as
/// 28 -> 14 -> 7 -> 4 -> 7 -> 14 -> 28 or 13 -> 7 -> 4 -> 7 -> 13 round-trip.
/// The transposed convolution also maps the channels of level i + 1 to those
/// of level i, so the up path works at the narrower width.
///
/// The default (channels {16, 32, 64}, about 0.5M parameters) is sized for
/// MNIST on a CPU; the score-SDE tutorial's setting is Fourier time features
/// with `marginal_std` set to the VE SDE's sigma_t.

#include <sbgm/nets/embedding.h>
#include <sbgm/network.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include <functional>
#include <vector>

namespace sbgm {

/// Marginal standard deviation sigma(t) of the noise process, for the score
/// parameterization (e.g. `[&process](const torch::Tensor& t) { return
/// process.sigma(t); }`). Takes t as given to forward and returns one value per
/// sample (shape [N]) or a 0-dim tensor.
using MarginalStdFn = std::function<torch::Tensor(const torch::Tensor& t)>;

/// Options of UNet.
///
/// Example:
/// ```
/// sbgm::UNet net(sbgm::UNetOptions(/*in_channels=*/1)
///                    .channels({32, 64, 128})
///                    .attention_levels({2})
///                    .marginal_std([&](const torch::Tensor& t) {
///                      return sde.std(t);
///                    }));
/// auto score = net(x, t);  // x: [N, 1, 28, 28], t: [N]
/// ```
struct UNetOptions {
  /// in_channels: channels of the images (and of the output).
  explicit UNetOptions(int64_t in_channels) : in_channels_(in_channels) {}

  /// Channels of the images, in and out.
  TORCH_ARG(int64_t, in_channels);
  /// Feature channels at each level (one level per entry; level i works at
  /// 1/2^i of the input size). Each must be divisible by `groups`.
  /// Default: {16, 32, 64} (one training step at batch 32 on 28x28 takes
  /// about 0.2 s on one CPU core; {32, 64, 128} is about 3x slower).
  TORCH_ARG(std::vector<int64_t>, channels) = std::vector<int64_t>{16, 32, 64};
  /// Residual blocks per level on each path. Default: 1.
  TORCH_ARG(int64_t, num_res_blocks) = 1;
  /// Groups of every GroupNorm. Default: 8.
  TORCH_ARG(int64_t, groups) = 8;
  /// Levels (indices into `channels`) whose residual blocks are followed by
  /// single-head self-attention; for 28x28 input, level 2 is the 7x7 one.
  /// The middle block always has attention when `mid_attention` is set.
  /// Default: {} (none).
  TORCH_ARG(std::vector<int64_t>, attention_levels) = std::vector<int64_t>{};
  /// Self-attention between the two residual blocks at the bottom.
  /// Default: true.
  TORCH_ARG(bool, mid_attention) = true;
  /// Dropout probability inside the residual blocks. Default: 0.
  TORCH_ARG(double, dropout) = 0.0;
  /// How t is embedded (see nets/embedding.h). Learned takes int64 step
  /// indices; Sinusoidal and Fourier take floating t. Default: Fourier.
  TORCH_ARG(TimeEmbeddingKind, time_embedding) = TimeEmbeddingKind::Fourier;
  /// Width of the time embedding. Default: 128.
  TORCH_ARG(int64_t, time_dim) = 128;
  /// Number of steps T of a learned embedding. Default: 1000.
  TORCH_ARG(int64_t, num_timesteps) = 1000;
  /// Scale of the random Fourier features. Default: 16.
  TORCH_ARG(double, fourier_scale) = 16.0;
  /// Factor applied to t before Sinusoidal / Fourier features (about 1000
  /// for Sinusoidal with continuous t in [0, 1]). Default: 1.
  TORCH_ARG(double, time_scale) = 1.0;
  /// If set, the output is divided by marginal_std(t): the network then
  /// outputs (an estimate of) -eps / s(t), the score, as in Song et al.'s
  /// MNIST tutorial. Default: unset.
  TORCH_ARG(MarginalStdFn, marginal_std) = nullptr;
  /// Classes of a class-conditional net (0: unconditional): a learned row
  /// per class, and one for the null class `num_classes` (no condition), is
  /// added to the time embedding. Default: 0.
  TORCH_ARG(int64_t, num_classes) = 0;
  /// In training mode, the share of labels replaced by the null class (the
  /// condition dropout of classifier-free guidance). Default: 0.1.
  TORCH_ARG(double, class_dropout) = 0.1;
  /// The class embedding enters only the up path's blocks; the down path
  /// and the middle see the time alone. forward_conditions (and so
  /// classifier-free guidance) then runs them once for all conditions: a
  /// guided call costs the down path and middle once and the up path twice,
  /// instead of the whole net twice. Default: false (every block).
  TORCH_ARG(bool, class_up_path_only) = false;
};

/// Residual block: GN-SiLU-conv, + Linear(time embedding), GN-SiLU-dropout-
/// conv, plus a 1x1 convolution on the skip when the channel count changes.
class UNetResBlockImpl : public torch::nn::Module {
 public:
  UNetResBlockImpl(
      int64_t in_channels,
      int64_t out_channels,
      int64_t time_dim,
      int64_t groups,
      double dropout);
  /// x: [N, in, H, W], emb: [N, time_dim] -> [N, out, H, W].
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& emb);
  /// The block for K conditions whose input is cat(varying, shared) along
  /// the channels: `varying` [K N, cv, H, W] (undefined: cv = 0) differs
  /// between the conditions, `shared` [N, in - cv, H, W] is the same for
  /// all, emb is [K N, time_dim]. Equals forward(cat(varying, shared
  /// repeated K times), emb); the shared channels' part of the first
  /// convolution and of the skip runs once, at N rows. Needs
  /// splits_at(cv).
  torch::Tensor forward_shared(
      const torch::Tensor& varying,
      const torch::Tensor& shared,
      const torch::Tensor& emb,
      int64_t k);
  /// Whether no GroupNorm group of the input straddles channel cv (so
  /// forward_shared can normalize the two parts apart).
  bool splits_at(int64_t cv) const;

 private:
  torch::nn::GroupNorm norm1_{nullptr}, norm2_{nullptr};
  torch::nn::Conv2d conv1_{nullptr}, conv2_{nullptr}, skip_{nullptr};
  torch::nn::Linear time_proj_{nullptr};
  torch::nn::Dropout dropout_{nullptr};
};
TORCH_MODULE(UNetResBlock);

/// Single-head self-attention over the H*W positions (Vaswani et al. 2017):
/// x + proj(softmax(q^T k / sqrt(C)) v) with q, k, v 1x1 convolutions of
/// GroupNorm(x).
class UNetAttentionImpl : public torch::nn::Module {
 public:
  UNetAttentionImpl(int64_t channels, int64_t groups);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  torch::nn::GroupNorm norm_{nullptr};
  torch::nn::Conv2d qkv_{nullptr}, proj_{nullptr};
};
TORCH_MODULE(UNetAttention);

/// The time-conditional U-Net. forward(x, t) returns a tensor of x's shape.
class UNetImpl : public torch::nn::Module {
 public:
  explicit UNetImpl(const UNetOptions& options);

  /// Checks the options and registers the submodules (called once by the
  /// constructor).
  void reset();

  /// x: [N, in_channels, H, W] floating (contiguous or channels-last), any
  /// H, W >= 1. t: [N] or 0-dim (shared by all samples), int64 step indices
  /// for a learned embedding, floating otherwise (integer t is accepted by
  /// the other kinds too and converted to x's dtype). Returns [N,
  /// in_channels, H, W], divided by marginal_std(t) when that is set.
  /// cond (num_classes > 0 only): int64 class indices [N] in [0,
  /// num_classes] (num_classes: the null class), or undefined (all null).
  torch::Tensor forward(
      const torch::Tensor& x,
      const torch::Tensor& t,
      const torch::Tensor& cond = {});
  /// The net at each of K conditions (each [N] as for forward) for the same
  /// x and t, in one call: K outputs of x's shape, equal to forward(x, t,
  /// conds[k]). With class_up_path_only the down path and the middle run
  /// once, at N rows, and the up path once at K N rows; otherwise one
  /// forward over K copies of x.
  std::vector<torch::Tensor> forward_conditions(
      const torch::Tensor& x,
      const torch::Tensor& t,
      const std::vector<torch::Tensor>& conds);
  /// num_timesteps for a Learned time embedding, else 0 (see
  /// MLPImpl::discrete_steps).
  int64_t discrete_steps() const;
  /// Whether forward embeds a class (num_classes > 0); sbgm::Model reads it.
  bool conditional() const {
    return options.num_classes() > 0;
  }

  UNetOptions options;

 private:
  struct Level {
    std::vector<UNetResBlock> blocks;
    std::vector<UNetAttention> attn;  // empty or one per block
  };
  // Checks x and t; returns t with one entry per sample, in the embedding's
  // dtype.
  torch::Tensor checked_time(const torch::Tensor& x, const torch::Tensor& t);
  // The time embedding [N, time_dim].
  torch::Tensor time_embedding(const torch::Tensor& tt);
  // The class embedding of cond for a batch like x.
  torch::Tensor class_embedding(
      const torch::Tensor& cond, const torch::Tensor& x);
  // conv_in, the down path and the middle: returns the middle's output and
  // fills the skip tensors.
  torch::Tensor down(
      const torch::Tensor& x,
      const torch::Tensor& emb,
      std::vector<torch::Tensor>& skips);
  // The up path and the output head.
  torch::Tensor up(
      torch::Tensor h,
      const std::vector<torch::Tensor>& skips,
      const torch::Tensor& emb);
  // The same for K conditions after a shared down path: h and skips at N
  // rows, emb at K N; the first block's input is shared, and later levels'
  // skip channels are shared (UNetResBlockImpl::forward_shared).
  torch::Tensor up_shared(
      const torch::Tensor& h,
      const std::vector<torch::Tensor>& skips,
      const torch::Tensor& emb,
      int64_t k);
  // Level k's transposed convolution of h to the size of skip.
  torch::Tensor upsample(
      size_t k, const torch::Tensor& h, const torch::Tensor& skip) const;
  // out divided by marginal_std(t) when that is set.
  torch::Tensor scaled(const torch::Tensor& out, const torch::Tensor& t);
  TimeEmbedding embed_{nullptr};
  torch::nn::Linear time_fc1_{nullptr}, time_fc2_{nullptr};
  torch::nn::Embedding class_embed_{nullptr};
  torch::nn::Conv2d conv_in_{nullptr}, conv_out_{nullptr};
  torch::nn::GroupNorm norm_out_{nullptr};
  std::vector<Level> down_, up_;  // up_[i] is level i of the up path
  std::vector<torch::nn::Conv2d> downsample_;
  std::vector<torch::nn::ConvTranspose2d> upsample_;
  UNetResBlock mid1_{nullptr}, mid2_{nullptr};
  UNetAttention mid_attn_{nullptr};
};
TORCH_MODULE(UNet);

/// The options as a config, {"name": "unet", "in_channels": ..., ...};
/// a set marginal_std is stored as "divide_by_sigma": true (the process's
/// sigma(t), the only one a config can name).
Config to_config(const UNetOptions& options);
/// Options from to_config's config, without marginal_std (see
/// Network::bind_process); missing options take their defaults
/// ("in_channels" is required).
UNetOptions unet_options_from_config(const Config& config);
/// The UNet as a registered network ("unet"); its samples have shape
/// [in_channels, H, W], which must be given.
Network to_network(const UNet& net);

}  // namespace sbgm
