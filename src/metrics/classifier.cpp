#include "sbgm/metrics/classifier.h"

#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/GradMode.h>
#include <torch/nn/functional/activation.h>
#include <torch/nn/functional/loss.h>
#include <torch/nn/functional/pooling.h>
#include <torch/optim/adam.h>

#include <cmath>
#include <vector>

#include "internal.h"

namespace sbgm {

namespace F = torch::nn::functional;

DigitClassifierImpl::DigitClassifierImpl(const DigitClassifierOptions& o)
    : options(o) {
  reset();
}

void DigitClassifierImpl::reset() {
  const auto& o = options;
  TORCH_CHECK(
      o.in_channels() > 0 && o.conv1_channels() > 0 && o.conv2_channels() > 0 &&
          o.hidden() > 0 && o.num_classes() > 1,
      "DigitClassifier: channel counts and hidden must be positive and "
      "num_classes > 1, got in_channels ",
      o.in_channels(),
      ", conv1 ",
      o.conv1_channels(),
      ", conv2 ",
      o.conv2_channels(),
      ", hidden ",
      o.hidden(),
      ", num_classes ",
      o.num_classes());
  TORCH_CHECK(
      o.dropout() >= 0.0 && o.dropout() < 1.0,
      "DigitClassifier: dropout must be in [0, 1), got ",
      o.dropout());
  conv1_ = register_module(
      "conv1",
      torch::nn::Conv2d(
          torch::nn::Conv2dOptions(o.in_channels(), o.conv1_channels(), 3)
              .padding(1)));
  conv2_ = register_module(
      "conv2",
      torch::nn::Conv2d(
          torch::nn::Conv2dOptions(o.conv1_channels(), o.conv2_channels(), 3)
              .padding(1)));
  fc1_ = register_module(
      "fc1", torch::nn::Linear(o.conv2_channels() * 7 * 7, o.hidden()));
  dropout_ = register_module("dropout", torch::nn::Dropout(o.dropout()));
  fc2_ = register_module("fc2", torch::nn::Linear(o.hidden(), o.num_classes()));
}

torch::Tensor DigitClassifierImpl::features(const torch::Tensor& x) {
  detail::check_floating(x, "x", "DigitClassifier");
  TORCH_CHECK(
      x.dim() == 4 && x.size(1) == options.in_channels() && x.size(2) >= 4 &&
          x.size(3) >= 4,
      "DigitClassifier: x must be [N, ",
      options.in_channels(),
      ", H, W] with H, W >= 4, got shape ",
      detail::shape_str(x));
  auto h = F::max_pool2d(torch::relu(conv1_(x)), F::MaxPool2dFuncOptions(2));
  h = F::max_pool2d(torch::relu(conv2_(h)), F::MaxPool2dFuncOptions(2));
  h = F::adaptive_avg_pool2d(h, F::AdaptiveAvgPool2dFuncOptions({7, 7}));
  return torch::relu(fc1_(h.flatten(1)));
}

torch::Tensor DigitClassifierImpl::head(const torch::Tensor& features) {
  TORCH_CHECK(
      features.defined() && features.dim() == 2 &&
          features.size(1) == options.hidden(),
      "DigitClassifier::head: features must be [N, ",
      options.hidden(),
      "], got shape ",
      features.defined() ? detail::shape_str(features) : "undefined");
  return fc2_(dropout_(features));
}

torch::Tensor DigitClassifierImpl::forward(const torch::Tensor& x) {
  return head(features(x));
}

namespace {

void check_labelled(
    DigitClassifier& net,
    const torch::Tensor& images,
    const torch::Tensor& labels,
    const char* where) {
  detail::check_floating(images, "images", where);
  TORCH_CHECK(labels.defined(), where, ": labels is an undefined tensor");
  TORCH_CHECK(
      labels.scalar_type() == torch::kLong && labels.dim() == 1 &&
          images.dim() >= 1 && labels.size(0) == images.size(0) &&
          images.size(0) > 0,
      where,
      ": labels must be int64 [N] matching images of shape ",
      detail::shape_str(images),
      ", got ",
      labels.scalar_type(),
      " ",
      detail::shape_str(labels));
  detail::check_same_device(images, "images", labels, "labels", where);
  double lo = 0, hi = 0;
  if (detail::host_minmax(labels, &lo, &hi)) {
    TORCH_CHECK(
        lo >= 0 && hi < static_cast<double>(net->options.num_classes()),
        where,
        ": labels must be in [0, ",
        net->options.num_classes(),
        "), got range [",
        lo,
        ", ",
        hi,
        "]");
  }
}

}  // namespace

double train_classifier(
    DigitClassifier& net,
    const torch::Tensor& images,
    const torch::Tensor& labels,
    const ClassifierTrainOptions& options,
    const std::function<void(int64_t, double)>& on_epoch) {
  check_labelled(net, images, labels, "train_classifier");
  TORCH_CHECK(
      options.epochs() >= 1 && options.batch_size() >= 1 && options.lr() > 0,
      "train_classifier: epochs and batch_size must be >= 1 and lr > 0, got ",
      options.epochs(),
      ", ",
      options.batch_size(),
      ", ",
      options.lr());
  net->train();
  torch::optim::Adam opt(
      net->parameters(), torch::optim::AdamOptions(options.lr()));
  auto gen = at::detail::createCPUGenerator(options.seed());
  const auto n = images.size(0);
  double last = 0.0;
  for (int64_t epoch = 0; epoch < options.epochs(); ++epoch) {
    auto perm = torch::randperm(n, gen, torch::kLong).to(images.device());
    auto total = torch::zeros({}, images.options().dtype(torch::kDouble));
    int64_t batches = 0;
    for (int64_t start = 0; start < n; start += options.batch_size()) {
      auto idx = perm.slice(0, start, start + options.batch_size());
      auto loss = F::cross_entropy(
          net->forward(images.index_select(0, idx)),
          labels.index_select(0, idx));
      opt.zero_grad();
      loss.backward();
      opt.step();
      total += loss.detach().to(torch::kDouble);
      ++batches;
    }
    last = total.item<double>() / static_cast<double>(batches);
    if (on_epoch) {
      on_epoch(epoch, last);
    }
  }
  net->eval();
  return last;
}

ClassifierOutputs classifier_outputs(
    DigitClassifier& net, const torch::Tensor& images, int64_t batch_size) {
  detail::check_floating(images, "images", "classifier_outputs");
  TORCH_CHECK(
      batch_size >= 1,
      "classifier_outputs: batch_size must be >= 1, got ",
      batch_size);
  const bool was_training = net->is_training();
  net->eval();
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> feats, logits;
  for (int64_t start = 0; start < images.size(0); start += batch_size) {
    auto f = net->features(images.slice(0, start, start + batch_size));
    feats.push_back(f.to(torch::kCPU, torch::kFloat));
    logits.push_back(net->head(f).to(torch::kCPU, torch::kFloat));
  }
  net->train(was_training);
  TORCH_CHECK(!feats.empty(), "classifier_outputs: no images");
  return {torch::cat(feats), torch::cat(logits)};
}

double classifier_accuracy(
    DigitClassifier& net,
    const torch::Tensor& images,
    const torch::Tensor& labels,
    int64_t batch_size) {
  check_labelled(net, images, labels, "classifier_accuracy");
  auto out = classifier_outputs(net, images, batch_size);
  auto pred = out.logits.argmax(1);
  return pred.eq(labels.to(torch::kCPU))
      .to(torch::kDouble)
      .mean()
      .item<double>();
}

double classifier_score(const torch::Tensor& logits) {
  detail::check_floating(logits, "logits", "classifier_score");
  TORCH_CHECK(
      logits.dim() == 2 && logits.size(0) >= 1 && logits.size(1) >= 2,
      "classifier_score: logits must be [N, K] with N >= 1, K >= 2, got "
      "shape ",
      detail::shape_str(logits));
  auto l = logits.detach().to(torch::kCPU, torch::kDouble);
  TORCH_CHECK(
      torch::isfinite(l).all().item<bool>(),
      "classifier_score: logits contain NaN or infinite values");
  auto logp = torch::log_softmax(l, 1);  // log p(y|x)
  // log p(y) = log mean_x p(y|x), via logsumexp for stability.
  auto log_marginal =
      torch::logsumexp(logp, 0) - std::log(static_cast<double>(logp.size(0)));
  auto kl = (logp.exp() * (logp - log_marginal.unsqueeze(0))).sum(1);
  return std::exp(kl.mean().item<double>());
}

double classifier_score_from_probs(const torch::Tensor& probs) {
  detail::check_floating(probs, "probs", "classifier_score_from_probs");
  TORCH_CHECK(
      probs.dim() == 2 && probs.size(0) >= 1 && probs.size(1) >= 2,
      "classifier_score_from_probs: probs must be [N, K] with N >= 1, K >= 2, "
      "got shape ",
      detail::shape_str(probs));
  auto p = probs.detach().to(torch::kCPU, torch::kDouble);
  TORCH_CHECK(
      torch::isfinite(p).all().item<bool>() && p.min().item<double>() >= 0.0,
      "classifier_score_from_probs: probabilities must be finite and >= 0");
  const double worst_sum = (p.sum(1) - 1.0).abs().max().item<double>();
  TORCH_CHECK(
      worst_sum <= 1e-6,
      "classifier_score_from_probs: every row must sum to 1, worst row is off "
      "by ",
      worst_sum);
  auto marginal = p.mean(0, /*keepdim=*/true);  // p(y)
  // Terms with p(y|x) = 0 contribute 0 (and then p(y) may be 0 too).
  auto positive = p > 0;
  auto ratio = torch::where(positive, p / marginal, torch::ones_like(p));
  auto kl = (p * torch::log(ratio)).sum(1);
  return std::exp(kl.mean().item<double>());
}

}  // namespace sbgm
