#include "sbgm/nets/mlp.h"

#include <torch/nn/functional/activation.h>

#include <nlohmann/json.hpp>

#include "internal.h"

namespace sbgm {

std::string to_string(Activation a) {
  switch (a) {
    case Activation::ReLU:
      return "relu";
    case Activation::SiLU:
      return "silu";
    case Activation::GELU:
      return "gelu";
    case Activation::Softplus:
      return "softplus";
    case Activation::Tanh:
      return "tanh";
  }
  return "unknown";
}

Activation activation_from_string(const std::string& name) {
  for (auto a :
       {Activation::ReLU,
        Activation::SiLU,
        Activation::GELU,
        Activation::Softplus,
        Activation::Tanh}) {
    if (to_string(a) == name) {
      return a;
    }
  }
  TORCH_CHECK(
      false,
      "unknown activation '",
      name,
      "' (expected relu, silu, gelu, softplus or tanh)");
}

torch::Tensor apply_activation(Activation a, const torch::Tensor& x) {
  switch (a) {
    case Activation::ReLU:
      return torch::relu(x);
    case Activation::SiLU:
      return torch::silu(x);
    case Activation::GELU:
      return torch::gelu(x);
    case Activation::Softplus:
      return torch::softplus(x);
    case Activation::Tanh:
      return torch::tanh(x);
  }
  return x;
}

MLPOptions::MLPOptions(int64_t input_dim) : input_dim_(input_dim) {}

MLPImpl::MLPImpl(const MLPOptions& options_) : options(options_) {
  reset();
}

void MLPImpl::reset() {
  const auto& o = options;
  TORCH_CHECK(
      o.input_dim() > 0, "MLP: input_dim must be > 0, got ", o.input_dim());
  TORCH_CHECK(o.hidden() > 0, "MLP: hidden must be > 0, got ", o.hidden());
  TORCH_CHECK(o.depth() > 0, "MLP: depth must be > 0, got ", o.depth());
  TORCH_CHECK(
      o.embedding_dim() >= 0,
      "MLP: embedding_dim must be >= 0, got ",
      o.embedding_dim());
  const bool learned = o.embedding() == TimeEmbeddingKind::Learned;
  TORCH_CHECK(
      !learned || o.num_timesteps() > 0,
      "MLP: a learned time embedding needs num_timesteps > 0, got ",
      o.num_timesteps());
  layers = torch::nn::ModuleList();
  embeddings = torch::nn::ModuleList();
  time_embedding = nullptr;
  const int64_t edim = o.embedding_dim() > 0 ? o.embedding_dim() : o.hidden();
  if (!learned) {
    time_embedding = TimeEmbedding(TimeEmbeddingOptions(o.embedding(), edim)
                                       .fourier_scale(o.fourier_scale())
                                       .time_scale(o.time_scale()));
  }
  for (int64_t l = 0; l < o.depth(); ++l) {
    layers->push_back(
        torch::nn::Linear(l == 0 ? o.input_dim() : o.hidden(), o.hidden()));
    if (learned) {
      embeddings->push_back(TimeEmbedding(
          TimeEmbeddingOptions(TimeEmbeddingKind::Learned, o.hidden())
              .num_timesteps(o.num_timesteps())));
    } else {
      embeddings->push_back(torch::nn::Linear(edim, o.hidden()));
    }
  }
  out = torch::nn::Linear(o.hidden(), o.input_dim());
  if (learned) {
    // The per-step rows start at zero: drawn N(0, 1) as nn::Embedding does,
    // every step would begin with its own random bias of size 1 in every
    // layer (larger than the first layer's signal), an unrelated random
    // function per step that training has to undo step by step; the 2-D
    // demos then missed the thin sets (circles, moons) at low noise.
    torch::NoGradGuard no_grad;
    for (const auto& e : *embeddings) {
      e->as<TimeEmbedding>()->table->weight.zero_();
    }
  }
  register_module("layers", layers);
  register_module("embeddings", embeddings);
  if (time_embedding) {
    register_module("time_embedding", time_embedding);
  }
  register_module("out", out);
  TORCH_CHECK(
      o.num_classes() >= 0,
      "MLP: num_classes must be >= 0, got ",
      o.num_classes());
  TORCH_CHECK(
      o.class_dropout() >= 0 && o.class_dropout() <= 1,
      "MLP: class_dropout must lie in [0, 1], got ",
      o.class_dropout());
  class_embeddings = nullptr;
  if (o.num_classes() > 0) {
    class_embeddings = torch::nn::ModuleList();
    torch::NoGradGuard no_grad;
    for (int64_t l = 0; l < o.depth(); ++l) {
      // Zero rows, as for the learned steps: the net starts unconditional.
      torch::nn::Embedding e(o.num_classes() + 1, o.hidden());
      e->weight.zero_();
      class_embeddings->push_back(e);
    }
    register_module("class_embeddings", class_embeddings);
  }
}

int64_t MLPImpl::discrete_steps() const {
  return options.embedding() == TimeEmbeddingKind::Learned
             ? options.num_timesteps()
             : 0;
}

torch::Tensor MLPImpl::forward(
    const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& cond) {
  const auto& o = options;
  detail::check_floating(x, "x", "MLP");
  TORCH_CHECK(
      x.dim() == 2 && x.size(1) == o.input_dim(),
      "MLP: x must have shape [N, ",
      o.input_dim(),
      "], got ",
      detail::shape_str(x));
  const bool learned = o.embedding() == TimeEmbeddingKind::Learned;
  TORCH_CHECK(t.defined(), "MLP: t is an undefined tensor");
  // Learned needs step indices; the fixed embeddings also take integer t.
  detail::check_time_tensor(
      t, x, /*integer=*/learned || !t.is_floating_point(), "MLP");
  // One time shared by the batch (a 0-dim t, or an expanded one with
  // stride 0, as the samplers pass it): embed it once and fold it into each
  // layer's bias, h_l = act(h W^T + (b + e(t))), instead of gathering N
  // copies of the embedding rows.
  const bool shared_t = t.dim() == 0 || (x.size(0) > 0 && t.stride(0) == 0);
  auto tt = shared_t ? t.reshape({-1}).slice(0, 0, 1) : t;
  // The other learned tables are looked up directly with int64 indices.
  const auto tl = learned ? tt.to(torch::kLong) : tt;
  torch::Tensor shared;
  if (!learned) {
    shared = time_embedding->forward(tt).to(x.scalar_type());
  }
  // Class labels, with the null class for a missing condition and, in
  // training, for a class_dropout share of them.
  torch::Tensor labels;
  if (o.num_classes() > 0) {
    labels = detail::class_labels(
        cond, x, o.num_classes(), is_training() ? o.class_dropout() : 0, "MLP");
  } else {
    TORCH_CHECK(
        !cond.defined(),
        "MLP: a condition was given to a net built with num_classes = 0");
  }
  auto h = x;
  for (size_t l = 0; l < layers->size(); ++l) {
    auto lin = layers[l]->as<torch::nn::Linear>();
    // Learned: the first table's forward checks the step indices (a host
    // read on the CPU); the others share T, so they are looked up directly.
    torch::Tensor e =
        !learned ? embeddings[l]->as<torch::nn::Linear>()->forward(shared)
        : l == 0 ? embeddings[l]->as<TimeEmbedding>()->forward(tt)
                 : embeddings[l]->as<TimeEmbedding>()->table->forward(tl);
    if (shared_t) {
      h = torch::addmm(lin->bias + e.squeeze(0), h, lin->weight.t());
    } else {
      h = lin->forward(h) + e;
    }
    if (labels.defined()) {
      h = h + class_embeddings[l]->as<torch::nn::Embedding>()->forward(labels);
    }
    if (o.activation() == Activation::ReLU && !h.requires_grad()) {
      h.relu_();
    } else {
      h = apply_activation(o.activation(), h);
    }
  }
  return out->forward(h);
}

// ---- config ---------------------------------------------------------------

Config to_config(const MLPOptions& o) {
  return {
      {"name", "mlp"},
      {"input_dim", o.input_dim()},
      {"hidden", o.hidden()},
      {"depth", o.depth()},
      {"embedding", to_string(o.embedding())},
      {"embedding_dim", o.embedding_dim()},
      {"num_timesteps", o.num_timesteps()},
      {"fourier_scale", o.fourier_scale()},
      {"time_scale", o.time_scale()},
      {"activation", to_string(o.activation())},
      {"num_classes", o.num_classes()},
      {"class_dropout", o.class_dropout()}};
}

MLPOptions mlp_options_from_config(const Config& j) {
  const MLPOptions d(j.at("input_dim").get<int64_t>());
  return MLPOptions(d.input_dim())
      .hidden(j.value("hidden", d.hidden()))
      .depth(j.value("depth", d.depth()))
      .embedding(time_embedding_kind_from_string(
          j.value("embedding", to_string(d.embedding()))))
      .embedding_dim(j.value("embedding_dim", d.embedding_dim()))
      .num_timesteps(j.value("num_timesteps", d.num_timesteps()))
      .fourier_scale(j.value("fourier_scale", d.fourier_scale()))
      .time_scale(j.value("time_scale", d.time_scale()))
      .activation(activation_from_string(
          j.value("activation", to_string(d.activation()))))
      .num_classes(j.value("num_classes", d.num_classes()))
      .class_dropout(j.value("class_dropout", d.class_dropout()));
}

Network to_network(const MLP& net) {
  TORCH_CHECK(!net.is_empty(), "to_network: the MLP is empty");
  auto n = make_network(
      "mlp", std::make_shared<const Config>(to_config(net->options)), net);
  const int64_t d = net->options.input_dim();
  n.sample_shape = [d](const std::vector<int64_t>& shape) {
    if (shape.empty()) {
      return std::vector<int64_t>{d};
    }
    TORCH_CHECK(
        shape == std::vector<int64_t>{d},
        "an MLP of input_dim ",
        d,
        " takes samples of shape [",
        d,
        "], got sample_shape ",
        c10::IntArrayRef(shape));
    return shape;
  };
  return n;
}

}  // namespace sbgm
