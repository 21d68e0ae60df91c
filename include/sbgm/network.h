#pragma once

/// \file
/// Networks by name: a network is registered once with a factory that
/// builds it from its config, so that model files, programs and tests
/// rebuild it from {"name": ..., options...} alone, and a user's own network
/// is saved, loaded and sampled like the built-ins ("mlp", "unet").
///
/// Example (a user's network, registered once at start-up):
/// ```
/// sbgm::network_registry().add("tiny", [](const sbgm::Config& c) {
///   TinyNet net(c.value("width", 8));
///   auto config = std::make_shared<const sbgm::Config>(sbgm::Config{
///       {"name", "tiny"}, {"width", net->width}});
///   return sbgm::make_network("tiny", config, net);
/// });
/// sbgm::save_model("tiny.safetensors", sbgm::network_from_config(cfg), ...);
/// ```

#include <torch/nn/module.h>
#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "sbgm/model.h"
#include "sbgm/process.h"
#include "sbgm/registry.h"

namespace sbgm {

/// A network with what saving, loading and sampling it by name need.
struct Network {
  /// Its registry name ("mlp", "unet" or a user's).
  std::string name;
  /// Its options as a config, {"name": name, ...}: network_from_config
  /// builds an equal network (with fresh weights) from it.
  std::shared_ptr<const Config> config;
  /// The module; its parameters and buffers are what a model file stores.
  std::shared_ptr<torch::nn::Module> module;
  /// The model over the network for a prediction type (conditional when
  /// the network takes a class): what `Model(net, prediction)` gives.
  std::function<Model(Prediction)> model;
  /// The bare forward(x, t), for wrappers such as EDM's preconditioning.
  ModelFn forward;
  /// The shape of one sample (without the batch) for a requested one: an
  /// empty request gives the network's default, a shape it cannot take
  /// throws. Unset: any non-empty shape is taken as given.
  std::function<std::vector<int64_t>(const std::vector<int64_t>&)> sample_shape;
  /// Optional: binds the network to the process it is used with (the UNet
  /// whose output is divided by the process's sigma(t)).
  std::function<void(const ProcessPtr&)> bind_process;
};

/// A Network over a module holder (anything with `ptr()` and
/// `forward(x, t)`, conditional or not), for a factory of the registry.
template <class Holder>
Network make_network(
    std::string name, std::shared_ptr<const Config> config, Holder net) {
  Network n;
  n.name = std::move(name);
  n.config = std::move(config);
  n.module = net.ptr();
  n.model = [net](Prediction p) { return Model(net, p); };
  n.forward = [net](const torch::Tensor& x, const torch::Tensor& t) mutable {
    return net->forward(x, t);
  };
  return n;
}

/// The table of networks by name. Built in: "mlp" (sbgm/nets/mlp.h) and
/// "unet" (sbgm/nets/unet.h); a factory receives the whole config (with
/// "name") and fills missing options with their defaults.
Registry<Network>& network_registry();

/// The network `config` describes (config["name"] picks the entry), with
/// fresh weights. `network_from_config(*n.config)` equals n in options.
Network network_from_config(const Config& config);

}  // namespace sbgm
