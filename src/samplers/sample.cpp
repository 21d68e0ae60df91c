// Samplers by name: the registry, the shared options and sample().

#include <nlohmann/json.hpp>

#include "options.h"
#include "sbgm/samplers/samplers.h"

namespace sbgm::samplers {

namespace {

// One line per built-in sampler file.
Registry<Sampler>* make_registry() {
  auto* table = new Registry<Sampler>("sampler");
  detail::register_folded(*table);
  detail::register_pc(*table);
  detail::register_ode(*table);
  detail::register_heun(*table);
  detail::register_unipc(*table);
  table->add(
      "default",
      [](const Config& c) { return sampler_registry().create("dpmpp_2m", c); },
      "dpmpp_2m");
  return table;
}

const Config& null_config() {
  static const Config null;
  return null;
}

template <class V>
SampleOptions& set_field(
    SampleOptions& o,
    std::shared_ptr<const Config>& holder,
    const std::string& key,
    V&& value) {
  auto next = std::make_shared<Config>(
      holder ? *holder : Config(Config::value_t::object));
  TORCH_CHECK(
      next->is_object(),
      "SampleOptions::set: options() is not a JSON object but ",
      next->dump());
  (*next)[key] = std::forward<V>(value);
  holder = std::move(next);
  return o;
}

}  // namespace

Registry<Sampler>& sampler_registry() {
  static Registry<Sampler>* table = make_registry();  // never destroyed
  return *table;
}

std::vector<std::string> sampler_names() {
  return sampler_registry().names();
}

SampleOptions& SampleOptions::options(const Config& config) {
  options_ = std::make_shared<const Config>(config);
  return *this;
}

const Config& SampleOptions::options() const {
  return options_ ? *options_ : null_config();
}

SampleOptions& SampleOptions::set(const std::string& key, double value) {
  return set_field(*this, options_, key, value);
}
SampleOptions& SampleOptions::set(const std::string& key, int value) {
  return set_field(*this, options_, key, static_cast<int64_t>(value));
}
SampleOptions& SampleOptions::set(const std::string& key, int64_t value) {
  return set_field(*this, options_, key, value);
}
SampleOptions& SampleOptions::set(const std::string& key, bool value) {
  return set_field(*this, options_, key, value);
}
SampleOptions& SampleOptions::set(const std::string& key, const char* value) {
  return set_field(*this, options_, key, std::string(value));
}
SampleOptions& SampleOptions::set(
    const std::string& key, const std::string& value) {
  return set_field(*this, options_, key, value);
}

SampleResult sample(
    const Model& model,
    const NoiseProcess& process,
    torch::IntArrayRef shape,
    const SampleOptions& o) {
  const auto& table = sampler_registry();
  if (!table.contains(o.sampler())) {
    std::string valid;
    for (const auto& s : table.names()) {
      valid += (valid.empty() ? "" : ", ") + s;
    }
    TORCH_CHECK(
        false,
        "sample: unknown sampler '",
        o.sampler(),
        "'; valid names: ",
        valid);
  }
  TORCH_CHECK(o.steps() >= 0, "sample: steps must be >= 0, got ", o.steps());
  const Sampler sampler = table.create(o.sampler(), o.options());
  // The grid: by name, with the sampler's default step count when steps is
  // 0 (a default grid with no steps leaves the choice to the sampler).
  GridSpec grid;
  if (o.time_grid()) {
    grid = *o.time_grid();
  } else if (o.grid() != "default" || o.steps() > 0) {
    const int64_t steps =
        o.steps() > 0 ? o.steps() : sampler.default_steps(process);
    grid =
        grids::from_name(o.grid(), process, steps, GridOptions().rho(o.rho()));
  }
  return sampler.run(model, process, shape, grid, o.common());
}

}  // namespace sbgm::samplers
