#pragma once

/// \file
/// Time embeddings: map a timestep (an int64 step index or a float time) to
/// a feature vector that a network adds to its hidden activations.

#include <torch/nn/cloneable.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include <cstdint>
#include <string>

namespace sbgm {

/// How a time embedding turns t into features.
enum class TimeEmbeddingKind {
  /// A learned table with one row per discrete step (torch::nn::Embedding).
  /// Needs int64 step indices in [0, num_timesteps).
  Learned,
  /// Fixed transformer-style features (Vaswani et al. 2017; Ho et al. 2020):
  /// [sin(t' f_0), ..., sin(t' f_{h-1}), cos(t' f_0), ..., cos(t' f_{h-1})],
  /// h = dim / 2, f_i = max_period^(-i / h), t' = time_scale * t.
  Sinusoidal,
  /// Gaussian Fourier features (Tancik et al. 2020; the score-SDE tutorial):
  /// [sin(2 pi W t'), cos(2 pi W t')] with a fixed W ~ N(0, fourier_scale^2)
  /// of size dim / 2 drawn at construction and stored as a buffer (saved
  /// with the module, not trained), t' = time_scale * t.
  Fourier,
};

/// Name of an embedding kind ("learned", "sinusoidal", "fourier").
std::string to_string(TimeEmbeddingKind kind);
/// Parses "learned", "sinusoidal" or "fourier"; throws on anything else.
TimeEmbeddingKind time_embedding_kind_from_string(const std::string& name);

/// Options of TimeEmbedding.
///
/// Example:
/// `TimeEmbedding emb(TimeEmbeddingOptions(TimeEmbeddingKind::Learned, 64)
///                        .num_timesteps(150));`
struct TimeEmbeddingOptions {
  TimeEmbeddingOptions(TimeEmbeddingKind kind, int64_t dim);
  /// Which embedding.
  TORCH_ARG(TimeEmbeddingKind, kind);
  /// Output features per sample (even for Sinusoidal and Fourier).
  TORCH_ARG(int64_t, dim);
  /// Number of discrete steps T (rows of the Learned table). Required (> 0)
  /// for Learned, ignored otherwise. Default: 0.
  TORCH_ARG(int64_t, num_timesteps) = 0;
  /// Standard deviation of the random Fourier frequencies W. Default: 16.
  TORCH_ARG(double, fourier_scale) = 16.0;
  /// Longest period of the sinusoidal features. Default: 10000.
  TORCH_ARG(double, max_period) = 10000.0;
  /// Factor applied to t before the Sinusoidal / Fourier features: 1 for
  /// step indices, about 1000 for continuous t in [0, 1] with Sinusoidal.
  /// Default: 1.
  TORCH_ARG(double, time_scale) = 1.0;
};

/// Maps t of shape [N] (or 0-dim, treated as [1]) to features [N, dim].
///
/// Learned takes integer t only (checked; values checked against [0, T) when
/// t is on the CPU, where that needs no device sync). Sinusoidal and Fourier
/// take floating t; an integer t is cast to float. The result is in the
/// dtype of the module's tensors (Learned, Fourier) or of t (Sinusoidal;
/// the default dtype for integer t).
class TimeEmbeddingImpl : public torch::nn::Cloneable<TimeEmbeddingImpl> {
 public:
  explicit TimeEmbeddingImpl(const TimeEmbeddingOptions& options);
  TimeEmbeddingImpl(TimeEmbeddingKind kind, int64_t dim)
      : TimeEmbeddingImpl(TimeEmbeddingOptions(kind, dim)) {}

  /// Registers the table (Learned) or the frequencies W (Fourier).
  void reset() override;
  torch::Tensor forward(const torch::Tensor& t);

  /// Output features per sample.
  int64_t dim() const {
    return options.dim();
  }

  TimeEmbeddingOptions options;
  /// The learned table (Learned only).
  torch::nn::Embedding table{nullptr};
  /// Fixed Fourier frequencies of shape [dim / 2] (Fourier only; a buffer).
  torch::Tensor W;
};
TORCH_MODULE(TimeEmbedding);

}  // namespace sbgm
