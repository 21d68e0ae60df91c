#pragma once

/// \file
/// MNIST in its IDX format (http://yann.lecun.com/exdb/mnist/), plain or
/// gzip-compressed. Files are validated (magic number, dimensions, size
/// against the header, images against labels) before anything large is
/// allocated; damage gives a c10::Error that names the file and the problem.
/// scripts/fetch-mnist.sh downloads the files.

#include <torch/types.h>

#include <string>

namespace sbgm::data {

/// Which MNIST files to read: train-* (60,000 digits) or t10k-* (10,000).
enum class MnistSplit { Train, Test };

/// Images and their labels.
struct MnistData {
  /// [N, 1, 28, 28]: float32 in [0, 1] (byte / 255), or uint8 as stored.
  torch::Tensor images;
  /// [N] int64 digits 0..9.
  torch::Tensor labels;
};

/// Reads an idx3-ubyte images file (magic 0x00000803) of 28x28 digits.
/// Returns [N, 1, 28, 28], float32 byte/255 when `as_float`, else uint8.
torch::Tensor read_mnist_images(const std::string& path, bool as_float = true);

/// Reads an idx1-ubyte labels file (magic 0x00000801); every label must be
/// 0..9. Returns [N] int64.
torch::Tensor read_mnist_labels(const std::string& path);

/// Loads `<dir>/train-images-idx3-ubyte` and `train-labels-idx1-ubyte` (or
/// the t10k-* pair for MnistSplit::Test), each with or without `.gz`, and
/// checks the two files hold the same number of items.
///
/// Example: `auto mnist = sbgm::data::load_mnist("data/mnist");`
MnistData load_mnist(
    const std::string& dir,
    MnistSplit split = MnistSplit::Train,
    bool as_float = true);

}  // namespace sbgm::data
