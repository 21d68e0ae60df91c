#include "sbgm/model_file.h"

#include <cmath>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "sbgm/io/safetensors.h"
#include "sbgm/precondition.h"
#include "sbgm/random.h"
#include "sbgm/schedule.h"
#include "sbgm/sde.h"
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

json process_json(const NoiseProcess& process) {
  if (const auto* p = dynamic_cast<const SubVPSDE*>(&process)) {
    return {
        {"kind", "subvp"},
        {"beta_min", p->beta_min()},
        {"beta_max", p->beta_max()}};
  }
  if (const auto* p = dynamic_cast<const VPSDE*>(&process)) {
    return {
        {"kind", "vp"},
        {"beta_min", p->beta_min()},
        {"beta_max", p->beta_max()}};
  }
  if (const auto* p = dynamic_cast<const VESDE*>(&process)) {
    return {{"kind", "ve"}, {"sigma", p->base_sigma()}};
  }
  if (const auto* p = dynamic_cast<const GeometricVESDE*>(&process)) {
    return {
        {"kind", "ve_geometric"},
        {"sigma_min", p->sigma_min()},
        {"sigma_max", p->sigma_max()}};
  }
  if (const auto* p = dynamic_cast<const EDMProcess*>(&process)) {
    return {
        {"kind", "edm"},
        {"sigma_min", p->sigma_min()},
        {"sigma_max", p->sigma_max()},
        {"sigma_data", p->sigma_data()}};
  }
  if (const auto* p = dynamic_cast<const DiscreteProcess*>(&process)) {
    const auto betas = p->schedule().betas().to(torch::kCPU).contiguous();
    const auto* b = betas.data_ptr<double>();
    return {
        {"kind", "discrete"},
        {"betas", std::vector<double>(b, b + betas.numel())},
        {"quantize", p->options().quantize()}};
  }
  TORCH_CHECK(
      false,
      "save_model: cannot store the process ",
      process.describe(),
      " (known: vp, subvp, ve, ve_geometric, edm, discrete)");
}

std::shared_ptr<const NoiseProcess> process_from_json(const json& j) {
  const auto kind = j.at("kind").get<std::string>();
  if (kind == "vp") {
    return std::make_shared<VPSDE>(
        j.at("beta_min").get<double>(), j.at("beta_max").get<double>());
  }
  if (kind == "subvp") {
    return std::make_shared<SubVPSDE>(
        j.at("beta_min").get<double>(), j.at("beta_max").get<double>());
  }
  if (kind == "ve") {
    return std::make_shared<VESDE>(j.at("sigma").get<double>());
  }
  if (kind == "ve_geometric") {
    return std::make_shared<GeometricVESDE>(
        j.at("sigma_min").get<double>(), j.at("sigma_max").get<double>());
  }
  if (kind == "edm") {
    return std::make_shared<EDMProcess>(
        j.at("sigma_min").get<double>(),
        j.at("sigma_max").get<double>(),
        j.at("sigma_data").get<double>());
  }
  if (kind == "discrete") {
    return std::make_shared<DiscreteProcess>(
        Schedule::from_betas(j.at("betas").get<std::vector<double>>()),
        DiscreteProcessOptions().quantize(j.at("quantize").get<bool>()));
  }
  TORCH_CHECK(
      false,
      "unknown process kind '",
      kind,
      "' (known: vp, subvp, ve, ve_geometric, edm, discrete)");
}

