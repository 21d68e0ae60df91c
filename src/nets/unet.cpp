#include "sbgm/nets/unet.h"

#include <torch/nn/functional/activation.h>
#include <torch/nn/functional/conv.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <string>

#include "conditions.h"
#include "internal.h"
#include "sbgm/nets/group_norm_silu.h"

namespace sbgm {

namespace F = torch::nn::functional;

namespace {

torch::nn::Conv2d conv3x3(int64_t in, int64_t out, int64_t stride = 1) {
  return torch::nn::Conv2d(
      torch::nn::Conv2dOptions(in, out, 3).stride(stride).padding(1));
}

torch::nn::Conv2d conv1x1(int64_t in, int64_t out) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 1));
}

torch::nn::GroupNorm group_norm(int64_t groups, int64_t channels) {
  TORCH_CHECK(
      groups > 0 && channels % groups == 0,
      "UNet: GroupNorm groups (",
      groups,
      ") must divide the channel count ",
      channels);
  return torch::nn::GroupNorm(torch::nn::GroupNormOptions(groups, channels));
}

// silu(norm(x)) as one fused operation (group_norm_silu.h).
torch::Tensor gn_silu(
    const torch::nn::GroupNorm& norm, const torch::Tensor& x) {
  const auto& o = norm->options;
  return group_norm_silu(x, o.num_groups(), norm->weight, norm->bias, o.eps());
}

}  // namespace

// ---- residual block ---------------------------------------------------------

UNetResBlockImpl::UNetResBlockImpl(
    int64_t in_channels,
    int64_t out_channels,
    int64_t time_dim,
    int64_t groups,
    double dropout) {
  norm1_ = register_module("norm1", group_norm(groups, in_channels));
  conv1_ = register_module("conv1", conv3x3(in_channels, out_channels));
  time_proj_ =
      register_module("time_proj", torch::nn::Linear(time_dim, out_channels));
  norm2_ = register_module("norm2", group_norm(groups, out_channels));
  dropout_ = register_module("dropout", torch::nn::Dropout(dropout));
  conv2_ = register_module("conv2", conv3x3(out_channels, out_channels));
  if (in_channels != out_channels) {
    skip_ = register_module("skip", conv1x1(in_channels, out_channels));
  }
}

torch::Tensor UNetResBlockImpl::forward(
    const torch::Tensor& x, const torch::Tensor& emb) {
  auto h = conv1_(gn_silu(norm1_, x));
  h = h + time_proj_(emb).unsqueeze(-1).unsqueeze(-1);
  h = conv2_(dropout_(gn_silu(norm2_, h)));
  return h + (skip_ ? skip_(x) : x);
}

bool UNetResBlockImpl::splits_at(int64_t cv) const {
  const auto& o = norm1_->options;
  return cv >= 0 && cv < o.num_channels() &&
         cv % (o.num_channels() / o.num_groups()) == 0;
}

