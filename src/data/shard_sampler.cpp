#include "sbgm/data/shard_sampler.h"

#include "sbgm/random.h"

namespace sbgm::data {

ShardSamplerOptions::ShardSamplerOptions(int64_t size, int64_t batch)
    : size_(size), batch_(batch) {}

ShardSampler::ShardSampler(ShardSamplerOptions options)
    : options_(std::move(options)) {
  const auto& o = options_;
  TORCH_CHECK(
      o.world_size() >= 1,
      "ShardSampler: world_size must be >= 1, got ",
      o.world_size());
  TORCH_CHECK(
      o.rank() >= 0 && o.rank() < o.world_size(),
      "ShardSampler: rank must lie in [0, ",
      o.world_size(),
      "), got ",
      o.rank());
  TORCH_CHECK(
      o.batch() >= 1, "ShardSampler: batch must be >= 1, got ", o.batch());
  TORCH_CHECK(
      o.size() >= o.world_size() * o.batch(),
      "ShardSampler: a data set of ",
      o.size(),
      " items cannot give ",
      o.world_size(),
      " ranks a batch of ",
      o.batch(),
      " each");
  batches_per_epoch_ = (o.size() / o.world_size()) / o.batch();
}

torch::Tensor ShardSampler::shard(int64_t epoch) const {
  TORCH_CHECK(epoch >= 0, "ShardSampler: epoch must be >= 0, got ", epoch);
  const auto& o = options_;
  const int64_t per_rank = o.size() / o.world_size();
  torch::Tensor order;
  if (o.shuffle()) {
    order = torch::randperm(
        o.size(),
        make_generator(o.seed() + static_cast<uint64_t>(epoch)),
        torch::TensorOptions().dtype(torch::kLong));
  } else {
    order = torch::arange(o.size(), torch::kLong);
  }
  // Positions r, r + W, ... of the first W * per_rank entries.
  return order.slice(0, 0, per_rank * o.world_size())
      .view({per_rank, o.world_size()})
      .select(1, o.rank())
      .contiguous();
}

torch::Tensor ShardSampler::next() {
  if (position_ >= batches_per_epoch_) {
    ++epoch_;
    position_ = 0;
  }
  if (shard_epoch_ != epoch_) {
    shard_ = shard(epoch_);
    shard_epoch_ = epoch_;
  }
  const int64_t b = options_.batch();
  auto out = shard_.slice(0, position_ * b, (position_ + 1) * b).clone();
  ++position_;
  return out;
}

torch::Tensor ShardSampler::state() const {
  return torch::tensor({epoch_, position_}, torch::kLong);
}

void ShardSampler::load_state(const torch::Tensor& state) {
  TORCH_CHECK(
      state.defined() && state.numel() == 2 &&
          state.scalar_type() == torch::kLong,
      "ShardSampler: a state is an int64 tensor of 2 (epoch, position), got ",
      state.defined()
          ? state.toString() + " of " + std::to_string(state.numel())
          : std::string("an undefined tensor"));
  const auto s = state.to(torch::kCPU);
  const int64_t e = s[0].item<int64_t>(), p = s[1].item<int64_t>();
  TORCH_CHECK(
      e >= 0 && p >= 0 && p <= batches_per_epoch_,
      "ShardSampler: state (epoch ",
      e,
      ", position ",
      p,
      ") does not fit ",
      batches_per_epoch_,
      " batches per epoch");
  epoch_ = e;
  position_ = p;
}

}  // namespace sbgm::data
