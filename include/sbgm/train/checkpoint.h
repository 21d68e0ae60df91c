#pragma once

/// \file
/// Training checkpoints: model, EMA, optimizer state, step and RNG state in
/// one file (a torch::serialize archive).
///
/// Saving writes `path + ".tmp"`, flushes it to disk and renames it over
/// `path`, so a crash or kill during a save leaves the previous checkpoint
/// intact. Loading checks a magic string, the format version and a
/// fingerprint of the model (parameter and buffer names and shapes) before
/// touching anything, and refuses a damaged, foreign or mismatched file with
/// a c10::Error that names the file and the problem.

#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>
#include <torch/types.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace sbgm {

class EMA;
class Optimizer;

/// Format version written by save_checkpoint.
constexpr int64_t kCheckpointVersion = 1;

/// "name [shape]" of every parameter and buffer, one per line, in
/// registration order: two modules with equal fingerprints can exchange
/// state.
std::string model_fingerprint(const torch::nn::Module& module);

/// What a checkpoint file holds (read without loading the weights).
struct CheckpointInfo {
  int64_t version = 0;
  /// Optimizer steps taken when it was saved.
  int64_t step = 0;
  std::string fingerprint;
  bool has_optimizer = false;
  bool has_ema = false;
  bool has_rng = false;
  /// Names of the extra states (see ExtraState), in saved order.
  std::vector<std::string> extra_names;
};

/// Named tensors saved beside the model: the state of anything else a run
/// draws from or walks through (a data sampler's generator, its epoch and
/// position), so that a resumed run continues bit for bit.
using ExtraState = std::vector<std::pair<std::string, torch::Tensor>>;

/// Saves a checkpoint atomically (see the file comment). `optimizer` and
/// `ema` may be null. With `save_rng`, the states of the default CPU
/// generator and of every CUDA device's default generator are stored too,
/// so that a resumed run draws the same numbers (generators that the caller
/// created itself are not saved: pass their states in `extra`).
///
/// A write that fails (disk full, file size limit, unwritable directory)
/// throws a c10::Error naming the file and the system's reason, and leaves
/// the previous checkpoint at `path` as it was.
void save_checkpoint(
    const std::string& path,
    const torch::nn::Module& module,
    int64_t step,
    const torch::optim::Optimizer* optimizer = nullptr,
    const EMA* ema = nullptr,
    bool save_rng = true,
    const ExtraState& extra = {});

/// save_checkpoint with an sbgm::Optimizer (sbgm/optim/optimizer.h): its
/// save() writes the optimizer's state (for a TorchOptimizer the same bytes
/// as the overload above).
void save_checkpoint(
    const std::string& path,
    const torch::nn::Module& module,
    int64_t step,
    const Optimizer& optimizer,
    const EMA* ema = nullptr,
    bool save_rng = true,
    const ExtraState& extra = {});

/// Reads the header of a checkpoint; throws if it is not a readable sbgm
/// checkpoint.
CheckpointInfo read_checkpoint_info(const std::string& path);

/// Restores a checkpoint into existing objects built like the saved ones and
/// returns the saved step. Tensors are loaded onto the module's device. The
/// model must match the saved fingerprint (else the error names the first
/// differing parameter); a non-null `optimizer` / `ema` must have been saved.
/// With `restore_rng`, the saved generator states are restored (CUDA states
/// only for devices present now). Nothing is modified unless the whole file
/// reads correctly... except that a failure inside the optimizer's own
/// loader can leave the optimizer half-loaded.
///
/// `extra` names the extra states wanted back (the tensors given are
/// ignored); each must be in the file (else the error names it) and is
/// replaced by the saved tensor (on the CPU).
int64_t load_checkpoint(
    const std::string& path,
    torch::nn::Module& module,
    torch::optim::Optimizer* optimizer = nullptr,
    EMA* ema = nullptr,
    bool restore_rng = true,
    ExtraState* extra = nullptr);

/// load_checkpoint into an sbgm::Optimizer (sbgm/optim/optimizer.h), whose
/// load() reads back what its save() wrote.
int64_t load_checkpoint(
    const std::string& path,
    torch::nn::Module& module,
    Optimizer& optimizer,
    EMA* ema = nullptr,
    bool restore_rng = true,
    ExtraState* extra = nullptr);

/// Loads only the weights for sampling: the EMA average when the file has
/// one and `prefer_ema` is set, else the trained weights. Returns the step.
int64_t load_weights(
    const std::string& path, torch::nn::Module& module, bool prefer_ema = true);

}  // namespace sbgm
