#pragma once

// Private: reading a sampler's own options from its JSON config (each
// sampler names the fields it knows; any other field is an error naming
// them), and the registrars of the built-in sampler files.

#include <c10/util/Exception.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "sbgm/samplers/samplers.h"

namespace sbgm::samplers::detail {

/// The fields of one sampler's config, checked against the allowed names
/// when constructed.
class OptionReader {
 public:
  OptionReader(
      const Config& config,
      std::string sampler,
      std::vector<std::string> allowed)
      : config_(config), sampler_(std::move(sampler)) {
    if (config_.is_null()) {
      return;
    }
    TORCH_CHECK(
        config_.is_object(),
        "sampler '",
        sampler_,
        "': options must be a JSON object, got ",
        config_.dump());
    for (const auto& item : config_.items()) {
      bool known = false;
      for (const auto& a : allowed) {
        known = known || a == item.key();
      }
      if (!known) {
        std::string list;
        for (const auto& a : allowed) {
          list += (list.empty() ? "" : ", ") + a;
        }
        TORCH_CHECK(
            false,
            "sampler '",
            sampler_,
            "': unknown option '",
            item.key(),
            "'; allowed: ",
            list.empty() ? "none" : list);
      }
    }
  }

  bool has(const char* key) const {
    return config_.is_object() && config_.contains(key);
  }

  double number(const char* key, double fallback) const {
    if (!has(key)) {
      return fallback;
    }
    const auto& v = config_.at(key);
    check(v.is_number(), key, "a number", v);
    return v.get<double>();
  }

  int64_t integer(const char* key, int64_t fallback) const {
    if (!has(key)) {
      return fallback;
    }
    const auto& v = config_.at(key);
    check(v.is_number_integer(), key, "an integer", v);
    return v.get<int64_t>();
  }

  bool flag(const char* key, bool fallback) const {
    if (!has(key)) {
      return fallback;
    }
    const auto& v = config_.at(key);
    check(v.is_boolean(), key, "true or false", v);
    return v.get<bool>();
  }

  /// A string field that must be one of `choices`; returns its index.
  size_t choice(
      const char* key,
      const std::vector<std::string>& choices,
      size_t fallback) const {
    if (!has(key)) {
      return fallback;
    }
    const auto& v = config_.at(key);
    std::string list;
    for (const auto& c : choices) {
      list += (list.empty() ? "" : ", ") + c;
    }
    check(v.is_string(), key, ("one of " + list).c_str(), v);
    const auto s = v.get<std::string>();
    for (size_t i = 0; i < choices.size(); ++i) {
      if (choices[i] == s) {
        return i;
      }
    }
    TORCH_CHECK(
        false,
        "sampler '",
        sampler_,
        "': option '",
        key,
        "' must be one of ",
        list,
        ", got '",
        s,
        "'");
  }

 private:
  void check(
      bool ok, const char* key, const char* what, const Config& v) const {
    TORCH_CHECK(
        ok,
        "sampler '",
        sampler_,
        "': option '",
        key,
        "' must be ",
        what,
        ", got ",
        v.dump());
  }

  const Config& config_;
  std::string sampler_;
};

/// A default step count that does not depend on the process.
inline std::function<int64_t(const NoiseProcess&)> steps(int64_t n) {
  return [n](const NoiseProcess&) { return n; };
}

/// A sampler function with its options struct, as the registry's product.
template <class Options, class Fn>
Sampler make_sampler(
    Options o, Fn fn, std::function<int64_t(const NoiseProcess&)> steps) {
  return Sampler{
      [o, fn](
          const Model& model,
          const NoiseProcess& process,
          torch::IntArrayRef shape,
          const GridSpec& grid,
          const CommonOptions& common) {
        auto run = o;
        run.grid(grid).common(common);
        return fn(model, process, shape, run);
      },
      std::move(steps)};
}

/// The built-in sampler files, each adding its samplers to the table.
void register_folded(Registry<Sampler>& table);  // folded.cpp
void register_pc(Registry<Sampler>& table);      // pc.cpp
void register_ode(Registry<Sampler>& table);     // ode.cpp
void register_heun(Registry<Sampler>& table);    // heun.cpp
void register_unipc(Registry<Sampler>& table);   // unipc.cpp

}  // namespace sbgm::samplers::detail
