#include "sbgm/model_file.h"

#include <cmath>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "sbgm/io/safetensors.h"
#include "sbgm/precondition.h"
#include "sbgm/random.h"
#include "sbgm/train/ema.h"

namespace sbgm {
namespace {

using nlohmann::json;

constexpr const char* kFormat = "sbgm.model";
constexpr const char* kRawPrefix = "raw.";

std::string hex32(uint32_t v) {
  char buf[9];
  std::snprintf(buf, sizeof buf, "%08x", v);
  return buf;
}

// A version 1 config names its network's and process's registry entry
// "kind" and stores a discrete process's betas at its top level; the same
// in today's form.
// The CRC-32 that header_crc32 holds (see model_file.h).
uint32_t header_crc(
    const std::map<std::string, std::string>& metadata,
    const io::NamedTensors& tensors) {
  json meta = json::object();
  for (const auto& [key, value] : metadata) {
    if (key != "header_crc32") {
      meta[key] = value;
    }
  }
  json table = json::array();
  for (const auto& [name, t] : tensors) {
    table.push_back({name, c10::toString(t.scalar_type()), t.sizes().vec()});
  }
  const auto s = json{{"metadata", meta}, {"tensors", table}}.dump();
  return io::crc32(s.data(), s.size());
}

json upgraded_v1(json cfg) {
  for (const char* part : {"network", "process"}) {
    if (!cfg.contains(part)) {
      continue;
    }
    auto& p = cfg[part];
    if (p.is_object() && !p.contains("name") && p.contains("kind")) {
      p["name"] = p["kind"];
      p.erase("kind");
    }
  }
  if (cfg.contains("process")) {
    auto& p = cfg["process"];
    if (p.is_object() && p.value("name", std::string()) == "discrete" &&
        p.contains("betas") && !p.contains("schedule")) {
      p["schedule"] = {{"kind", "custom"}, {"betas", p["betas"]}};
      p.erase("betas");
    }
  }
  return cfg;
}

json transform_json(const DataTransform& d) {
  return {
      {"scale", d.scale()},
      {"shift", d.shift()},
      {"clamp", d.clamp()},
      {"clamp_min", d.clamp_min()},
      {"clamp_max", d.clamp_max()}};
}

DataTransform transform_from_json(const json& j) {
  return DataTransform()
      .scale(j.at("scale").get<double>())
      .shift(j.at("shift").get<std::vector<double>>())
      .clamp(j.at("clamp").get<bool>())
      .clamp_min(j.at("clamp_min").get<double>())
      .clamp_max(j.at("clamp_max").get<double>());
}

void check_transform(
    const DataTransform& d,
    const std::vector<int64_t>& shape,
    const char* where) {
  TORCH_CHECK(
      std::isfinite(d.scale()) && d.scale() != 0,
      where,
      ": data_transform scale must be finite and non-zero, got ",
      d.scale());
  const auto n = static_cast<int64_t>(d.shift().size());
  TORCH_CHECK(
      n <= 1 || (!shape.empty() && n == shape[0]),
      where,
      ": data_transform shift has ",
      n,
      " values; expected 0, 1 or ",
      shape.empty() ? int64_t{1} : shape[0],
      " (one per entry of dimension 1 of the samples)");
  TORCH_CHECK(
      !d.clamp() || d.clamp_min() <= d.clamp_max(),
      where,
      ": data_transform clamp needs clamp_min <= clamp_max, got ",
      d.clamp_min(),
      " and ",
      d.clamp_max());
}

json training_json(const TrainingInfo& t) {
  json j = {{"step", t.step}, {"train_seconds", t.train_seconds}};
  j["final_loss"] =
      std::isfinite(t.final_loss) ? json(t.final_loss) : json(nullptr);
  return j;
}

TrainingInfo training_from_json(const json& j) {
  TrainingInfo t;
  t.step = j.at("step").get<int64_t>();
  t.train_seconds = j.at("train_seconds").get<double>();
  const auto& l = j.at("final_loss");
  t.final_loss =
      l.is_null() ? std::numeric_limits<double>::quiet_NaN() : l.get<double>();
  return t;
}

void save_network(
    const std::string& path,
    const Network& net,
    Prediction prediction,
    const NoiseProcess& process,
    const SaveModelOptions& options) {
  TORCH_CHECK(
      net.module != nullptr && net.config != nullptr,
      "save_model: the network '",
      net.name,
      "' has no module or no config");
  TORCH_CHECK(
      network_registry().contains(net.name),
      "save_model: the network '",
      net.name,
      "' is not registered (sbgm::network_registry().add), so it could not "
      "be loaded");
  std::vector<int64_t> sample_shape = options.sample_shape();
  if (net.sample_shape) {
    try {
      sample_shape = net.sample_shape(sample_shape);
    } catch (const c10::Error& e) {
      TORCH_CHECK(false, "save_model: ", e.what_without_backtrace());
    }
  }
  TORCH_CHECK(
      !sample_shape.empty(),
      "save_model: the network '",
      net.name,
      "' needs a sample_shape");
  json network = *net.config;
  network["name"] = net.name;
  json process_config;
  try {
    process_config = process.config();
  } catch (const c10::Error& e) {
    TORCH_CHECK(
        false,
        "save_model: cannot store the process ",
        process.describe(),
        ": ",
        e.what_without_backtrace());
  }
  const auto process_name = process_config.value("name", std::string());
  TORCH_CHECK(
      process_registry().contains(process_name),
      "save_model: cannot store the process ",
      process.describe(),
      ": its config's name '",
      process_name,
      "' is not registered (sbgm::process_registry().add)");
  const torch::nn::Module& module = *net.module;
  const double sd = options.edm_sigma_data();
  TORCH_CHECK(
      sd >= 0 && std::isfinite(sd),
      "save_model: edm_sigma_data must be finite and >= 0, got ",
      sd);
  check_transform(options.data_transform(), sample_shape, "save_model");
  json config = {
      {"network", std::move(network)},
      {"prediction", to_string(prediction)},
      {"process", std::move(process_config)},
      {"sample_shape", std::move(sample_shape)},
      {"data_transform", transform_json(options.data_transform())}};
  if (sd > 0) {
    config["preconditioning"] = {{"kind", "edm"}, {"sigma_data", sd}};
  }

  io::NamedTensors tensors;
  const auto params = module.named_parameters(/*recurse=*/true);
  const EMA* ema = options.ema();
  if (ema != nullptr) {
    TORCH_CHECK(
        ema->names().size() == params.size(),
        "save_model: the EMA tracks ",
        ema->names().size(),
        " parameters but the network has ",
        params.size());
  }
  for (size_t i = 0; i < params.size(); ++i) {
    const auto& item = params[i];
    if (ema != nullptr) {
      TORCH_CHECK(
          ema->names()[i] == item.key(),
          "save_model: the EMA's parameter ",
          i,
          " is '",
          ema->names()[i],
          "' but the network's is '",
          item.key(),
          "'");
      tensors.emplace_back(item.key(), ema->shadow()[i]);
    } else {
      tensors.emplace_back(item.key(), item.value());
    }
  }
  for (const auto& item : module.named_buffers(/*recurse=*/true)) {
    tensors.emplace_back(item.key(), item.value());
  }
  if (ema != nullptr && options.save_raw()) {
    for (const auto& item : params) {
      tensors.emplace_back(kRawPrefix + item.key(), item.value());
    }
  }
  // The checksum covers the data section, which only depends on the
  // tensors in order: compute it on the same contiguous CPU bytes.
  uint32_t crc = 0;
  for (auto& entry : tensors) {
    entry.second = entry.second.detach().to(torch::kCPU).contiguous();
    crc = io::crc32(
        entry.second.data_ptr(),
        entry.second.numel() * entry.second.element_size(),
        crc);
  }
  std::map<std::string, std::string> meta = {
      {"format", kFormat},
      {"format_version", std::to_string(kModelFormatVersion)},
      {"config", config.dump()},
      {"data_crc32", hex32(crc)}};
  if (options.training()) {
    meta["training"] = training_json(*options.training()).dump();
  }
  meta["header_crc32"] = hex32(header_crc(meta, tensors));
  io::save_safetensors(path, tensors, meta);
}

// The metadata of a model file, checked.
struct Checked {
  io::SafetensorsFile file;
  json config;
  std::optional<TrainingInfo> training;
  int64_t version = 0;
};

Checked read_checked(const std::string& path, const char* where) {
  Checked c;
  c.file = io::load_safetensors(path);
  const auto& meta = c.file.metadata;
  auto get = [&](const char* key) -> const std::string* {
    auto it = meta.find(key);
    return it == meta.end() ? nullptr : &it->second;
  };
  const auto* format = get("format");
  TORCH_CHECK(
      format != nullptr && *format == kFormat,
      where,
      ": '",
      path,
      "' is a safetensors file but not an sbgm model (wrong magic: its "
      "metadata 'format' is ",
      format ? "'" + *format + "'" : std::string("missing"),
      ", expected '",
      kFormat,
      "')");
  const auto* version = get("format_version");
  TORCH_CHECK(
      version != nullptr, where, ": '", path, "' has no format_version");
  try {
    size_t used = 0;
    c.version = std::stoll(*version, &used);
    TORCH_CHECK(used == version->size(), "trailing characters");
  } catch (const std::exception&) {
    TORCH_CHECK(
        false,
        where,
        ": '",
        path,
        "' has an invalid format_version '",
        *version,
        "'");
  }
  TORCH_CHECK(
      c.version <= kModelFormatVersion,
      where,
      ": '",
      path,
      "' has format version ",
      c.version,
      ", newer than this build of sbgm reads (",
      kModelFormatVersion,
      "); update sbgm");
  TORCH_CHECK(
      c.version >= 1,
      where,
      ": '",
      path,
      "' has an invalid format version ",
      c.version);
  const auto* crc = get("data_crc32");
  TORCH_CHECK(crc != nullptr, where, ": '", path, "' has no data_crc32");
  TORCH_CHECK(
      *crc == hex32(c.file.data_crc32),
      where,
      ": '",
      path,
      "' fails its checksum: the data's CRC-32 is ",
      hex32(c.file.data_crc32),
      " but the header says ",
      *crc,
      " (the weights are damaged)");
  const auto* header = get("header_crc32");
  TORCH_CHECK(
      header != nullptr || c.version < 2,
      where,
      ": '",
      path,
      "' has no header_crc32");
  if (header != nullptr) {
    const auto want = hex32(header_crc(meta, c.file.tensors));
    TORCH_CHECK(
        *header == want,
        where,
        ": '",
        path,
        "' fails its header checksum: the header's CRC-32 is ",
        want,
        " but the header says ",
        *header,
        " (the config or the tensor table is damaged)");
  }
  const auto* config = get("config");
  TORCH_CHECK(config != nullptr, where, ": '", path, "' has no config");
  try {
    c.config = upgraded_v1(json::parse(*config));
    if (const auto* t = get("training")) {
      c.training = training_from_json(json::parse(*t));
    }
  } catch (const json::exception& e) {
    TORCH_CHECK(
        false, where, ": '", path, "' has an invalid config: ", e.what());
  }
  return c;
}

// Copies the file's tensors into the module, checking names and shapes.
void fill_module(
    torch::nn::Module& module,
    const io::SafetensorsFile& file,
    bool raw,
    const std::string& path) {
  std::map<std::string, const torch::Tensor*> by_name;
  for (const auto& [name, t] : file.tensors) {
    by_name[name] = &t;
  }
  torch::NoGradGuard no_grad;
  auto fill = [&](const std::string& name, torch::Tensor& dst, bool param) {
    const std::string key = raw && param ? kRawPrefix + name : name;
    auto it = by_name.find(key);
    TORCH_CHECK(
        it != by_name.end(),
        "load_model: '",
        path,
        "' has no tensor '",
        key,
        "', which the network its config describes needs",
        raw ? " (trained weights: saved without an EMA or save_raw?)" : "");
    const auto& src = *it->second;
    TORCH_CHECK(
        src.sizes() == dst.sizes(),
        "load_model: '",
        path,
        "': the config does not match the weights: tensor '",
        key,
        "' has shape ",
        src.sizes(),
        " in the file but ",
        dst.sizes(),
        " in the network the config describes");
    TORCH_CHECK(
        src.is_floating_point() == dst.is_floating_point(),
        "load_model: '",
        path,
        "': tensor '",
        key,
        "' has dtype ",
        src.scalar_type(),
        " but the network's is ",
        dst.scalar_type());
    dst.copy_(src);
  };
  for (auto& item : module.named_parameters(true)) {
    fill(item.key(), item.value(), true);
  }
  for (auto& item : module.named_buffers(true)) {
    fill(item.key(), item.value(), false);
  }
  // Every tensor must be one the network has: a parameter (also as
  // "raw.<name>") or a buffer.
  std::set<std::string> known;
  for (const auto& item : module.named_parameters(true)) {
    known.insert(item.key());
    known.insert(kRawPrefix + item.key());
  }
  for (const auto& item : module.named_buffers(true)) {
    known.insert(item.key());
  }
  for (const auto& entry : file.tensors) {
    const auto& name = entry.first;
    TORCH_CHECK(
        known.count(name) > 0,
        "load_model: '",
        path,
        "': the config does not match the weights: the file has a tensor '",
        name,
        "' that the network its config describes does not have");
  }
}

}  // namespace

torch::Tensor DataTransform::apply(const torch::Tensor& x) const {
  auto y = x * scale();
  if (!shift().empty()) {
    auto s =
        torch::tensor(shift(), torch::kDouble).to(x.device(), x.scalar_type());
    if (shift().size() > 1) {
      TORCH_CHECK(
          x.dim() >= 2 && x.size(1) == s.size(0),
          "DataTransform: ",
          s.size(0),
          " shifts for samples of shape ",
          x.sizes());
      std::vector<int64_t> view(static_cast<size_t>(x.dim()) - 1, 1);
      view[0] = s.size(0);
      s = s.view(view);
    } else {
      s = s.reshape({});
    }
    y = y + s;
  }
  if (clamp()) {
    y.clamp_(clamp_min(), clamp_max());
  }
  return y;
}

void save_model(
    const std::string& path,
    const Network& net,
    Prediction prediction,
    const NoiseProcess& process,
    const SaveModelOptions& options) {
  save_network(path, net, prediction, process, options);
}

LoadedModel load_model(
    const std::string& path, torch::Device device, ModelWeights weights) {
  const char* where = "load_model";
  check_device(device, where);
  auto c = read_checked(path, where);
  std::shared_ptr<const NoiseProcess> process;
  Network net;
  Prediction prediction = Prediction::Epsilon;
  std::vector<int64_t> sample_shape;
  double sigma_data = 0.0;
  DataTransform transform;
  std::optional<Model> model;
  try {
    const auto& cfg = c.config;
    process = process_from_config(cfg.at("process"));
    prediction =
        prediction_from_string(cfg.at("prediction").get<std::string>());
    sample_shape = cfg.at("sample_shape").get<std::vector<int64_t>>();
    transform = transform_from_json(cfg.at("data_transform"));
    check_transform(transform, sample_shape, "data_transform");
    if (cfg.contains("preconditioning")) {
      const auto& pre = cfg.at("preconditioning");
      TORCH_CHECK(
          pre.at("kind").get<std::string>() == "edm",
          "unknown preconditioning ",
          pre.dump());
      sigma_data = pre.at("sigma_data").get<double>();
    }
    net = network_from_config(cfg.at("network"));
    if (net.bind_process) {
      net.bind_process(process);
    }
    if (net.sample_shape) {
      const auto shape = net.sample_shape(sample_shape);
      TORCH_CHECK(
          shape == sample_shape,
          "the sample_shape ",
          c10::IntArrayRef(sample_shape),
          " does not fit the network (",
          c10::IntArrayRef(shape),
          ")");
    }
    if (sigma_data == 0) {
      model.emplace(net.model(prediction));
    }
  } catch (const json::exception& e) {
    TORCH_CHECK(
        false, where, ": '", path, "' has an invalid config: ", e.what());
  } catch (const c10::Error& e) {
    TORCH_CHECK(
        false,
        where,
        ": '",
        path,
        "' has a config that cannot be used: ",
        e.what_without_backtrace());
  }
  fill_module(*net.module, c.file, weights == ModelWeights::Raw, path);
  net.module->to(device);
  net.module->eval();
  if (!model) {
    model.emplace(edm_precondition(net.forward, process, sigma_data));
  }
  bool has_raw = false;
  for (const auto& entry : c.file.tensors) {
    has_raw = has_raw || entry.first.rfind(kRawPrefix, 0) == 0;
  }
  return LoadedModel{
      net.name,
      net.module,
      net.config,
      *model,
      process,
      sample_shape,
      transform,
      c.training,
      has_raw,
      c.version};
}

std::optional<TrainingInfo> read_training_info(const std::string& path) {
  return read_checked(path, "read_training_info").training;
}

}  // namespace sbgm