torch::Tensor UNetResBlockImpl::forward_shared(
    const torch::Tensor& varying,
    const torch::Tensor& shared,
    const torch::Tensor& emb,
    int64_t k) {
  const auto& o = norm1_->options;
  const int64_t c_in = o.num_channels();
  const int64_t per_group = c_in / o.num_groups();
  const int64_t cv = varying.defined() ? varying.size(1) : 0;
  TORCH_CHECK(
      splits_at(cv) && shared.size(1) == c_in - cv &&
          (!varying.defined() || varying.size(0) == k * shared.size(0)),
      "UNetResBlock::forward_shared: cannot split ",
      c_in,
      " input channels (",
      o.num_groups(),
      " groups) at ",
      cv,
      " for shapes ",
      varying.defined() ? detail::shape_str(varying) : std::string("[]"),
      " and ",
      detail::shape_str(shared));
  // The input channels [from, from + count) of x: normalized, and their
  // share of conv1 and of the 1x1 skip (bias only where `bias`).
  auto conv1_part = [&](const torch::Tensor& x, int64_t from, bool bias) {
    const auto to = from + x.size(1);
    auto a = group_norm_silu(
        x,
        x.size(1) / per_group,
        norm1_->weight.slice(0, from, to),
        norm1_->bias.slice(0, from, to),
        o.eps());
    return F::conv2d(
        a,
        conv1_->weight.slice(1, from, to),
        F::Conv2dFuncOptions().padding(1).bias(
            bias ? conv1_->bias : torch::Tensor()));
  };
  auto skip_part = [&](const torch::Tensor& x, int64_t from, bool bias) {
    return F::conv2d(
        x,
        skip_->weight.slice(1, from, from + x.size(1)),
        F::Conv2dFuncOptions().bias(bias ? skip_->bias : torch::Tensor()));
  };
  // varying [K N, ...] + shared [N, ...], the shared one broadcast over K.
  auto add_shared = [k](const torch::Tensor& v, const torch::Tensor& sh) {
    if (!v.defined()) {
      return detail::repeat_batch(sh, k);
    }
    auto shape = sh.sizes().vec();
    shape.insert(shape.begin(), k);
    return (v.reshape(shape) + sh.unsqueeze(0)).reshape(v.sizes());
  };
  auto h = add_shared(
      cv > 0 ? conv1_part(varying, 0, false) : torch::Tensor(),
      conv1_part(shared, cv, true));
  h = h + time_proj_(emb).unsqueeze(-1).unsqueeze(-1);
  h = conv2_(dropout_(gn_silu(norm2_, h)));
  torch::Tensor residual;
  if (skip_) {
    residual = add_shared(
        cv > 0 ? skip_part(varying, 0, false) : torch::Tensor(),
        skip_part(shared, cv, true));
  } else {
    residual = add_shared(torch::Tensor(), shared);
    if (cv > 0) {
      residual = torch::cat({varying, residual}, 1);
    }
  }
  return h + residual;
}

// ---- attention --------------------------------------------------------------

UNetAttentionImpl::UNetAttentionImpl(int64_t channels, int64_t groups) {
  norm_ = register_module("norm", group_norm(groups, channels));
  qkv_ = register_module("qkv", conv1x1(channels, 3 * channels));
  proj_ = register_module("proj", conv1x1(channels, channels));
}

torch::Tensor UNetAttentionImpl::forward(const torch::Tensor& x) {
  const auto n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  // reshape (not view): channels-last inputs are not contiguous in NCHW.
  auto qkv = qkv_(norm_(x)).reshape({n, 3, c, h * w});
  auto q = qkv.select(1, 0), k = qkv.select(1, 1), v = qkv.select(1, 2);
  // weights[n, i, j] = softmax_j(q_i . k_j / sqrt(c))
  auto weights = torch::softmax(
      torch::bmm(q.transpose(1, 2), k) / std::sqrt(static_cast<double>(c)), -1);
  auto out = torch::bmm(v, weights.transpose(1, 2)).reshape({n, c, h, w});
  return x + proj_(out);
}

// ---- U-Net ------------------------------------------------------------------

UNetImpl::UNetImpl(const UNetOptions& options_) : options(options_) {
  reset();
}