json mlp_json(const MLPOptions& o) {
  return {
      {"kind", "mlp"},
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

MLPOptions mlp_from_json(const json& j) {
  return MLPOptions(j.at("input_dim").get<int64_t>())
      .hidden(j.at("hidden").get<int64_t>())
      .depth(j.at("depth").get<int64_t>())
      .embedding(
          time_embedding_kind_from_string(j.at("embedding").get<std::string>()))
      .embedding_dim(j.at("embedding_dim").get<int64_t>())
      .num_timesteps(j.at("num_timesteps").get<int64_t>())
      .fourier_scale(j.at("fourier_scale").get<double>())
      .time_scale(j.at("time_scale").get<double>())
      .activation(activation_from_string(j.at("activation").get<std::string>()))
      .num_classes(j.value("num_classes", int64_t{0}))
      .class_dropout(j.value("class_dropout", 0.1));
}

json unet_json(const UNetOptions& o) {
  return {
      {"kind", "unet"},
      {"in_channels", o.in_channels()},
      {"channels", o.channels()},
      {"num_res_blocks", o.num_res_blocks()},
      {"groups", o.groups()},
      {"attention_levels", o.attention_levels()},
      {"mid_attention", o.mid_attention()},
      {"dropout", o.dropout()},
      {"time_embedding", to_string(o.time_embedding())},
      {"time_dim", o.time_dim()},
      {"num_timesteps", o.num_timesteps()},
      {"fourier_scale", o.fourier_scale()},
      {"time_scale", o.time_scale()},
      {"divide_by_sigma", static_cast<bool>(o.marginal_std())},
      {"num_classes", o.num_classes()},
      {"class_dropout", o.class_dropout()},
      {"class_up_path_only", o.class_up_path_only()}};
}

UNetOptions unet_from_json(const json& j) {
  return UNetOptions(j.at("in_channels").get<int64_t>())
      .channels(j.at("channels").get<std::vector<int64_t>>())
      .num_res_blocks(j.at("num_res_blocks").get<int64_t>())
      .groups(j.at("groups").get<int64_t>())
      .attention_levels(j.at("attention_levels").get<std::vector<int64_t>>())
      .mid_attention(j.at("mid_attention").get<bool>())
      .dropout(j.at("dropout").get<double>())
      .time_embedding(time_embedding_kind_from_string(
          j.at("time_embedding").get<std::string>()))
      .time_dim(j.at("time_dim").get<int64_t>())
      .num_timesteps(j.at("num_timesteps").get<int64_t>())
      .fourier_scale(j.at("fourier_scale").get<double>())
      .time_scale(j.at("time_scale").get<double>())
      .num_classes(j.value("num_classes", int64_t{0}))
      .class_dropout(j.value("class_dropout", 0.1))
      .class_up_path_only(j.value("class_up_path_only", false));
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
    const torch::nn::Module& module,
    json network,
    Prediction prediction,
    const NoiseProcess& process,
    std::vector<int64_t> sample_shape,
    const SaveModelOptions& options) {
  const double sd = options.edm_sigma_data();
  TORCH_CHECK(
      sd >= 0 && std::isfinite(sd),
      "save_model: edm_sigma_data must be finite and >= 0, got ",
      sd);
  check_transform(options.data_transform(), sample_shape, "save_model");
  json config = {
      {"network", std::move(network)},
      {"prediction", to_string(prediction)},
      {"process", process_json(process)},
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
  const auto* config = get("config");
  TORCH_CHECK(config != nullptr, where, ": '", path, "' has no config");
  try {
    c.config = json::parse(*config);
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
    const MLP& net,
    Prediction prediction,
    const NoiseProcess& process,
    const SaveModelOptions& options) {
  TORCH_CHECK(!net.is_empty(), "save_model: the MLP is empty");
  const auto d = net->options.input_dim();
  auto shape = options.sample_shape();
  if (shape.empty()) {
    shape = {d};
  }
  TORCH_CHECK(
      shape == std::vector<int64_t>{d},
      "save_model: an MLP of input_dim ",
      d,
      " takes samples of shape [",
      d,
      "], got sample_shape ",
      c10::IntArrayRef(shape));
  save_network(
      path, *net, mlp_json(net->options), prediction, process, shape, options);
}

void save_model(
    const std::string& path,
    const UNet& net,
    Prediction prediction,
    const NoiseProcess& process,
    const SaveModelOptions& options) {
  TORCH_CHECK(!net.is_empty(), "save_model: the UNet is empty");
  const auto& shape = options.sample_shape();
  TORCH_CHECK(
      shape.size() == 3 && shape[0] == net->options.in_channels() &&
          shape[1] >= 1 && shape[2] >= 1,
      "save_model: a UNet needs sample_shape {",
      net->options.in_channels(),
      ", H, W}, got ",
      c10::IntArrayRef(shape));
  save_network(
      path, *net, unet_json(net->options), prediction, process, shape, options);
}

LoadedModel load_model(
    const std::string& path, torch::Device device, ModelWeights weights) {
  const char* where = "load_model";
  check_device(device, where);
  auto c = read_checked(path, where);
  std::shared_ptr<const NoiseProcess> process;
  std::shared_ptr<torch::nn::Module> network;
  std::string kind;
  Prediction prediction = Prediction::Epsilon;
  std::vector<int64_t> sample_shape;
  double sigma_data = 0.0;
  DataTransform transform;
  std::optional<Model> model;
  ModelFn raw_fn;  // the bare network, for the preconditioning
  try {
    const auto& cfg = c.config;
    process = process_from_json(cfg.at("process"));
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
    const auto& net = cfg.at("network");
    kind = net.at("kind").get<std::string>();
    if (kind == "mlp") {
      MLP mlp(mlp_from_json(net));
      network = mlp.ptr();
      TORCH_CHECK(
          sample_shape == std::vector<int64_t>{mlp->options.input_dim()},
          "sample_shape ",
          c10::IntArrayRef(sample_shape),
          " does not fit an MLP of input_dim ",
          mlp->options.input_dim());
      raw_fn = [mlp](const torch::Tensor& x, const torch::Tensor& t) mutable {
        return mlp->forward(x, t);
      };
      if (sigma_data == 0) {
        model.emplace(mlp, prediction);
      }
    } else if (kind == "unet") {
      auto opts = unet_from_json(net);
      if (net.at("divide_by_sigma").get<bool>()) {
        opts.marginal_std(
            [process](const torch::Tensor& t) { return process->sigma(t); });
      }
      UNet unet(opts);
      network = unet.ptr();
      TORCH_CHECK(
          sample_shape.size() == 3 && sample_shape[0] == opts.in_channels(),
          "sample_shape ",
          c10::IntArrayRef(sample_shape),
          " does not fit a UNet of in_channels ",
          opts.in_channels());
      raw_fn = [unet](const torch::Tensor& x, const torch::Tensor& t) mutable {
        return unet->forward(x, t);
      };
      if (sigma_data == 0) {
        model.emplace(unet, prediction);
      }
    } else {
      TORCH_CHECK(false, "unknown network kind '", kind, "'");
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
  fill_module(*network, c.file, weights == ModelWeights::Raw, path);
  network->to(device);
  network->eval();
  if (!model) {
    model.emplace(edm_precondition(raw_fn, process, sigma_data));
  }
  bool has_raw = false;
  for (const auto& entry : c.file.tensors) {
    has_raw = has_raw || entry.first.rfind(kRawPrefix, 0) == 0;
  }
  return LoadedModel{
      kind,
      network,
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
