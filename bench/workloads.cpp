#include "workloads.h"

#include <ATen/record_function.h>
#include <sbgm/sbgm.h>
#include <torch/nn/utils/clip_grad.h>
#include <torch/optim/adam.h>

#include <atomic>
#include <cmath>
#include <memory>

#ifdef SBGM_WITH_CUDA
#include <c10/cuda/CUDAStream.h>
#endif

namespace sbgm::bench {

namespace {

// The small swiss-roll set-up (--preset seed of the demo).
constexpr int64_t kSeedT = 150;
constexpr int64_t kSeedBatch = 128;
constexpr int64_t kSeedPoints = 10000;
constexpr int64_t kSamplePoints = 1000;
// The MNIST demo's set-up.
constexpr int64_t kMnistBatch = 32;
constexpr int64_t kMnistSampleBatch = 64;
constexpr int64_t kMnistSampleSteps = 500;
constexpr double kSigma = 25.0;

std::atomic<int64_t> g_flops{0};

int64_t numel_of(c10::IntArrayRef s) {
  int64_t n = 1;
  for (auto v : s)
    n *= v;
  return n;
}

std::unique_ptr<at::ObserverContext> on_op(const at::RecordFunction& fn) {
  const std::string name = fn.name();
  const auto inputs = fn.inputs();
  auto sizes = [&](size_t i) { return inputs[i].toTensor().sizes(); };
  if (name == "aten::convolution" && inputs.size() >= 9) {
    const auto x = sizes(0);
    const auto w = sizes(1);
    const bool transposed = inputs[6].toBool();
    const auto stride = inputs[3].toIntVector();
    const auto pad = inputs[4].toIntVector();
    const auto dil = inputs[5].toIntVector();
    const auto opad = inputs[7].toIntVector();
    int64_t out_spatial = 1, in_spatial = 1;
    for (size_t d = 0; d + 2 < x.size(); ++d) {
      const int64_t k = w[d + 2], h = x[d + 2];
      in_spatial *= h;
      out_spatial *=
          transposed ? (h - 1) * stride[d] - 2 * pad[d] + dil[d] * (k - 1) +
                           opad[d] + 1
                     : (h + 2 * pad[d] - dil[d] * (k - 1) - 1) / stride[d] + 1;
    }
    // Each output (non-transposed) or input (transposed) position costs
    // numel(w) / groups * ... multiply-adds: numel(w) covers Cout * Cin/g * k.
    const int64_t kernel_macs = numel_of(w);
    const int64_t positions = transposed ? in_spatial : out_spatial;
    g_flops += 2 * x[0] * positions * kernel_macs;
  } else if (name == "aten::addmm" || name == "aten::mm") {
    const size_t a = name == "aten::addmm" ? 1 : 0;
    g_flops += 2 * sizes(a)[0] * sizes(a)[1] * sizes(a + 1)[1];
  } else if (name == "aten::bmm" || name == "aten::baddbmm") {
    const size_t a = name == "aten::bmm" ? 0 : 1;
    g_flops += 2 * sizes(a)[0] * sizes(a)[1] * sizes(a)[2] * sizes(a + 1)[2];
  }
  return nullptr;
}

void sync_device(torch::Device device) {
#ifdef SBGM_WITH_CUDA
  if (device.is_cuda()) {
    c10::cuda::getCurrentCUDAStream(device.index()).synchronize();
  }
#else
  (void)device;
#endif
}

struct SeedSetup {
  torch::Tensor data, sqrt_ab, sqrt_1mab;
  Schedule schedule = Schedule::sigmoid(kSeedT, 1e-5, 5e-3);
  DiscreteProcess process{schedule};
  MLP net{MLPOptions(2).num_timesteps(kSeedT)};
};

std::shared_ptr<SeedSetup> seed_setup(torch::Device device) {
  auto s = std::make_shared<SeedSetup>();
  auto gen = torch::make_generator<torch::CPUGeneratorImpl>(0);
  s->data = data::make_swiss_roll(kSeedPoints, gen).to(device);
  s->sqrt_ab = s->schedule.alphas_cumprod().sqrt().to(device, torch::kFloat);
  s->sqrt_1mab =
      (1.0 - s->schedule.alphas_cumprod()).sqrt().to(device, torch::kFloat);
  s->schedule = s->schedule.to(device);
  s->net->to(device);
  return s;
}

// One batch of the small set-up's objective: x_t, t, eps (antithetic steps).
std::tuple<torch::Tensor, torch::Tensor, torch::Tensor> seed_batch(
    const SeedSetup& s) {
  const auto dev = s.data.device();
  const torch::Tensor idx = torch::randint(
      kSeedPoints, {kSeedBatch}, torch::dtype(torch::kLong).device(dev));
  const torch::Tensor x0 = s.data.index_select(0, idx);
  const torch::Tensor half = torch::randint(
      kSeedT, {kSeedBatch / 2}, torch::dtype(torch::kLong).device(dev));
  const torch::Tensor t = torch::cat({half, (kSeedT - 1) - half});
  const torch::Tensor e = torch::randn_like(x0);
  const torch::Tensor xt = torch::addcmul(
      x0 * s.sqrt_ab.index_select(0, t).unsqueeze(1),
      e,
      s.sqrt_1mab.index_select(0, t).unsqueeze(1));
  return {xt, t, e};
}

Workload swiss_train(torch::Device device, const std::string& variant) {
  auto s = seed_setup(device);
  Workload w;
  w.default_iters = 2000;
  w.sync = [device] { sync_device(device); };
  {
    torch::NoGradGuard ng;
    auto [xt, t, e] = seed_batch(*s);
    w.flops = 3 * count_flops([&] { s->net->forward(xt, t); });
  }
  if (variant == "naive") {
    auto opt = std::make_shared<torch::optim::Adam>(
        s->net->parameters(), torch::optim::AdamOptions(1e-3));
    w.step = [s, opt] {
      auto [xt, t, e] = seed_batch(*s);
      torch::Tensor loss = (s->net->forward(xt, t) - e).square().mean();
      opt->zero_grad();
      loss.backward();
      torch::nn::utils::clip_grad_norm_(s->net->parameters(), 1.0);
      opt->step();
    };
    return w;
  }
  auto opt = std::make_shared<FlatAdam>(
      s->net->parameters(), FlatAdamOptions(1e-3).max_grad_norm(1.0));
  if (variant == "flat") {
    w.step = [s, opt] {
      auto [xt, t, e] = seed_batch(*s);
      torch::Tensor loss = (s->net->forward(xt, t) - e).square().mean();
      opt->zero_flat_grad();
      loss.backward();
      opt->step();
    };
    return w;
  }
  auto fused = std::make_shared<FusedMLPStep>(s->net);
  w.step = [s, opt, fused] {
    auto [xt, t, e] = seed_batch(*s);
    opt->zero_flat_grad();
    (*fused)(xt, t, e);
    opt->step();
  };
  return w;
}

Workload swiss_sample(torch::Device device, const std::string& variant) {
  auto s = seed_setup(device);
  Workload w;
  w.default_iters = 40;
  w.steps_per_call = kSeedT;
  w.sync = [device] { sync_device(device); };
  {
    torch::NoGradGuard ng;
    auto x = torch::randn({kSamplePoints, 2}, torch::device(device));
    auto t = torch::zeros(
        {kSamplePoints}, torch::dtype(torch::kLong).device(device));
    w.flops = count_flops([&] { s->net->forward(x, t); });
  }
  Model model(s->net, Prediction::Epsilon);
  if (variant == "naive") {
    // The straightforward loop: coefficients read from the tables each step
    // and a temporary for every operation.
    w.step = [s, device] {
      c10::InferenceMode guard;
      torch::Tensor x = torch::randn({kSamplePoints, 2}, torch::device(device));
      for (int64_t i = kSeedT - 1; i >= 0; --i) {
        const torch::Tensor t = torch::full(
            {kSamplePoints}, i, torch::dtype(torch::kLong).device(device));
        const torch::Tensor eps = s->net->forward(x, t);
        const double beta = s->schedule.beta(i);
        const double coef = beta / std::sqrt(1 - s->schedule.alpha_bar(i));
        x = (x - coef * eps) / std::sqrt(1 - beta);
        if (i > 0)
          x = x + std::sqrt(beta) * torch::randn_like(x);
      }
    };
    return w;
  }
  if (variant == "graph") {
    // The whole ddpm() run with CommonOptions::cuda_graph: on CUDA one step
    // is captured (after two warm-up steps) and replayed; on CPU the flag
    // does nothing and this times the eager run.
    w.step = [model, s, device] {
      samplers::ddpm(
          model,
          s->process,
          {kSamplePoints, 2},
          samplers::DDPMOptions().common(
              samplers::CommonOptions().device(device).cuda_graph(true)));
    };
    return w;
  }
  auto sampler = std::make_shared<samplers::DDPMSampler>(model, s->process);
  auto x = std::make_shared<torch::Tensor>();
  w.step = [sampler, x, device] {
    c10::InferenceMode guard;
    *x = torch::randn({kSamplePoints, 2}, torch::device(device));
    for (int64_t i = 0; i < sampler->num_steps(); ++i)
      sampler->step(*x, i);
  };
  return w;
}

UNet mnist_unet(const std::shared_ptr<VESDE>& sde) {
  return UNet(UNetOptions(1).marginal_std(
      [sde](const torch::Tensor& t) { return sde->sigma(t); }));
}

Workload mnist_train(torch::Device device, const std::string& variant) {
  auto sde = std::make_shared<VESDE>(kSigma);
  UNet net = mnist_unet(sde);
  net->to(device);
  auto images = torch::rand({kMnistBatch, 1, 28, 28}, torch::device(device));
  Workload w;
  w.default_iters = 30;
  w.sync = [device] { sync_device(device); };
  {
    torch::NoGradGuard ng;
    auto t = torch::rand({kMnistBatch}, torch::device(device));
    w.flops = 3 * count_flops([&] { net->forward(images, t); });
  }
  Model model(net, Prediction::Score);
  std::shared_ptr<torch::optim::Optimizer> opt;
  if (variant == "naive") {
    opt = std::make_shared<torch::optim::Adam>(
        net->parameters(), torch::optim::AdamOptions(1e-3));
  } else {
    opt = std::make_shared<FlatAdam>(
        net->parameters(), FlatAdamOptions(1e-3).max_grad_norm(1.0));
  }
  w.step = [net, model, sde, images, opt, variant] {
    torch::Tensor loss = dsm_loss(model, *sde, images);
    opt->zero_grad();
    loss.backward();
    if (variant == "naive") {
      torch::nn::utils::clip_grad_norm_(net->parameters(), 1.0);
    }
    opt->step();
  };
  return w;
}

Workload mnist_sample(torch::Device device) {
  auto sde = std::make_shared<VESDE>(kSigma);
  UNet net = mnist_unet(sde);
  net->to(device);
  net->eval();
  Workload w;
  w.default_iters = 20;
  w.sync = [device] { sync_device(device); };
  auto x = std::make_shared<torch::Tensor>(
      torch::randn({kMnistSampleBatch, 1, 28, 28}, torch::device(device)));
  {
    torch::NoGradGuard ng;
    auto t = torch::rand({kMnistSampleBatch}, torch::device(device));
    w.flops = count_flops([&] { net->forward(*x, t); });
  }
  auto sampler = std::make_shared<samplers::EulerMaruyamaSampler>(
      Model(net, Prediction::Score),
      *sde,
      samplers::EulerMaruyamaOptions().grid(kMnistSampleSteps));
  auto i = std::make_shared<int64_t>(0);
  w.step = [sampler, x, i] {
    c10::InferenceMode guard;
    sampler->step(*x, *i);
    *i = (*i + 1) % (kMnistSampleSteps - 1);
  };
  return w;
}

// Whole euler_maruyama() runs of 100 steps for 64 images with
// CommonOptions::cuda_graph (capture included); eager on CPU.
Workload mnist_sample_graph(torch::Device device) {
  static constexpr int64_t kSteps = 100;
  auto sde = std::make_shared<VESDE>(kSigma);
  UNet net = mnist_unet(sde);
  net->to(device);
  net->eval();
  Workload w;
  w.default_iters = 5;
  w.steps_per_call = kSteps;
  w.sync = [device] { sync_device(device); };
  {
    torch::NoGradGuard ng;
    auto x =
        torch::randn({kMnistSampleBatch, 1, 28, 28}, torch::device(device));
    auto t = torch::rand({kMnistSampleBatch}, torch::device(device));
    w.flops = count_flops([&] { net->forward(x, t); });
  }
  Model model(net, Prediction::Score);
  w.step = [model, sde, device] {
    samplers::euler_maruyama(
        model,
        *sde,
        {kMnistSampleBatch, 1, 28, 28},
        samplers::EulerMaruyamaOptions().grid(kSteps).common(
            samplers::CommonOptions().device(device).cuda_graph(true)));
  };
  return w;
}

// One forward pass of the U-Net for 64 images (no autograd): the floor of
// mnist_sample.
Workload mnist_forward(torch::Device device) {
  auto sde = std::make_shared<VESDE>(kSigma);
  UNet net = mnist_unet(sde);
  net->to(device);
  net->eval();
  auto x = torch::randn({kMnistSampleBatch, 1, 28, 28}, torch::device(device));
  auto t = torch::rand({kMnistSampleBatch}, torch::device(device));
  Workload w;
  w.default_iters = 20;
  w.sync = [device] { sync_device(device); };
  {
    torch::NoGradGuard ng;
    w.flops = count_flops([&] { net->forward(x, t); });
  }
  w.step = [net, x, t]() mutable {
    c10::InferenceMode guard;
    net->forward(x, t);
  };
  return w;
}

// A 1024^3 single-precision matrix product: what the BLAS reaches on this
// machine, to turn FLOPs into an arithmetic floor for the other workloads.
Workload gemm_peak(torch::Device device) {
  constexpr int64_t n = 1024;
  auto a = torch::randn({n, n}, torch::device(device));
  auto b = torch::randn({n, n}, torch::device(device));
  auto c = torch::empty({n, n}, torch::device(device));
  Workload w;
  w.default_iters = 20;
  w.sync = [device] { sync_device(device); };
  w.flops = 2 * n * n * n;
  w.step = [a, b, c]() mutable { at::mm_out(c, a, b); };
  return w;
}

// Whole sampler runs on 1,000 2-D points with the exact score of an
// 8-component Gaussian mixture ("gmm") or an untrained 64-unit MLP ("mlp"),
// reported per sampler step: sample_<sampler>_<model> with the sampler by
// its name in sbgm::samplers::sample (ddpm, ddim, em, pc, ode (Heun on the
// probability-flow ODE; "heun" before the samplers had names), heun (EDM),
// euler_ancestral, dpmpp_2m, ...). DDPM/DDIM run on the small set-up's T = 150
// schedule (DDIM with 50 steps), the others on the VP SDE with 100 steps.
// PC, ode and heun evaluate the model twice per step.
Workload sampler_run(
    torch::Device device, const std::string& sampler, const std::string& kind) {
  constexpr int64_t kPoints = 1000, kSteps = 100, kDdimSteps = 50;
  // "vpmlp": the continuous MLP on the VP SDE for every sampler, DDPM and
  // DDIM included (one model and process for all: per-evaluation costs
  // compare directly).
  const bool discrete =
      kind != "vpmlp" && (sampler == "ddpm" || sampler == "ddim");
  std::shared_ptr<NoiseProcess> process;
  if (discrete) {
    process = std::make_shared<DiscreteProcess>(
        Schedule::sigmoid(kSeedT, 1e-5, 5e-3));
  } else {
    process = std::make_shared<VPSDE>();
  }
  std::shared_ptr<Model> model;
  int64_t flops = 0;
  if (kind == "gmm") {
    const double pi = std::acos(-1.0);
    auto angles = torch::arange(8, torch::kDouble) * (2 * pi / 8);
    auto means = torch::stack({torch::cos(angles), torch::sin(angles)}, 1) * 2;
    GaussianMixture gmm(
        torch::ones({8}, torch::kDouble),
        means.to(device),
        torch::full({8}, 0.1, torch::kDouble).to(device));
    model = std::make_shared<Model>(
        gmm.model(process, discrete ? Prediction::Epsilon : Prediction::Score));
  } else {
    MLPOptions o(2);
    if (discrete) {
      o.num_timesteps(kSeedT);
    } else {
      o.embedding(TimeEmbeddingKind::Sinusoidal).time_scale(1000);
    }
    MLP net(o);
    net->to(device);
    model = std::make_shared<Model>(net, Prediction::Epsilon);
    torch::NoGradGuard ng;
    auto x = torch::randn({kPoints, 2}, torch::device(device));
    auto t =
        discrete
            ? torch::zeros({kPoints}, torch::dtype(torch::kLong).device(device))
            : torch::rand({kPoints}, torch::device(device));
    flops = count_flops([&] { net->forward(x, t); });
  }
  const std::string& name = sampler;
  const int64_t steps = !discrete           ? kSteps
                        : sampler == "ddpm" ? kSeedT
                                            : kDdimSteps;
  if (sampler == "pc" || sampler == "ode" || sampler == "heun") {
    flops *= 2;
  }
  Workload w;
  w.default_iters = 20;
  w.sync = [device] { sync_device(device); };
  w.steps_per_call = steps;
  w.flops = flops;
  auto opts = samplers::SampleOptions().sampler(name).steps(steps);
  opts.common().device(device);
  samplers::sample(*model, *process, {2, 2}, opts);  // checks the name
  w.step = [model, process, opts] {
    samplers::sample(*model, *process, {kPoints, 2}, opts);
  };
  return w;
}

// Whole runs of the named sampler (10 grid steps) for 64 MNIST images with
// the demo's U-Net (VE, sigma = 25, a score network), reported per model
// evaluation: mnist_run_<sampler>. The cost of a sampler beyond its model
// calls shows as the excess over mnist_forward.
Workload mnist_run(torch::Device device, const std::string& sampler) {
  constexpr int64_t kSteps = 10;
  auto sde = std::make_shared<VESDE>(kSigma);
  UNet net = mnist_unet(sde);
  net->to(device);
  net->eval();
  auto model = std::make_shared<Model>(net, Prediction::Score);
  auto opts = samplers::SampleOptions().sampler(sampler).steps(kSteps);
  opts.common().device(device);
  const std::vector<int64_t> shape{kMnistSampleBatch, 1, 28, 28};
  Workload w;
  w.default_iters = 3;
  w.sync = [device] { sync_device(device); };
  w.steps_per_call = samplers::sample(*model, *sde, shape, opts).nfe;
  {
    torch::NoGradGuard ng;
    auto x = torch::randn(shape, torch::device(device));
    auto t = torch::rand({kMnistSampleBatch}, torch::device(device));
    w.flops = count_flops([&] { net->forward(x, t); });
  }
  w.step = [model, sde, opts, shape] {
    samplers::sample(*model, *sde, shape, opts);
  };
  return w;
}

// Classifier-free guidance against plain conditional sampling, per sampler
// step (dpmpp_2m): <guided|conditional>_<mlp|mnist|mnist_every>. mlp: 1,000
// points and a 128-unit class-conditional MLP (8 classes) on the VP SDE, 20
// steps; mnist: 64 images and the conditional demo's U-Net with 10 classes
// in the up path (class_up_path_only), 10 steps; mnist_every: the same U-Net
// with the class in every block. A guided step makes one call for both
// halves: the MLP and mnist_every run over twice the batch, mnist runs its
// down path and middle once and its up path over twice the batch.
Workload guidance_run(
    torch::Device device, const std::string& kind, bool guided) {
  const bool images = kind != "mlp";
  const int64_t n = images ? kMnistSampleBatch : 1000, steps = images ? 10 : 20;
  auto process = std::make_shared<VPSDE>();
  std::shared_ptr<Model> model;
  std::vector<int64_t> shape{n, 2};
  int64_t classes = 8;
  if (images) {
    classes = 10;
    UNet net(UNetOptions(1).num_classes(classes).class_up_path_only(
        kind == "mnist"));
    net->to(device);
    net->eval();
    model = std::make_shared<Model>(net, Prediction::Epsilon);
    shape = {n, 1, 28, 28};
  } else {
    MLP net(MLPOptions(2)
                .hidden(128)
                .embedding(TimeEmbeddingKind::Sinusoidal)
                .time_scale(1000)
                .num_classes(classes));
    net->to(device);
    net->eval();
    model = std::make_shared<Model>(net, Prediction::Epsilon);
  }
  auto labels = torch::arange(n, torch::dtype(torch::kLong).device(device))
                    .remainder(classes);
  auto sampled = std::make_shared<Model>(
      (guided ? classifier_free_guidance(
                    *model, GuidanceOptions(2.0).null_class(classes))
              : *model)
          .with_condition(labels));
  auto opts = samplers::SampleOptions().sampler("dpmpp_2m").steps(steps);
  opts.common().device(device);
  Workload w;
  w.default_iters = images ? 3 : 20;
  w.sync = [device] { sync_device(device); };
  w.steps_per_call = steps;
  w.step = [sampled, process, opts, shape] {
    samplers::sample(*sampled, *process, shape, opts);
  };
  return w;
}

}  // namespace

std::vector<std::string> workload_names() {
  return {"swiss_train", "swiss_sample", "mnist_train", "mnist_sample"};
}

int64_t count_flops(const std::function<void()>& fn) {
  g_flops = 0;
  auto handle = at::addThreadLocalCallback(
      at::RecordFunctionCallback(on_op).needsInputs(true));
  fn();
  at::removeCallback(handle);
  return g_flops.load();
}

Workload make_workload(const std::string& name, torch::Device device) {
  torch::manual_seed(0);
  if (name == "swiss_train")
    return swiss_train(device, "fast");
  if (name == "swiss_train_flat")
    return swiss_train(device, "flat");
  if (name == "swiss_train_naive")
    return swiss_train(device, "naive");
  if (name == "swiss_sample")
    return swiss_sample(device, "fast");
  if (name == "swiss_sample_naive")
    return swiss_sample(device, "naive");
  if (name == "swiss_sample_graph")
    return swiss_sample(device, "graph");
  if (name == "mnist_sample_graph")
    return mnist_sample_graph(device);
  if (name == "mnist_train")
    return mnist_train(device, "flat");
  if (name == "mnist_train_naive")
    return mnist_train(device, "naive");
  if (name == "mnist_sample")
    return mnist_sample(device);
  if (name == "mnist_forward")
    return mnist_forward(device);
  if (name == "gemm_peak")
    return gemm_peak(device);
  for (const char* kind : {"mlp", "mnist", "mnist_every"}) {
    if (name == std::string("guided_") + kind) {
      return guidance_run(device, kind, true);
    }
    if (name == std::string("conditional_") + kind) {
      return guidance_run(device, kind, false);
    }
  }
  if (name.rfind("mnist_run_", 0) == 0) {
    return mnist_run(device, name.substr(10));
  }
  if (name.rfind("sample_", 0) == 0) {
    const auto rest = name.substr(7);
    const auto cut = rest.rfind('_');
    TORCH_CHECK(
        cut != std::string::npos &&
            (rest.substr(cut + 1) == "gmm" || rest.substr(cut + 1) == "mlp" ||
             rest.substr(cut + 1) == "vpmlp"),
        "unknown workload '",
        name,
        "' (sample_<sampler>_<gmm|mlp|vpmlp>, a sampler by name)");
    return sampler_run(device, rest.substr(0, cut), rest.substr(cut + 1));
  }
  TORCH_CHECK(
      false,
      "unknown workload '",
      name,
      "' (swiss_train[_flat|_naive], swiss_sample[_naive|_graph], "
      "mnist_train[_naive], mnist_sample[_graph], mnist_forward, gemm_peak, "
      "sample_<sampler>_<gmm|mlp>, mnist_run_<sampler>, "
      "<guided|conditional>_<mlp|mnist|mnist_every>)");
}

}  // namespace sbgm::bench
