#pragma once

/// \file
/// Minibatch indices for data-parallel training: each epoch a permutation
/// of the data set drawn from seed + epoch, split into disjoint shards, one
/// per rank (as PyTorch's DistributedSampler: rank r takes positions r,
/// r + W, r + 2W, ... of the permutation, W the world size).
///
/// With world size 1 it is a shuffling batch sampler. Batch k of rank r is
/// positions [k B, (k + 1) B) of its shard, so the batches of all ranks at
/// one step are, together, positions [k W B, (k + 1) W B) of the
/// permutation: the batch a single process with batch W B would draw.

#include <torch/arg.h>
#include <torch/types.h>

#include <cstdint>

namespace sbgm::data {

/// Example: `ShardSampler s(ShardSamplerOptions(60000, 32).rank(1)
/// .world_size(2).seed(7));`
struct ShardSamplerOptions {
  ShardSamplerOptions(int64_t size, int64_t batch);
  /// Number of items in the data set.
  TORCH_ARG(int64_t, size);
  /// Items per batch on each rank.
  TORCH_ARG(int64_t, batch);
  /// This process's rank. Default: 0.
  TORCH_ARG(int64_t, rank) = 0;
  /// Number of ranks. Default: 1.
  TORCH_ARG(int64_t, world_size) = 1;
  /// Epoch e's permutation is drawn from a generator seeded seed + e (the
  /// same on every rank). Default: 0.
  TORCH_ARG(uint64_t, seed) = 0;
  /// false: the identity order every epoch. Default: true.
  TORCH_ARG(bool, shuffle) = true;
};

/// Draws index batches (int64 tensors on the CPU) epoch after epoch; the
/// last batch of an epoch that would be short is dropped, so every rank
/// takes the same number of batches per epoch: floor(floor(size / W) / B).
class ShardSampler {
 public:
  explicit ShardSampler(ShardSamplerOptions options);

  /// The next batch of `batch` indices of this rank's shard.
  torch::Tensor next();
  /// Batches per epoch.
  int64_t batches_per_epoch() const {
    return batches_per_epoch_;
  }
  /// The epoch of the next batch.
  int64_t epoch() const {
    return epoch_;
  }
  /// Its position within the epoch (in batches).
  int64_t position() const {
    return position_;
  }
  /// This rank's shard of epoch `epoch`, in order (floor(size / W) indices).
  torch::Tensor shard(int64_t epoch) const;

  /// (epoch, position) as an int64 tensor of 2, for checkpoints: the
  /// permutation follows from seed and epoch, so that is all it needs.
  torch::Tensor state() const;
  /// Restores state(); checks it.
  void load_state(const torch::Tensor& state);

  const ShardSamplerOptions& options() const {
    return options_;
  }

 private:
  ShardSamplerOptions options_;
  int64_t batches_per_epoch_;
  int64_t epoch_ = 0;
  int64_t position_ = 0;
  torch::Tensor shard_;  // of epoch_
  int64_t shard_epoch_ = -1;
};

}  // namespace sbgm::data