void UNetImpl::reset() {
  const auto& o = options;
  const auto& ch = o.channels();
  TORCH_CHECK(
      o.in_channels() > 0,
      "UNet: in_channels must be positive, got ",
      o.in_channels());
  TORCH_CHECK(!ch.empty(), "UNet: channels must have at least one level");
  for (size_t i = 0; i < ch.size(); ++i) {
    TORCH_CHECK(
        ch[i] > 0, "UNet: channels[", i, "] must be positive, got ", ch[i]);
    TORCH_CHECK(
        o.groups() > 0 && ch[i] % o.groups() == 0,
        "UNet: groups (",
        o.groups(),
        ") must divide channels[",
        i,
        "] = ",
        ch[i]);
  }
  TORCH_CHECK(
      o.num_res_blocks() >= 1,
      "UNet: num_res_blocks must be at least 1, got ",
      o.num_res_blocks());
  TORCH_CHECK(
      o.dropout() >= 0.0 && o.dropout() < 1.0,
      "UNet: dropout must be in [0, 1), got ",
      o.dropout());
  TORCH_CHECK(
      o.time_dim() > 0, "UNet: time_dim must be positive, got ", o.time_dim());
  const auto levels = static_cast<int64_t>(ch.size());
  for (auto a : o.attention_levels()) {
    TORCH_CHECK(
        a >= 0 && a < levels,
        "UNet: attention level ",
        a,
        " is out of range for ",
        levels,
        " levels");
  }

  down_.clear();
  up_.clear();
  downsample_.clear();
  upsample_.clear();

  const auto td = o.time_dim();
  embed_ = register_module(
      "embed",
      TimeEmbedding(TimeEmbeddingOptions(o.time_embedding(), td)
                        .num_timesteps(o.num_timesteps())
                        .fourier_scale(o.fourier_scale())
                        .time_scale(o.time_scale())));
  time_fc1_ = register_module("time_fc1", torch::nn::Linear(td, td));
  time_fc2_ = register_module("time_fc2", torch::nn::Linear(td, td));
  TORCH_CHECK(
      o.num_classes() >= 0,
      "UNet: num_classes must be >= 0, got ",
      o.num_classes());
  TORCH_CHECK(
      o.class_dropout() >= 0 && o.class_dropout() <= 1,
      "UNet: class_dropout must lie in [0, 1], got ",
      o.class_dropout());
  if (o.num_classes() > 0) {
    class_embed_ = register_module(
        "class_embed", torch::nn::Embedding(o.num_classes() + 1, td));
    torch::NoGradGuard no_grad;
    class_embed_->weight.zero_();  // the net starts unconditional
  }
  conv_in_ = register_module("conv_in", conv3x3(o.in_channels(), ch[0]));

  auto has_attn = [&](int64_t level) {
    const auto& al = o.attention_levels();
    return std::find(al.begin(), al.end(), level) != al.end();
  };
  auto name = [](const char* prefix, int64_t i, int64_t j) {
    return std::string(prefix) + std::to_string(i) + "_" + std::to_string(j);
  };

  int64_t c_prev = ch[0];
  for (int64_t i = 0; i < levels; ++i) {
    Level level;
    for (int64_t b = 0; b < o.num_res_blocks(); ++b) {
      level.blocks.push_back(register_module(
          name("down_block", i, b),
          UNetResBlock(c_prev, ch[i], td, o.groups(), o.dropout())));
      c_prev = ch[i];
      if (has_attn(i)) {
        level.attn.push_back(register_module(
            name("down_attn", i, b), UNetAttention(ch[i], o.groups())));
      }
    }
    down_.push_back(std::move(level));
    if (i + 1 < levels) {
      downsample_.push_back(register_module(
          "downsample" + std::to_string(i), conv3x3(ch[i], ch[i], 2)));
    }
  }

  const auto c_mid = ch.back();
  mid1_ = register_module(
      "mid1", UNetResBlock(c_mid, c_mid, td, o.groups(), o.dropout()));
  if (o.mid_attention()) {
    mid_attn_ = register_module("mid_attn", UNetAttention(c_mid, o.groups()));
  }
  mid2_ = register_module(
      "mid2", UNetResBlock(c_mid, c_mid, td, o.groups(), o.dropout()));

  // Up path, built from the bottom level to the top; stored by level index.
  up_.resize(static_cast<size_t>(levels));
  upsample_.assign(
      static_cast<size_t>(levels), torch::nn::ConvTranspose2d(nullptr));
  c_prev = c_mid;
  for (int64_t i = levels - 1; i >= 0; --i) {
    if (i + 1 < levels) {
      // 3x3, stride 2, padding 1; the output padding (0 or 1) is chosen in
      // forward so that the output has the skip tensor's size.
      upsample_[i] = register_module(
          "upsample" + std::to_string(i),
          torch::nn::ConvTranspose2d(
              torch::nn::ConvTranspose2dOptions(c_prev, ch[i], 3)
                  .stride(2)
                  .padding(1)));
      c_prev = ch[i];
    }
    Level& level = up_[static_cast<size_t>(i)];
    for (int64_t b = 0; b < o.num_res_blocks(); ++b) {
      // The first block takes the skip tensor concatenated to the input.
      const auto c_in = b == 0 ? c_prev + ch[i] : ch[i];
      level.blocks.push_back(register_module(
          name("up_block", i, b),
          UNetResBlock(c_in, ch[i], td, o.groups(), o.dropout())));
      if (has_attn(i)) {
        level.attn.push_back(register_module(
            name("up_attn", i, b), UNetAttention(ch[i], o.groups())));
      }
    }
    c_prev = ch[i];
  }

  norm_out_ = register_module("norm_out", group_norm(o.groups(), ch[0]));
  conv_out_ = register_module("conv_out", conv3x3(ch[0], o.in_channels()));
}

