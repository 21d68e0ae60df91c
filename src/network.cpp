#include "sbgm/network.h"

#include <nlohmann/json.hpp>

#include "sbgm/nets/mlp.h"
#include "sbgm/nets/unet.h"

namespace sbgm {
namespace {

Network unet_from_config(const Config& c) {
  UNet net(unet_options_from_config(c));
  auto n = to_network(net);
  if (c.value("divide_by_sigma", false)) {
    auto config = *n.config;
    config["divide_by_sigma"] = true;
    n.config = std::make_shared<const Config>(std::move(config));
    n.bind_process = [net](const ProcessPtr& process) mutable {
      net->options.marginal_std(
          [process](const torch::Tensor& t) { return process->sigma(t); });
    };
  }
  return n;
}

}  // namespace

Registry<Network>& network_registry() {
  // Built on first use; one line per built-in network.
  static auto* registry = [] {
    auto* r = new Registry<Network>("network");
    r->add(
        "mlp",
        [](const Config& c) {
          return to_network(MLP(mlp_options_from_config(c)));
        },
        "time-conditioned MLP (sbgm/nets/mlp.h)");
    r->add(
        "unet", &unet_from_config, "time-conditioned U-Net (sbgm/nets/unet.h)");
    return r;
  }();
  return *registry;
}

Network network_from_config(const Config& config) {
  TORCH_CHECK(
      config.is_object() && config.contains("name") &&
          config.at("name").is_string(),
      "network_from_config: the config must be an object with a string "
      "\"name\", got ",
      config.dump());
  const auto name = config.at("name").get<std::string>();
  Network n;
  try {
    n = network_registry().create(name, config);
  } catch (const nlohmann::json::exception& e) {
    TORCH_CHECK(
        false,
        "network_from_config: invalid config for network '",
        name,
        "': ",
        config.dump(),
        " (",
        e.what(),
        ")");
  }
  TORCH_CHECK(
      n.module != nullptr && n.model && n.config != nullptr,
      "network_from_config: the factory of '",
      name,
      "' returned a network without its module, model or config");
  return n;
}

}  // namespace sbgm
