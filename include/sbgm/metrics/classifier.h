#pragma once

/// \file
/// A small CNN digit classifier for judging generated 28x28 images: its
/// penultimate features feed the Fréchet distance (metrics/frechet.h) and
/// its class probabilities the classifier score, the analogue of the
/// Inception Score (Salimans et al., "Improved Techniques for Training
/// GANs", NeurIPS 2016): exp(E_x KL(p(y|x) || p(y))).

#include <torch/nn/module.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include <functional>
#include <string>

namespace sbgm {

/// Options of DigitClassifier.
///
/// Example: `DigitClassifier net(DigitClassifierOptions().hidden(128));`
struct DigitClassifierOptions {
  /// Channels of the input images. Default: 1.
  TORCH_ARG(int64_t, in_channels) = 1;
  /// Channels of the first and the second convolution. Default: 32, 64.
  TORCH_ARG(int64_t, conv1_channels) = 32;
  TORCH_ARG(int64_t, conv2_channels) = 64;
  /// Width of the penultimate layer (the features). Default: 128.
  TORCH_ARG(int64_t, hidden) = 128;
  /// Number of classes. Default: 10.
  TORCH_ARG(int64_t, num_classes) = 10;
  /// Dropout before the last layer while training. Default: 0.25.
  TORCH_ARG(double, dropout) = 0.25;
};

/// conv3x3-ReLU-maxpool2, conv3x3-ReLU-maxpool2, adaptive average pool to
/// 7x7, Linear-ReLU (features), dropout, Linear (logits). Takes images in
/// [0, 1] of shape [N, in_channels, H, W] (H, W >= 4; 28x28 for MNIST).
class DigitClassifierImpl : public torch::nn::Module {
 public:
  explicit DigitClassifierImpl(
      const DigitClassifierOptions& options = DigitClassifierOptions());
  /// Checks the options and registers the layers (called by the
  /// constructor).
  void reset();
  /// Penultimate activations [N, hidden].
  torch::Tensor features(const torch::Tensor& x);
  /// Class logits [N, num_classes] from features [N, hidden] (dropout
  /// applies in training mode).
  torch::Tensor head(const torch::Tensor& features);
  /// Class logits [N, num_classes]: head(features(x)).
  torch::Tensor forward(const torch::Tensor& x);

  DigitClassifierOptions options;

 private:
  torch::nn::Conv2d conv1_{nullptr}, conv2_{nullptr};
  torch::nn::Linear fc1_{nullptr}, fc2_{nullptr};
  torch::nn::Dropout dropout_{nullptr};
};
TORCH_MODULE(DigitClassifier);

/// Settings of train_classifier.
struct ClassifierTrainOptions {
  /// Passes over the training images. Default: 3.
  TORCH_ARG(int64_t, epochs) = 3;
  /// Minibatch size. Default: 128.
  TORCH_ARG(int64_t, batch_size) = 128;
  /// Adam learning rate. Default: 1e-3.
  TORCH_ARG(double, lr) = 1e-3;
  /// Seed of the shuffling. Default: 0.
  TORCH_ARG(uint64_t, seed) = 0;
};

/// Trains `net` with Adam on cross-entropy. images: [N, C, H, W] floating in
/// [0, 1]; labels: [N] int64 in [0, num_classes). Both on the net's device.
/// `on_epoch(epoch, mean_loss)` is called after each epoch when set.
/// Returns the mean loss of the last epoch.
double train_classifier(
    DigitClassifier& net,
    const torch::Tensor& images,
    const torch::Tensor& labels,
    const ClassifierTrainOptions& options = ClassifierTrainOptions(),
    const std::function<void(int64_t, double)>& on_epoch = nullptr);

/// Fraction of images whose arg-max class equals the label (eval mode, no
/// gradients, minibatches of `batch_size`).
double classifier_accuracy(
    DigitClassifier& net,
    const torch::Tensor& images,
    const torch::Tensor& labels,
    int64_t batch_size = 512);

/// Features [N, hidden] and logits [N, num_classes] of many images, in
/// minibatches, eval mode, no gradients; returned on the CPU in float32.
struct ClassifierOutputs {
  torch::Tensor features;
  torch::Tensor logits;
};
ClassifierOutputs classifier_outputs(
    DigitClassifier& net,
    const torch::Tensor& images,
    int64_t batch_size = 512);

/// Classifier score exp(E_x KL(p(y|x) || p(y))) from logits [N, K], with
/// p(y) the mean of p(y|x) over the N rows; computed in float64. It lies in
/// [1, K]: 1 when every row predicts the same distribution, K when the rows
/// are confident and spread evenly over the K classes.
double classifier_score(const torch::Tensor& logits);

/// The same score from class probabilities p(y|x) of shape [N, K] (entries
/// >= 0, rows summing to 1 within 1e-6): exp(mean_x sum_y p(y|x) (log
/// p(y|x) - log p(y))), p(y) = mean_x p(y|x), with 0 log 0 = 0. Uniform rows
/// give 1; one-hot rows spread evenly over K classes give K.
double classifier_score_from_probs(const torch::Tensor& probs);

}  // namespace sbgm