int64_t UNetImpl::discrete_steps() const {
  return options.time_embedding() == TimeEmbeddingKind::Learned
             ? options.num_timesteps()
             : 0;
}

torch::Tensor UNetImpl::checked_time(
    const torch::Tensor& x, const torch::Tensor& t) {
  const char* where = "UNet";
  detail::check_floating(x, "x", where);
  TORCH_CHECK(
      x.dim() == 4,
      "UNet: x must be [N, C, H, W], got shape ",
      detail::shape_str(x));
  TORCH_CHECK(
      x.size(1) == options.in_channels(),
      "UNet: x has ",
      x.size(1),
      " channels but the net was built for in_channels = ",
      options.in_channels());
  TORCH_CHECK(
      x.size(0) > 0 && x.size(2) > 0 && x.size(3) > 0,
      "UNet: x must be non-empty, got shape ",
      detail::shape_str(x));
  TORCH_CHECK(t.defined(), "UNet: t is an undefined tensor");
  TORCH_CHECK(
      t.dim() == 0 || (t.dim() == 1 && t.size(0) == x.size(0)),
      "UNet: t must be 0-dim or have one entry per sample, got shape ",
      detail::shape_str(t),
      " for a batch of ",
      x.size(0));
  detail::check_same_device(t, "t", x, "x", where);

  auto tt = t.dim() == 0 ? t.expand({x.size(0)}) : t;
  if (options.time_embedding() == TimeEmbeddingKind::Learned) {
    TORCH_CHECK(
        !tt.is_floating_point(),
        "UNet: a learned time embedding takes integer step indices, got t "
        "of dtype ",
        tt.scalar_type());
  } else if (!tt.is_floating_point()) {
    tt = tt.to(x.scalar_type());
  }
  return tt;
}

torch::Tensor UNetImpl::time_embedding(const torch::Tensor& tt) {
  return time_fc2_(F::silu(time_fc1_(embed_(tt))));
}

torch::Tensor UNetImpl::class_embedding(
    const torch::Tensor& cond, const torch::Tensor& x) {
  return class_embed_(detail::class_labels(
      cond,
      x,
      options.num_classes(),
      is_training() ? options.class_dropout() : 0,
      "UNet"));
}

torch::Tensor UNetImpl::down(
    const torch::Tensor& x,
    const torch::Tensor& emb,
    std::vector<torch::Tensor>& skips) {
  auto h = conv_in_(x);
  const auto levels = down_.size();
  for (size_t i = 0; i < levels; ++i) {
    auto& level = down_[i];
    for (size_t b = 0; b < level.blocks.size(); ++b) {
      h = level.blocks[b](h, emb);
      if (!level.attn.empty()) {
        h = level.attn[b](h);
      }
    }
    skips.push_back(h);
    if (i + 1 < levels) {
      h = downsample_[i](h);
    }
  }

  h = mid1_(h, emb);
  if (mid_attn_) {
    h = mid_attn_(h);
  }
  return mid2_(h, emb);
}

