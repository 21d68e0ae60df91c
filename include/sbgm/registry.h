#pragma once

/// \file
/// Name -> factory tables, one per kind of piece (processes, samplers,
/// networks), in the manner of diffusers' `from_config`: a piece is
/// rebuilt from its name and its JSON config alone, and a user's own piece
/// registers into the same table as the built-ins.
///
/// Configs are `nlohmann::json` (this header needs only its forward
/// declaration; include <nlohmann/json.hpp> where you read or build one).
///
/// Example:
/// ```
/// sbgm::Registry<int> table("widget");
/// table.add("one", [](const sbgm::Config&) { return 1; }, "the number 1");
/// int v = table.create("one", {});
/// ```

#include <nlohmann/json_fwd.hpp>

#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace sbgm {

/// A piece's configuration: a JSON object of its parameters.
using Config = nlohmann::json;

namespace detail {
/// Throws c10::Error with `msg` (keeps <c10/util/Exception.h> out of here).
[[noreturn]] void registry_error(const std::string& msg);
}  // namespace detail

/// A thread-safe table from names to factories of `Product`.
template <class Product>
class Registry {
 public:
  using Factory = std::function<Product(const Config&)>;

  /// `kind` names what the table holds in error messages ("process").
  explicit Registry(std::string kind) : kind_(std::move(kind)) {}

  /// Adds `name`; an empty name or one already taken is an error (no
  /// silent replacement of a built-in).
  void add(const std::string& name, Factory factory, std::string doc = {}) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (name.empty()) {
      detail::registry_error("register " + kind_ + ": empty name");
    }
    if (!factory) {
      detail::registry_error(
          "register " + kind_ + " '" + name + "': empty factory");
    }
    if (entries_.count(name) != 0) {
      detail::registry_error(
          "register " + kind_ + " '" + name + "': the name is taken");
    }
    entries_.emplace(name, Entry{std::move(factory), std::move(doc)});
  }

  /// True when `name` is registered.
  bool contains(const std::string& name) const {
    std::lock_guard<std::mutex> lock(mutex_);
    return entries_.count(name) != 0;
  }

  /// Builds `name` from `config`; an unknown name is an error that lists
  /// the registered ones.
  Product create(const std::string& name, const Config& config) const {
    Factory f;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = entries_.find(name);
      if (it == entries_.end()) {
        detail::registry_error(
            "unknown " + kind_ + " '" + name + "'; registered: " + joined());
      }
      f = it->second.factory;
    }
    return f(config);
  }

  /// The registered names, sorted.
  std::vector<std::string> names() const {
    std::lock_guard<std::mutex> lock(mutex_);
    std::vector<std::string> out;
    out.reserve(entries_.size());
    for (const auto& e : entries_) {
      out.push_back(e.first);
    }
    return out;
  }

  /// The one-line description given to add() ("" when none).
  std::string doc(const std::string& name) const {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = entries_.find(name);
    return it == entries_.end() ? std::string() : it->second.doc;
  }

  /// What the table holds ("process").
  const std::string& kind() const {
    return kind_;
  }

 private:
  struct Entry {
    Factory factory;
    std::string doc;
  };
  // Callers hold mutex_.
  std::string joined() const {
    std::string s;
    for (const auto& e : entries_) {
      s += (s.empty() ? "" : ", ") + e.first;
    }
    return s;
  }

  std::string kind_;
  mutable std::mutex mutex_;
  std::map<std::string, Entry> entries_;
};

}  // namespace sbgm
