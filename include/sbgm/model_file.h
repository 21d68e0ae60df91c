#pragma once

/// \file
/// A trained model in one file: the network's kind and options, what it
/// predicts, the noise process with its parameters, the weights to sample
/// with (the EMA average when there is one) and, optionally, the trained
/// weights and training figures.
///
/// The file is a safetensors file (sbgm/io/safetensors.h), so PyTorch
/// reads the weights directly; the configuration is JSON in the header's
/// `__metadata__`:
///   "format": "sbgm.model", "format_version": "2",
///   "config": {"network": {"name": ..., ...}, "prediction": "epsilon",
///              "process": {"name": ..., ...}, "sample_shape": [...],
///              "data_transform": {...}},
///   "training": {"step": ..., "train_seconds": ..., "final_loss": ...},
///   "data_crc32": CRC-32 of the data section (zlib.crc32),
///   "header_crc32": CRC-32 of the header's content (below).
/// The network and the process are stored as their configs and rebuilt
/// through network_registry() and process_registry(), so any registered
/// network or process (a user's own too) is saved and loaded by name.
///
/// header_crc32 covers every other metadata entry and the tensor table: it
/// is the CRC-32 of the compact JSON (nlohmann's dump(), keys sorted)
///   {"metadata": {every __metadata__ entry but header_crc32},
///    "tensors": [[name, dtype, shape], ... in the order of the data]}
/// with dtype as c10::toString names it ("Float"). A change to any byte of
/// the config, the version or a tensor's entry is refused, never loaded as
/// another model. Format version 1 (no header_crc32, the network's and the
/// process's "kind" for "name") is still read.
/// The tensors the network samples with carry its state_dict names
/// ("layers.0.weight", "embeddings.0.table.weight", "down_block0_0.conv1.
/// weight", ...; bench/peer.py's PyTorch mirrors use the same names); the
/// trained weights, when an EMA replaced them, are stored as
/// "raw.<name>".
///
/// Writes are atomic (a temporary file, flushed, then renamed). Loading
/// refuses with an error that names the file and the problem: a truncated
/// file, a header length past the end, a header that is not safetensors
/// (wrong magic), a foreign safetensors file, a newer format version, a
/// checksum mismatch, a tensor whose bytes overrun the data, a missing or
/// unexpected tensor, and a config whose network's shapes differ from the
/// weights'.

#include <torch/arg.h>
#include <torch/nn/module.h>
#include <torch/types.h>

#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "sbgm/model.h"
#include "sbgm/network.h"
#include "sbgm/process.h"

namespace sbgm {

class EMA;

/// The model-file format version save_model writes (and the newest that
/// load_model reads).
constexpr int64_t kModelFormatVersion = 2;

/// Figures of the training run, stored with the model.
struct TrainingInfo {
  /// Optimizer steps taken.
  int64_t step = 0;
  /// Wall-clock seconds spent training (over every resumed part).
  double train_seconds = 0.0;
  /// The last logged mean loss (NaN when unknown).
  double final_loss = std::numeric_limits<double>::quiet_NaN();
};

/// The map from the model's samples to the data's own scale, stored with
/// the model so that every program that samples it writes the same data:
/// y = x * scale + shift (shift per entry of dimension 1, or empty for 0),
/// then clamped to [clamp_min, clamp_max] when clamp is set.
///
/// Example (images trained in [-1, 1], written in [0, 1]):
/// `DataTransform().scale(0.5).shift({0.5}).clamp(true)`
struct DataTransform {
  /// The map applied to samples x [N, ...] (a new tensor of x's dtype).
  torch::Tensor apply(const torch::Tensor& x) const;

