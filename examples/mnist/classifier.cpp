// sbgm-mnist-classifier: trains the small CNN digit classifier
// (sbgm::DigitClassifier) on the MNIST training split, reports its accuracy
// on the test split and saves its weights. sbgm-mnist --classifier PATH uses
// them for its quality figures (Fréchet distance of classifier features and
// the classifier score).

#include <sbgm/sbgm.h>
#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <string>

int main(int argc, char** argv) {
  CLI::App app{"Trains the MNIST digit classifier used for sample quality"};
  std::string data = "data/mnist";
  std::string out = "mnist-classifier.pt";
  std::string device_name = "cpu";
  int64_t epochs = 3;
  int64_t batch = 128;
  double lr = 1e-3;
  uint64_t seed = 0;
  app.add_option("--data", data, "MNIST directory (IDX files, plain or .gz)");
  app.add_option("--out", out, "where to save the weights");
  app.add_option("--epochs", epochs, "passes over the training images")
      ->check(CLI::PositiveNumber);
  app.add_option("--batch", batch, "minibatch size")
      ->check(CLI::PositiveNumber);
  app.add_option("--lr", lr, "Adam learning rate")->check(CLI::PositiveNumber);
  app.add_option("--device", device_name, "cpu, cuda, cuda:1, ...");
  app.add_option("--seed", seed, "random seed");
  CLI11_PARSE(app, argc, argv);
  sbgm::tune_cpu_allocator();  // reuse freed tensor memory (see sbgm/perf.h)

  try {
    torch::manual_seed(seed);
    const torch::Device device(device_name);
    if (device.is_cuda() && !torch::cuda::is_available()) {
      std::fprintf(
          stderr,
          "error: --device %s but no CUDA device is available\n",
          device_name.c_str());
      return 1;
    }
    sbgm::data::MnistData train, test;
    try {
      train = sbgm::data::load_mnist(data, sbgm::data::MnistSplit::Train);
      test = sbgm::data::load_mnist(data, sbgm::data::MnistSplit::Test);
    } catch (const c10::Error& e) {
      std::fprintf(
          stderr,
          "error: cannot read MNIST from '%s': %s\n"
          "fetch it with: scripts/fetch-mnist.sh %s\n",
          data.c_str(),
          e.what_without_backtrace(),
          data.c_str());
      return 1;
    }
    std::printf(
        "%lld training and %lld test images from %s\n",
        static_cast<long long>(train.images.size(0)),
        static_cast<long long>(test.images.size(0)),
        data.c_str());

    sbgm::DigitClassifier net;
    net->to(device);
    const auto start = std::chrono::steady_clock::now();
    sbgm::train_classifier(
        net,
        train.images.to(device),
        train.labels.to(device),
        sbgm::ClassifierTrainOptions()
            .epochs(epochs)
            .batch_size(batch)
            .lr(lr)
            .seed(seed),
        [&](int64_t epoch, double loss) {
          std::printf(
              "epoch %lld: mean loss %.4f\n",
              static_cast<long long>(epoch + 1),
              loss);
          std::fflush(stdout);
        });
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
            .count();
    const double acc = sbgm::classifier_accuracy(
        net, test.images.to(device), test.labels.to(device));
    std::printf(
        "trained in %.1f s; test accuracy %.2f%% on %lld images\n",
        secs,
        100.0 * acc,
        static_cast<long long>(test.images.size(0)));
    net->to(torch::kCPU);
    torch::save(net, out);
    std::printf("saved %s\n", out.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
