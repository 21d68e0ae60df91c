// sbgm-conditional: class-conditional diffusion with classifier-free
// guidance ("draw me a 7"): `--data data/mnist --classifier clf.pt`, or
// `--dataset moons` (2-D, the halves as classes). One network, trained with
// its label dropped 10% of the time, is the conditional and the
// unconditional model. Every class is sampled at each scale of --scales;
// the label accuracy (read by the digit classifier or the nearest labelled
// 2-D point) goes to metrics.json, samples.png shows each class at --scale.

#include "../common/common.h"

namespace ex = sbgm::examples;
using nlohmann::json;

namespace {

struct Config {
  std::string dataset = "mnist";
  std::string data = "data/mnist";
  std::string classifier;
  ex::TrainingFlags train{5000, 32, 2e-3, "conditional-out", "cpu"};
  ex::SamplingFlags sampling{"dpmpp_2m", "logsnr", 20};
  std::vector<double> scales{0, 1, 2, 4};
  double scale = 2;
  double rescale = 0;
  int64_t per_class = 50;
  // U-Net: the class in the up path only (guidance then runs the down path
  // once for both halves) or in every block.
  std::string class_in = "up";
};

// What differs between MNIST and a 2-D set: the data, the net, how samples
// are read back and judged, and the picture.
struct Task {
  int64_t classes = 0;
  torch::Tensor x{}, y{};  // training data in the model's space, labels
  sbgm::Network net{};
  std::function<torch::Tensor(const torch::Tensor&)> to_data{}, read_labels{};
  std::function<void(const torch::Tensor&, const torch::Tensor&, json&)>
      picture{};
};

Task mnist_task(const Config& c, torch::Device device) {
  TORCH_CHECK(!c.classifier.empty(), "--classifier is needed for MNIST");
  const auto [train, test] = ex::load_mnist_splits(c.data);
  auto clf = ex::load_classifier(c.classifier);
  Task t{10, (train.images * 2 - 1).to(device), train.labels.to(device)};
  t.net = sbgm::to_network(
      sbgm::UNet(sbgm::UNetOptions(1).num_classes(10).class_up_path_only(
          c.class_in == "up")));
  t.to_data = [](const torch::Tensor& x) { return ((x + 1) / 2).clamp(0, 1); };
  t.read_labels = [clf](const torch::Tensor& images) mutable {
    torch::NoGradGuard ng;
    return clf->forward(images.cpu()).argmax(1);
  };
  auto train_images = train.images;
  auto test_images = test ? test->images : torch::Tensor();
  t.picture = [=](const torch::Tensor& images, const torch::Tensor&, json& m) {
    const int64_t shown = std::min<int64_t>(c.per_class, 10);
    sbgm::io::save_png(
        c.train.out + "/samples.png",
        sbgm::io::image_grid(
            images.view({10, c.per_class, 1, 28, 28})
                .slice(1, 0, shown)
                .reshape({-1, 1, 28, 28}),
            shown));
    if (test_images.defined()) {
      m.update(
          ex::mnist_quality(c.classifier, images, train_images, test_images));
    }
  };
  return t;
}

Task toy2d_task(const Config& c, torch::Device device) {
  const auto kind = sbgm::data::parse_toy2d(c.dataset);
  const auto standard = sbgm::data::toy2d_standardizer(kind);
  auto d = sbgm::data::make_toy2d_labeled(
      kind, 200000, sbgm::make_generator(c.train.seed));
  Task t{
      sbgm::data::toy2d_num_classes(kind),
      standard.apply(d.points).to(device),
      d.labels.to(device)};
  t.net = sbgm::to_network(
      sbgm::MLP(sbgm::MLPOptions(2)
                    .hidden(128)
                    .embedding(sbgm::TimeEmbeddingKind::Sinusoidal)
                    .time_scale(1000.0)
                    .num_classes(t.classes)));
  t.to_data = [standard](const torch::Tensor& x) {
    return standard.invert(x).cpu();
  };
  // The label of the nearest of 20,000 labelled points.
  auto ref = sbgm::data::make_toy2d_labeled(
      kind, 20000, sbgm::make_generator(c.train.seed + 9));
  t.read_labels = [ref](const torch::Tensor& x) {
    return ref.labels.index_select(0, torch::cdist(x, ref.points).argmin(1));
  };
  t.picture = [=](const torch::Tensor& x, const torch::Tensor& y, json&) {
    const double range = 1.15 * ref.points.abs().max().item<double>();
    const auto shown = ref.points.slice(0, 0, 2000);
    std::vector<torch::Tensor> panels;
    for (int64_t k = 0; k < t.classes; ++k) {
      const auto name = "class " + std::to_string(k);
      panels.push_back(ex::scatter(x.index({y == k}), name, range, shown));
    }
    sbgm::io::save_png(
        c.train.out + "/samples.png",
        sbgm::io::panel_grid(panels, std::min<int64_t>(t.classes, 4)));
  };
  return t;
}

int run(const Config& c) {
  torch::manual_seed(c.train.seed);
  const torch::Device device = ex::pick_device(c.train.device);
  const bool images = c.dataset == "mnist";
  Task task = images ? mnist_task(c, device) : toy2d_task(c, device);
  // VP with v-prediction and min-SNR-5 weighting (the best MNIST recipe of
  // bench/README's search); the 2-D sets on the same process.
  auto process = ex::make_process("vp");
  task.net.module->to(device);
  const sbgm::Model model = task.net.model(sbgm::Prediction::V);
  const auto loss = sbgm::LossOptions()
                        .target(sbgm::Prediction::V)
                        .weighting(sbgm::LossWeighting::MinSNR)
                        .sampling(sbgm::TimeSampling::Antithetic);
  std::printf("%s; %s\n", c.dataset.c_str(), process->describe().c_str());

  // ---- training: the Trainer, resumable from its files in --out
  ex::Minibatches batches(
      task.x.size(0), c.train.batch, c.train.seed, nullptr, device);
  const auto files = ex::run_files(c.train.out, c.train.resume, nullptr);
  sbgm::Trainer trainer(
      task.net.module,
      [&](int64_t) {
        const auto pick = batches.next();
        return sbgm::diffusion_loss(
            model.with_condition(task.y.index_select(0, pick)),
            *process,
            task.x.index_select(0, pick),
            loss);
      },
      ex::trainer_options(c.train)
          .log_every(std::clamp<int64_t>(c.train.steps / 100, 1, 100))
          .print_every(std::max<int64_t>(1, c.train.steps / 10))
          .csv_path(files.csv)
          .checkpoint_path(files.checkpoint)
          .resume(c.train.resume)
          .stop_on_signal(true));  // Ctrl-C, SIGTERM: save, exit_if_done
  const ex::RunTimer timer(files, c.train.resume);
  const auto last = trainer.run();
  ex::exit_if_done(trainer, nullptr);
  const auto report = timer.report(trainer, last);
  ex::use_ema(trainer, *task.net.module);

  // ---- every class at every scale: label accuracy; the picture at --scale
  const auto requested =
      torch::arange(task.classes, torch::dtype(torch::kLong).device(device))
          .repeat_interleave(c.per_class);
  auto shape = task.x.sizes().vec();  // a sample's, for each requested
  shape[0] = requested.size(0);
  json m = {
      {"dataset", c.dataset},
      {"process", process->describe()},
      {"sampler", c.sampling.sampler},
      {"grid", c.sampling.grid},
      {"samples_per_class", c.per_class},
      {"guidance_scale", c.scale},
      {"guidance_rescale", c.rescale}};
  if (c.dataset == "mnist") {
    m["class_in"] = c.class_in;
  }
  m["label_accuracy_by_scale"] = json::array();
  auto scales = c.scales;  // and --scale, once
  scales.erase(
      std::remove(scales.begin(), scales.end(), c.scale), scales.end());
  scales.push_back(c.scale);
  for (double w : scales) {
    auto guided = sbgm::classifier_free_guidance(
        model,
        sbgm::GuidanceOptions(w).null_class(task.classes).rescale(c.rescale));
    const auto so =
        ex::sample_options(c.sampling, *process, device, c.train.seed + 1, 0);
    const auto [result, seconds] =
        ex::sample(guided.with_condition(requested), *process, shape, so);
    const auto x = task.to_data(result.samples).to(torch::kCPU, torch::kFloat);
    auto acc =
        ex::label_accuracy(task.read_labels(x), requested.cpu(), task.classes);
    std::printf(
        "guidance %.3g: label accuracy %.1f%% (weakest class %.1f%%), %.1f s\n",
        w,
        100 * acc["overall"].get<double>(),
        100 * acc["weakest"].get<double>(),
        seconds);
    acc.update(
        {{"sample_seconds", seconds}, {"nfe", result.nfe}, {"scale", w}});
    m["label_accuracy_by_scale"].push_back(acc);
    if (w == c.scale) {
      sbgm::io::write_npy(c.train.out + "/samples.npy", x);
      task.picture(x, requested.cpu(), m);
      m["label_accuracy"] = acc["overall"];
      m["label_accuracy_weakest"] = acc["weakest"];
    }
  }
  m.update(ex::training_json(c.train, report));
  ex::save_loss_plot(files);
  ex::write_json(c.train.out + "/metrics.json", m);
  std::printf(
      "wrote samples.png, samples.npy, loss.png, metrics.json to %s\n",
      c.train.out.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"sbgm-conditional: class-conditional diffusion with guidance"};
  Config c;
  app.add_option("--dataset", c.dataset, "mnist, moons, circles or 8gaussians")
      ->check(CLI::IsMember({"mnist", "moons", "circles", "8gaussians"}))
      ->capture_default_str();
  app.add_option("--data", c.data, "MNIST directory (scripts/fetch-mnist.sh)")
      ->capture_default_str();
  app.add_option(
      "--classifier", c.classifier, "weights from sbgm-mnist-classifier");
  ex::add_training_flags(app, c.train);
  ex::add_sampling_flags(app, c.sampling);
  app.add_option("--scales", c.scales, "guidance scales to measure")
      ->capture_default_str();
  app.add_option("--scale", c.scale, "guidance scale of the picture")
      ->capture_default_str();
  app.add_option("--rescale", c.rescale, "guidance rescale phi in [0, 1]")
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--per-class", c.per_class, "samples per class and scale")
      ->check(CLI::PositiveNumber);
  app.add_option("--class-in", c.class_in, "U-Net blocks with the class")
      ->check(CLI::IsMember({"up", "every"}))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  auto given = [&](const char* flag) { return app.count(flag) > 0; };
  if (c.dataset != "mnist") {  // 2-D: w = 1 is already exact enough
    c.train.steps = given("--steps") ? c.train.steps : 10000;
    c.train.batch = given("--batch") ? c.train.batch : 256;
    c.train.lr = given("--lr") ? c.train.lr : 1e-3;
    c.scale = given("--scale") ? c.scale : 1.0;
    c.per_class = given("--per-class") ? c.per_class : 500;
  }
  return ex::guarded_main([&] { return run(c); });
}
