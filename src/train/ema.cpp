#include "sbgm/train/ema.h"

#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>

#include <algorithm>
#include <cmath>

#include "internal.h"

namespace sbgm {

EMA::EMA(const torch::nn::Module& module, double decay, bool warmup)
    : decay_(decay), warmup_(warmup) {
  TORCH_CHECK(
      std::isfinite(decay) && decay >= 0.0 && decay <= 1.0,
      "EMA: decay must lie in [0, 1], got ",
      decay);
  torch::NoGradGuard no_grad;
  for (const auto& p : module.named_parameters(/*recurse=*/true)) {
    names_.push_back(p.key());
    shadow_.push_back(p.value().detach().clone());
  }
}

std::vector<torch::Tensor> EMA::checked_parameters(
    const torch::nn::Module& module, const char* where) const {
  auto params = module.named_parameters(/*recurse=*/true);
  TORCH_CHECK(
      params.size() == shadow_.size(),
      where,
      ": the module has ",
      params.size(),
      " parameters but the EMA tracks ",
      shadow_.size());
  for (size_t i = 0; i < shadow_.size(); ++i) {
    const auto& p = params[i];
    TORCH_CHECK(
        p.key() == names_[i] && p.value().sizes() == shadow_[i].sizes(),
        where,
        ": parameter ",
        i,
        " of the module is '",
        p.key(),
        "' ",
        detail::shape_str(p.value()),
        " but the EMA has '",
        names_[i],
        "' ",
        detail::shape_str(shadow_[i]));
  }
  return params.values();
}

double EMA::current_decay() const {
  if (!warmup_) {
    return decay_;
  }
  const double n = static_cast<double>(num_updates_);
  return std::min(decay_, (1.0 + n) / (10.0 + n));
}

namespace {

std::vector<int64_t> packed_strides(torch::IntArrayRef sizes) {
  std::vector<int64_t> strides(sizes.size(), 1);
  for (int64_t i = static_cast<int64_t>(sizes.size()) - 2; i >= 0; --i) {
    strides[i] = strides[i + 1] * std::max<int64_t>(sizes[i + 1], 1);
  }
  return strides;
}

// All of `ps` as one flat tensor when they lie back to back, contiguous, in
// one storage (as FlatAdam lays a module's parameters out); else undefined.
torch::Tensor flat_run(const std::vector<torch::Tensor>& ps) {
  if (ps.empty()) {
    return {};
  }
  const auto& p0 = ps[0];
  int64_t next = p0.storage_offset();
  for (const auto& p : ps) {
    if (!p.is_contiguous() || p.scalar_type() != p0.scalar_type() ||
        p.device() != p0.device() || !p.storage().is_alias_of(p0.storage()) ||
        p.storage_offset() != next) {
      return {};
    }
    next += p.numel();
  }
  return torch::empty({0}, p0.options())
      .set_(
          p0.storage(), p0.storage_offset(), {next - p0.storage_offset()}, {1});
}

}  // namespace

void EMA::update(const torch::nn::Module& module) {
  const auto params = checked_parameters(module, "EMA::update");
  const double d = current_decay();
  torch::NoGradGuard no_grad;
  // Parameters in one flat buffer (FlatAdam): keep the shadow flat too and
  // update it with two kernels instead of two per parameter.
  if (const torch::Tensor flat = flat_run(params); flat.defined()) {
    torch::Tensor flat_shadow = flat_run(shadow_);
    if (!flat_shadow.defined() || flat_shadow.device() != flat.device() ||
        flat_shadow.scalar_type() != flat.scalar_type()) {
      auto buf = torch::empty({flat.numel()}, flat.options());
      int64_t off = 0;
      for (auto& s : shadow_) {
        auto slot =
            torch::empty({0}, buf.options())
                .set_(buf.storage(), off, s.sizes(), packed_strides(s.sizes()));
        slot.copy_(s);
        s = slot;
        off += s.numel();
      }
      flat_shadow = buf;
    }
    flat_shadow.mul_(d).add_(flat, 1.0 - d);
    ++num_updates_;
    return;
  }
  for (size_t i = 0; i < shadow_.size(); ++i) {
    auto& s = shadow_[i];
    const auto& p = params[i];
    if (s.device() != p.device() || s.scalar_type() != p.scalar_type()) {
      s = s.to(p.device(), p.scalar_type());  // the module was moved
    }
    s.mul_(d).add_(p, 1.0 - d);
  }
  ++num_updates_;
}

void EMA::copy_to(torch::nn::Module& module) const {
  auto params = checked_parameters(module, "EMA::copy_to");
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < shadow_.size(); ++i) {
    params[i].copy_(shadow_[i]);
  }
}

void EMA::swap(torch::nn::Module& module) {
  auto params = checked_parameters(module, "EMA::swap");
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < shadow_.size(); ++i) {
    // In place, so that a flat shadow (see update) keeps its layout.
    auto tmp = params[i].detach().clone();
    params[i].copy_(shadow_[i]);
    shadow_[i].copy_(tmp);
  }
}

EMA::Scope::Scope(EMA& ema, torch::nn::Module& module)
    : ema_(ema), module_(module) {
  ema_.swap(module_);
}

EMA::Scope::~Scope() {
  try {
    ema_.swap(module_);
  } catch (...) {
    // The module changed shape while the scope was alive; nothing to do.
  }
}

void EMA::save(torch::serialize::OutputArchive& archive) const {
  archive.write("decay", c10::IValue(decay_));
  archive.write("num_updates", c10::IValue(num_updates_));
  archive.write("count", c10::IValue(static_cast<int64_t>(shadow_.size())));
  for (size_t i = 0; i < shadow_.size(); ++i) {
    archive.write("name_" + std::to_string(i), c10::IValue(names_[i]));
    archive.write("p" + std::to_string(i), shadow_[i], /*is_buffer=*/true);
  }
}

void EMA::load(torch::serialize::InputArchive& archive) {
  c10::IValue v;
  archive.read("count", v);
  const int64_t count = v.toInt();
  TORCH_CHECK(
      count == static_cast<int64_t>(shadow_.size()),
      "EMA::load: the saved average has ",
      count,
      " parameters but this EMA tracks ",
      shadow_.size());
  std::vector<torch::Tensor> loaded(shadow_.size());
  for (size_t i = 0; i < shadow_.size(); ++i) {
    archive.read("name_" + std::to_string(i), v);
    const auto name = v.toStringRef();
    TORCH_CHECK(
        name == names_[i],
        "EMA::load: saved parameter ",
        i,
        " is '",
        name,
        "' but this EMA expects '",
        names_[i],
        "'");
    torch::Tensor t;
    archive.read("p" + std::to_string(i), t, /*is_buffer=*/true);
    TORCH_CHECK(
        t.sizes() == shadow_[i].sizes(),
        "EMA::load: saved '",
        name,
        "' has shape ",
        detail::shape_str(t),
        " but this EMA expects ",
        detail::shape_str(shadow_[i]));
    loaded[i] = t.to(shadow_[i].device(), shadow_[i].scalar_type());
  }
  archive.read("num_updates", v);
  const int64_t n = v.toInt();
  num_updates_ = n;
  shadow_ = std::move(loaded);
}

}  // namespace sbgm
