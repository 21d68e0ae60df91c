#include "sbgm/nets/embedding.h"

#include <cmath>

#include "internal.h"

namespace sbgm {

std::string to_string(TimeEmbeddingKind kind) {
  switch (kind) {
    case TimeEmbeddingKind::Learned:
      return "learned";
    case TimeEmbeddingKind::Sinusoidal:
      return "sinusoidal";
    case TimeEmbeddingKind::Fourier:
      return "fourier";
  }
  return "unknown";
}

TimeEmbeddingKind time_embedding_kind_from_string(const std::string& name) {
  for (auto k :
       {TimeEmbeddingKind::Learned,
        TimeEmbeddingKind::Sinusoidal,
        TimeEmbeddingKind::Fourier}) {
    if (to_string(k) == name) {
      return k;
    }
  }
  TORCH_CHECK(
      false,
      "unknown time embedding '",
      name,
      "' (expected learned, sinusoidal or fourier)");
}

TimeEmbeddingOptions::TimeEmbeddingOptions(TimeEmbeddingKind kind, int64_t dim)
    : kind_(kind), dim_(dim) {}

TimeEmbeddingImpl::TimeEmbeddingImpl(const TimeEmbeddingOptions& options_)
    : options(options_) {
  reset();
}

void TimeEmbeddingImpl::reset() {
  const auto& o = options;
  TORCH_CHECK(o.dim() > 0, "TimeEmbedding: dim must be > 0, got ", o.dim());
  switch (o.kind()) {
    case TimeEmbeddingKind::Learned:
      TORCH_CHECK(
          o.num_timesteps() > 0,
          "TimeEmbedding: a learned embedding needs num_timesteps > 0, got ",
          o.num_timesteps());
      table = register_module(
          "table",
          torch::nn::Embedding(
              torch::nn::EmbeddingOptions(o.num_timesteps(), o.dim())));
      break;
    case TimeEmbeddingKind::Sinusoidal:
    case TimeEmbeddingKind::Fourier:
      TORCH_CHECK(
          o.dim() % 2 == 0,
          "TimeEmbedding: a ",
          to_string(o.kind()),
          " embedding needs an even dim, got ",
          o.dim());
      TORCH_CHECK(
          std::isfinite(o.time_scale()) && o.time_scale() > 0,
          "TimeEmbedding: time_scale must be > 0, got ",
          o.time_scale());
      if (o.kind() == TimeEmbeddingKind::Fourier) {
        TORCH_CHECK(
            std::isfinite(o.fourier_scale()) && o.fourier_scale() > 0,
            "TimeEmbedding: fourier_scale must be > 0, got ",
            o.fourier_scale());
        W = register_buffer(
            "W", torch::randn({o.dim() / 2}) * o.fourier_scale());
      } else {
        TORCH_CHECK(
            std::isfinite(o.max_period()) && o.max_period() > 1,
            "TimeEmbedding: max_period must be > 1, got ",
            o.max_period());
      }
      break;
  }
}

torch::Tensor TimeEmbeddingImpl::forward(const torch::Tensor& t_in) {
  TORCH_CHECK(t_in.defined(), "TimeEmbedding: t is an undefined tensor");
  TORCH_CHECK(
      t_in.dim() <= 1,
      "TimeEmbedding: t must be 0-dim or of shape [N], got shape ",
      detail::shape_str(t_in));
  auto t = t_in.reshape({-1});
  const auto& o = options;
  const bool integer = !t.is_floating_point() && !t.is_complex() &&
                       t.scalar_type() != torch::kBool;
  if (o.kind() == TimeEmbeddingKind::Learned) {
    TORCH_CHECK(
        integer,
        "TimeEmbedding: a learned embedding needs integer step indices, got "
        "dtype ",
        t.scalar_type());
    detail::check_step_range(t, o.num_timesteps(), "TimeEmbedding");
    detail::check_same_device(
        t, "t", table->weight, "the embedding table", "TimeEmbedding");
    return table->forward(t.to(torch::kLong));
  }
  TORCH_CHECK(
      integer || t.is_floating_point(),
      "TimeEmbedding: t must be an integer or floating tensor, got dtype ",
      t.scalar_type());
  const int64_t half = o.dim() / 2;
  if (o.kind() == TimeEmbeddingKind::Sinusoidal) {
    auto dtype = integer
                     ? torch::typeMetaToScalarType(torch::get_default_dtype())
                     : t.scalar_type();
    auto tf = t.to(dtype) * o.time_scale();
    auto freqs = torch::exp(
        torch::arange(half, tf.options()) *
        (-std::log(o.max_period()) / static_cast<double>(half)));
    auto args = tf.unsqueeze(1) * freqs.unsqueeze(0);
    return torch::cat({torch::sin(args), torch::cos(args)}, 1);
  }
  detail::check_same_device(
      t, "t", W, "the Fourier frequencies W", "TimeEmbedding");
  auto tf = t.to(W.scalar_type()) * o.time_scale();
  auto args = tf.unsqueeze(1) * (W * (2.0 * M_PI)).unsqueeze(0);
  return torch::cat({torch::sin(args), torch::cos(args)}, 1);
}

}  // namespace sbgm
