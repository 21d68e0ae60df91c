#include "sbgm/data/mnist.h"

#include <c10/util/Exception.h>
#include <torch/torch.h>

#include <filesystem>

#include "data/idx.h"

namespace sbgm::data {
namespace {

detail::IdxArray read_checked(const std::string& path, int ndim) {
  try {
    return detail::read_idx_file(path, ndim);
  } catch (const detail::IdxError& e) {
    TORCH_CHECK(false, "MNIST: ", e.what());
  }
}

torch::Tensor to_tensor(detail::IdxArray&& a) {
  auto* holder = new std::vector<uint8_t>(std::move(a.data));
  return torch::from_blob(
      holder->data(),
      a.dims,
      [holder](void*) { delete holder; },
      torch::TensorOptions().dtype(torch::kUInt8));
}

std::string find_file(const std::string& dir, const std::string& stem) {
  namespace fs = std::filesystem;
  fs::path plain = fs::path(dir) / stem;
  fs::path gz = fs::path(dir) / (stem + ".gz");
  if (fs::exists(plain)) {
    return plain.string();
  }
  if (fs::exists(gz)) {
    return gz.string();
  }
  TORCH_CHECK(
      false,
      "MNIST: found neither ",
      plain.string(),
      " nor ",
      gz.string(),
      " (scripts/fetch-mnist.sh downloads them)");
}

}  // namespace

torch::Tensor read_mnist_images(const std::string& path, bool as_float) {
  auto a = read_checked(path, 3);
  TORCH_CHECK(
      a.dims[1] == 28 && a.dims[2] == 28,
      "MNIST: ",
      path,
      ": images are ",
      a.dims[1],
      "x",
      a.dims[2],
      ", expected 28x28");
  auto t = to_tensor(std::move(a)).unsqueeze(1);
  if (as_float) {
    return t.to(torch::kFloat).div_(255.0);
  }
  return t;
}

torch::Tensor read_mnist_labels(const std::string& path) {
  auto a = read_checked(path, 1);
  for (size_t i = 0; i < a.data.size(); ++i) {
    TORCH_CHECK(
        a.data[i] <= 9,
        "MNIST: ",
        path,
        ": label ",
        static_cast<int>(a.data[i]),
        " at index ",
        i,
        " is not a digit 0..9");
  }
  return to_tensor(std::move(a)).to(torch::kLong);
}

MnistData load_mnist(const std::string& dir, MnistSplit split, bool as_float) {
  const std::string prefix = split == MnistSplit::Train ? "train" : "t10k";
  auto images_path = find_file(dir, prefix + "-images-idx3-ubyte");
  auto labels_path = find_file(dir, prefix + "-labels-idx1-ubyte");
  // Compare the counts in the headers before reading either file.
  int64_t n_images = 0;
  int64_t n_labels = 0;
  try {
    n_images = detail::peek_idx_dims(images_path, 3)[0];
    n_labels = detail::peek_idx_dims(labels_path, 1)[0];
  } catch (const detail::IdxError& e) {
    TORCH_CHECK(false, "MNIST: ", e.what());
  }
  TORCH_CHECK(
      n_images == n_labels,
      "MNIST: ",
      images_path,
      " holds ",
      n_images,
      " images but ",
      labels_path,
      " holds ",
      n_labels,
      " labels");
  MnistData d;
  d.labels = read_mnist_labels(labels_path);
  d.images = read_mnist_images(images_path, as_float);
  TORCH_CHECK(
      d.images.size(0) == d.labels.size(0),
      "MNIST: ",
      images_path,
      " holds ",
      d.images.size(0),
      " images but ",
      labels_path,
      " holds ",
      d.labels.size(0),
      " labels");
  return d;
}

}  // namespace sbgm::data