  /// Default: 1.
  TORCH_ARG(double, scale) = 1.0;
  /// One value, or one per entry of dimension 1. Default: {} (none).
  TORCH_ARG(std::vector<double>, shift) = {};
  /// Clamp to [clamp_min, clamp_max]. Default: false.
  TORCH_ARG(bool, clamp) = false;
  /// Defaults: 0, 1.
  TORCH_ARG(double, clamp_min) = 0.0;
  TORCH_ARG(double, clamp_max) = 1.0;
};

/// Example: `SaveModelOptions().sample_shape({1, 28, 28}).ema(trainer.ema())`
struct SaveModelOptions {
  using EMAPtr = const EMA*;
  /// Shape of one sample, without the batch. Default: {} ({input_dim} for
  /// an MLP; required for a UNet).
  TORCH_ARG(std::vector<int64_t>, sample_shape) = {};
  /// When set, its averages are stored as the network's weights (what
  /// load_model samples with) and the module's own weights as "raw.<name>".
  /// Default: null (the module's weights).
  TORCH_ARG(EMAPtr, ema) = nullptr;
  /// With an EMA, also store the trained weights ("raw.<name>").
  /// Default: true.
  TORCH_ARG(bool, save_raw) = true;
  /// EDM's preconditioning (sbgm::edm_precondition) wraps the network:
  /// its sigma_data, > 0; 0 for none. Default: 0.
  TORCH_ARG(double, edm_sigma_data) = 0.0;
  /// From the model's samples to the data. Default: the identity.
  TORCH_ARG(DataTransform, data_transform) = {};
  /// Training figures to store. Default: none.
  TORCH_ARG(std::optional<TrainingInfo>, training) = std::nullopt;
};

/// Saves a registered network (sbgm/network.h) with its prediction type
/// and noise process; both are stored as their configs, so each must be
/// registered by the name its config gives (process_registry(),
/// network_registry()). The sample shape is the network's (an MLP's
/// [input_dim] when none is given; a UNet needs one).
void save_model(
    const std::string& path,
    const Network& net,
    Prediction prediction,
    const NoiseProcess& process,
    const SaveModelOptions& options = {});
/// Saves any network with a `to_network(net)` (sbgm::MLP, sbgm::UNet, or a
/// user's network that provides one). A UNet whose options have a
/// marginal_std is stored as dividing its output by the process's sigma(t)
/// (the only marginal_std that can be stored), and load_model rebuilds it
/// so.
template <class Net, class = decltype(to_network(std::declval<const Net&>()))>
void save_model(
    const std::string& path,
    const Net& net,
    Prediction prediction,
    const NoiseProcess& process,
    const SaveModelOptions& options = {}) {
  save_model(path, to_network(net), prediction, process, options);
}

/// Which weights load_model puts into the network.
enum class ModelWeights {
  /// The stored network weights (the EMA average when one was saved).
  Sampling,
  /// The trained weights ("raw.<name>"; an error when absent).
  Raw,
};

/// What load_model returns.
struct LoadedModel {
  /// The network's registry name ("mlp", "unet" or a user's).
  std::string network_kind;
  /// The network (an sbgm::MLPImpl, sbgm::UNetImpl or a user's module), on
  /// the device, in eval mode.
  std::shared_ptr<torch::nn::Module> network;
  /// The network's config, as stored (with "name").
  std::shared_ptr<const Config> network_config;
  /// The network as a model (preconditioned when it was saved so).
  Model model;
  /// The noise process.
  std::shared_ptr<const NoiseProcess> process;
  /// Shape of one sample.
  std::vector<int64_t> sample_shape;
  /// From the model's samples to the data.
  DataTransform data_transform;
  /// Training figures, when saved.
  std::optional<TrainingInfo> training;
  /// True when the file holds the trained weights besides an EMA.
  bool has_raw = false;
  /// The format version of the file.
  int64_t format_version = 0;
};

/// Loads a model file onto `device`; see the file comment for the errors.
LoadedModel load_model(
    const std::string& path,
    torch::Device device = torch::kCPU,
    ModelWeights weights = ModelWeights::Sampling);

/// The training figures of a model file (none when it holds none); the
/// file is checked as load_model checks it.
std::optional<TrainingInfo> read_training_info(const std::string& path);

}  // namespace sbgm