torch::Tensor UNetImpl::upsample(
    size_t k, const torch::Tensor& h, const torch::Tensor& skip) const {
  // Level k has size ceil(s / 2) below it, so the transposed conv's
  // 2 h - 1 + output_padding reaches s with output_padding in {0, 1}.
  const auto& conv = upsample_[k];
  return F::conv_transpose2d(
      h,
      conv->weight,
      F::ConvTranspose2dFuncOptions()
          .bias(conv->bias)
          .stride(2)
          .padding(1)
          .output_padding(std::vector<int64_t>{
              skip.size(2) - (2 * h.size(2) - 1),
              skip.size(3) - (2 * h.size(3) - 1)}));
}

torch::Tensor UNetImpl::up(
    torch::Tensor h,
    const std::vector<torch::Tensor>& skips,
    const torch::Tensor& emb) {
  const auto levels = up_.size();
  for (size_t k = levels; k-- > 0;) {
    const auto& skip = skips[k];
    if (k + 1 < levels) {
      h = upsample(k, h, skip);
    }
    auto& level = up_[k];
    for (size_t b = 0; b < level.blocks.size(); ++b) {
      h = level.blocks[b](b == 0 ? torch::cat({h, skip}, 1) : h, emb);
      if (!level.attn.empty()) {
        h = level.attn[b](h);
      }
    }
  }
  return conv_out_(gn_silu(norm_out_, h));
}

torch::Tensor UNetImpl::up_shared(
    const torch::Tensor& h_mid,
    const std::vector<torch::Tensor>& skips,
    const torch::Tensor& emb,
    int64_t k) {
  // Before the first block everything is shared; the first block's class
  // embedding makes h differ between the conditions, while each level's
  // skip tensor stays shared.
  torch::Tensor h;  // [K N, ...]
  const auto levels = up_.size();
  for (size_t l = levels; l-- > 0;) {
    const auto& skip = skips[l];
    auto& level = up_[l];
    for (size_t b = 0; b < level.blocks.size(); ++b) {
      auto& block = level.blocks[b];
      if (b > 0) {
        h = block(h, emb);
      } else if (!h.defined()) {
        h = block->forward_shared({}, torch::cat({h_mid, skip}, 1), emb, k);
      } else {
        h = upsample(l, h, skip);
        if (block->splits_at(h.size(1))) {
          h = block->forward_shared(h, skip, emb, k);
        } else {
          h = block(torch::cat({h, detail::repeat_batch(skip, k)}, 1), emb);
        }
      }
      if (!level.attn.empty()) {
        h = level.attn[b](h);
      }
    }
  }
  return conv_out_(gn_silu(norm_out_, h));
}

torch::Tensor UNetImpl::scaled(
    const torch::Tensor& out, const torch::Tensor& t) {
  if (!options.marginal_std()) {
    return out;
  }
  auto s = options.marginal_std()(t);
  TORCH_CHECK(
      s.defined() &&
          (s.dim() == 0 || (s.dim() == 1 && s.size(0) == out.size(0))),
      "UNet: marginal_std(t) must return a 0-dim tensor or one value per "
      "sample, got shape ",
      s.defined() ? detail::shape_str(s) : std::string("undefined"));
  return out / detail::batch_view(s.to(out.scalar_type()), out);
}

torch::Tensor UNetImpl::forward(
    const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& cond) {
  const auto tt = checked_time(x, t);
  const auto time_emb = time_embedding(tt);
  auto emb = time_emb;
  if (options.num_classes() > 0) {
    emb = time_emb + class_embedding(cond, x);
  } else {
    TORCH_CHECK(
        !cond.defined(),
        "UNet: a condition was given to a net built with num_classes = 0");
  }
  std::vector<torch::Tensor> skips;
  auto h = down(x, options.class_up_path_only() ? time_emb : emb, skips);
  return scaled(up(h, skips, emb), t);
}

