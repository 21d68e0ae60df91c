#pragma once

/// \file
/// A time-conditioned multilayer perceptron for low-dimensional data (the
/// 2-D toy sets): predicts eps or the score of x_t at time t.

#include <torch/nn/cloneable.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include <cstdint>
#include <string>

#include "sbgm/nets/embedding.h"
#include "sbgm/network.h"

namespace sbgm {

/// Nonlinearity between the layers of a network.
enum class Activation { ReLU, SiLU, GELU, Softplus, Tanh };

/// Name of an activation ("relu", "silu", "gelu", "softplus", "tanh").
std::string to_string(Activation a);
/// Parses a name given by to_string; throws on anything else.
Activation activation_from_string(const std::string& name);
/// Applies the activation.
torch::Tensor apply_activation(Activation a, const torch::Tensor& x);

/// Options of MLP.
///
/// The network is `depth` hidden layers of width `hidden`, each followed by
/// an additive time embedding and the activation, then a linear read-out:
///   h_0 = x,
///   h_l = act(W_l h_{l-1} + b_l + e_l(t)),   l = 1..depth,
///   out = W_out h_depth + b_out.
/// With a Learned embedding, e_l is a table of its own for every layer
/// (T x hidden), initialized to zero (so every step starts from the same
/// function). With Sinusoidal or Fourier, one fixed embedding E(t) of
/// size `embedding_dim` is shared and e_l(t) = P_l E(t) + c_l with a learned
/// linear map P_l per layer.
///
/// The swiss-roll example's network is the default with num_timesteps(150):
/// `MLP net(MLPOptions(2).num_timesteps(150));` (64 units, 3 layers, one
/// learned per-step embedding added after each layer).
struct MLPOptions {
  explicit MLPOptions(int64_t input_dim);
  /// Features of x (and of the output).
  TORCH_ARG(int64_t, input_dim);
  /// Width of the hidden layers. Default: 64.
  TORCH_ARG(int64_t, hidden) = 64;
  /// Number of hidden layers (each with its time embedding). Default: 3.
  TORCH_ARG(int64_t, depth) = 3;
  /// Time embedding. Learned needs num_timesteps and int64 t. Default:
  /// Learned.
  TORCH_ARG(TimeEmbeddingKind, embedding) = TimeEmbeddingKind::Learned;
  /// Size of the shared Sinusoidal / Fourier features; 0 means `hidden`.
  /// Ignored for Learned. Default: 0.
  TORCH_ARG(int64_t, embedding_dim) = 0;
  /// Number of discrete steps T (Learned only). Default: 0 (must be set for
  /// Learned).
  TORCH_ARG(int64_t, num_timesteps) = 0;
  /// Standard deviation of the Fourier frequencies. Default: 16.
  TORCH_ARG(double, fourier_scale) = 16.0;
  /// Factor applied to t before Sinusoidal / Fourier features. Default: 1.
  TORCH_ARG(double, time_scale) = 1.0;
  /// Nonlinearity after each hidden layer. Default: ReLU.
  TORCH_ARG(Activation, activation) = Activation::ReLU;
  /// Classes of a class-conditional net (0: unconditional). Each layer adds
  /// a learned row per class, and one for the null class `num_classes`
  /// (no condition), to its time embedding. Default: 0.
  TORCH_ARG(int64_t, num_classes) = 0;
  /// In training mode, the share of labels replaced by the null class (the
  /// condition dropout of classifier-free guidance). Default: 0.1.
  TORCH_ARG(double, class_dropout) = 0.1;
};

/// Time-conditioned MLP: forward(x [N, input_dim], t [N] or 0-dim) ->
/// [N, input_dim]. t is int64 step indices for a Learned embedding and
/// floating (or integer, cast) time for Sinusoidal / Fourier.
class MLPImpl : public torch::nn::Cloneable<MLPImpl> {
 public:
  explicit MLPImpl(const MLPOptions& options);

  void reset() override;
  /// `cond`: int64 class indices [N] in [0, num_classes] (num_classes: the
  /// null class), or undefined (all null); only for num_classes > 0.
  torch::Tensor forward(
      const torch::Tensor& x,
      const torch::Tensor& t,
      const torch::Tensor& cond = {});
  /// The number of integer steps t must index (num_timesteps for a
  /// Learned embedding), 0 for the fixed embeddings, which take any t.
  /// sbgm::Model reads it, so samplers refuse continuous processes.
  int64_t discrete_steps() const;
  /// Whether forward embeds a class (num_classes > 0); sbgm::Model reads it.
  bool conditional() const {
    return options.num_classes() > 0;
  }

  MLPOptions options;
  /// Hidden layers W_l, b_l.
  torch::nn::ModuleList layers{nullptr};
  /// Per-layer embeddings: TimeEmbedding (Learned) or Linear P_l (others).
  torch::nn::ModuleList embeddings{nullptr};
  /// The shared fixed embedding (Sinusoidal / Fourier only).
  TimeEmbedding time_embedding{nullptr};
  /// Read-out layer.
  torch::nn::Linear out{nullptr};
  /// Per-layer class embeddings [num_classes + 1, hidden] (conditional
  /// nets only; the last row is the null class).
  torch::nn::ModuleList class_embeddings{nullptr};
};
TORCH_MODULE(MLP);

/// The options as a config, {"name": "mlp", "input_dim": ..., ...}.
Config to_config(const MLPOptions& options);
/// Options from to_config's config; missing options take their defaults
/// ("input_dim" is required).
MLPOptions mlp_options_from_config(const Config& config);
/// The MLP as a registered network ("mlp"): saved, loaded and sampled by
/// name. Its samples have shape [input_dim].
Network to_network(const MLP& net);

}  // namespace sbgm