std::vector<torch::Tensor> UNetImpl::forward_conditions(
    const torch::Tensor& x,
    const torch::Tensor& t,
    const std::vector<torch::Tensor>& conds) {
  TORCH_CHECK(
      options.num_classes() > 0,
      "UNet::forward_conditions: the net was built with num_classes = 0");
  TORCH_CHECK(!conds.empty(), "UNet::forward_conditions: no condition given");
  const auto k = static_cast<int64_t>(conds.size());
  const auto tt = checked_time(x, t);
  const int64_t n = x.size(0);
  for (size_t i = 0; i < conds.size(); ++i) {
    TORCH_CHECK(
        conds[i].defined() && conds[i].dim() >= 1 && conds[i].size(0) == n,
        "UNet::forward_conditions: condition ",
        i,
        " has shape ",
        conds[i].defined() ? detail::shape_str(conds[i])
                           : std::string("undefined"),
        "; each needs one label per sample (",
        n,
        ") or the null class ",
        options.num_classes());
  }
  if (!options.class_up_path_only()) {
    // Every block sees the class: one forward over K copies of x.
    return detail::batched_conditions(
        x,
        t,
        conds,
        [this](
            const torch::Tensor& xk,
            const torch::Tensor& tk,
            const torch::Tensor& ck) { return forward(xk, tk, ck); });
  }
  const auto time_emb = time_embedding(tt);
  std::vector<torch::Tensor> class_embs;
  for (const auto& c : conds) {
    class_embs.push_back(class_embedding(c, x));
  }
  std::vector<torch::Tensor> skips;
  auto h = down(x, time_emb, skips);
  auto emb = detail::repeat_batch(time_emb, k) + torch::cat(class_embs);
  auto out = up_shared(h, skips, emb, k);
  std::vector<torch::Tensor> outs;
  outs.reserve(conds.size());
  for (int64_t i = 0; i < k; ++i) {
    outs.push_back(scaled(out.slice(0, i * n, (i + 1) * n), t));
  }
  return outs;
}

// ---- config ---------------------------------------------------------------

Config to_config(const UNetOptions& o) {
  return {
      {"name", "unet"},
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

UNetOptions unet_options_from_config(const Config& j) {
  const UNetOptions d(j.at("in_channels").get<int64_t>());
  return UNetOptions(d.in_channels())
      .channels(j.value("channels", d.channels()))
      .num_res_blocks(j.value("num_res_blocks", d.num_res_blocks()))
      .groups(j.value("groups", d.groups()))
      .attention_levels(j.value("attention_levels", d.attention_levels()))
      .mid_attention(j.value("mid_attention", d.mid_attention()))
      .dropout(j.value("dropout", d.dropout()))
      .time_embedding(time_embedding_kind_from_string(
          j.value("time_embedding", to_string(d.time_embedding()))))
      .time_dim(j.value("time_dim", d.time_dim()))
      .num_timesteps(j.value("num_timesteps", d.num_timesteps()))
      .fourier_scale(j.value("fourier_scale", d.fourier_scale()))
      .time_scale(j.value("time_scale", d.time_scale()))
      .num_classes(j.value("num_classes", d.num_classes()))
      .class_dropout(j.value("class_dropout", d.class_dropout()))
      .class_up_path_only(
          j.value("class_up_path_only", d.class_up_path_only()));
}

Network to_network(const UNet& net) {
  TORCH_CHECK(!net.is_empty(), "to_network: the UNet is empty");
  auto n = make_network(
      "unet", std::make_shared<const Config>(to_config(net->options)), net);
  const int64_t c = net->options.in_channels();
  n.sample_shape = [c](const std::vector<int64_t>& shape) {
    TORCH_CHECK(
        shape.size() == 3 && shape[0] == c && shape[1] >= 1 && shape[2] >= 1,
        "a UNet needs sample_shape {",
        c,
        ", H, W}, got ",
        c10::IntArrayRef(shape));
    return shape;
  };
  return n;
}

}  // namespace sbgm
