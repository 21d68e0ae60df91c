// sbgm model files read by PyTorch and written by it, through
// tests/python/interop.py (bench/peer.py's MLP, load_state_dict(strict)).
// Needs a python3 with torch and numpy found at configure time; skips with
// a message without one.

#include <gtest/gtest.h>
#include <sbgm/data/toy2d.h>
#include <sbgm/io/npy.h>
#include <sbgm/losses.h>
#include <sbgm/model_file.h>
#include <sbgm/nets/mlp.h>
#include <sbgm/nets/unet.h>
#include <sbgm/processes/discrete.h>
#include <sbgm/processes/edm.h>
#include <sbgm/processes/ve.h>
#include <sbgm/processes/vp.h>
#include <sbgm/samplers/samplers.h>
#include <sbgm/schedule.h>
#include <sbgm/train/trainer.h>
#include <sys/wait.h>
#include <torch/torch.h>

#include <cstdlib>

#include "support.h"

namespace sbgm {
namespace {

class PythonInteropTest : public test::SeededTest {
 protected:
  void SetUp() override {
    if (std::string(SBGM_TEST_PYTHON).empty()) {
      GTEST_SKIP() << "no python3 with torch and numpy was found when "
                      "configuring (Debian: apt install python3-torch)";
    }
  }
  // Runs interop.py with the arguments; returns its exit status.
  static int interop(const std::string& args) {
    const std::string cmd = std::string("'") + SBGM_TEST_PYTHON + "' '" +
                            SBGM_TEST_PYTHON_DIR + "/interop.py' " + args;
    const int rc = std::system(cmd.c_str());
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  }
  static std::string q(const std::string& path) {
    return "'" + path + "' ";
  }
};

TEST_F(PythonInteropTest, CppTrainedSwissRollModelLoadsInPyTorch) {
  test::TempDir dir;
  // The swiss-roll model, trained briefly with an EMA.
  DiscreteProcess process(Schedule::sigmoid(200, 1e-4, 0.06));
  MLP net(MLPOptions(2).hidden(64).num_timesteps(200));
  const Model model(net, Prediction::Epsilon);
  data::Toy2dSampler data(data::Toy2dSamplerOptions(data::Toy2d::SwissRoll));
  Trainer trainer(
      net,
      [&](int64_t) { return epsilon_loss(model, process, data.sample(128)); },
      TrainerOptions(60).lr(2e-3).ema_decay(0.9).progress(ProgressMode::Off));
  const auto last = trainer.run();
  const auto path = dir.file("model.safetensors");
  save_model(
      path,
      net,
      Prediction::Epsilon,
      process,
      SaveModelOptions()
          .ema(trainer.ema())
          .training(TrainingInfo{60, 0.5, last.loss}));
  // C++'s outputs with the weights it saved for sampling (the EMA's).
  const auto loaded = load_model(path);
  const auto x = torch::randn({64, 2});
  const auto t = torch::randint(0, 200, {64}, torch::kLong);
  torch::Tensor y;
  {
    torch::NoGradGuard g;
    y = loaded.model(x, t);
  }
  io::write_npy(dir.file("x.npy"), x);
  io::write_npy(dir.file("t.npy"), t);
  io::write_npy(dir.file("y.npy"), y);
  EXPECT_EQ(
      interop(
          "check-cpp " + q(path) + q(dir.file("x.npy")) + q(dir.file("t.npy")) +
          q(dir.file("y.npy"))),
      0);
  // The check can fail: outputs of other weights do not match.
  io::write_npy(dir.file("y.npy"), y + 1e-4);
  EXPECT_EQ(
      interop(
          "check-cpp " + q(path) + q(dir.file("x.npy")) + q(dir.file("t.npy")) +
          q(dir.file("y.npy"))),
      1);
}

TEST_F(PythonInteropTest, CppUNetLoadsInPyTorch) {
  test::TempDir dir;
  // bench/peer.py's U-Net: sbgm::UNet's defaults, divided by the VE sigma.
  auto process = std::make_shared<VESDE>(25.0);
  UNet net(UNetOptions(1).marginal_std(
      [process](const torch::Tensor& t) { return process->sigma(t); }));
  net->eval();
  const auto path = dir.file("unet.safetensors");
  save_model(
      path,
      net,
      Prediction::Score,
      *process,
      SaveModelOptions().sample_shape({1, 12, 12}));
  const auto x = torch::randn({3, 1, 12, 12});
  const auto t = torch::rand({3}) * 0.7 + 0.3;
  torch::Tensor y;
  {
    torch::NoGradGuard g;
    y = load_model(path).model(x, t);
  }
  io::write_npy(dir.file("x.npy"), x);
  io::write_npy(dir.file("t.npy"), t);
  io::write_npy(dir.file("y.npy"), y);
  EXPECT_EQ(
      interop(
          "check-cpp " + q(path) + q(dir.file("x.npy")) + q(dir.file("t.npy")) +
          q(dir.file("y.npy"))),
      0);
}

TEST_F(PythonInteropTest, PyTorchTrainedModelLoadsAndSamplesHere) {
  test::TempDir dir;
  const auto path = dir.file("torch.safetensors");
  ASSERT_EQ(
      interop(
          "make-torch " + q(path) + q(dir.file("x.npy")) +
          q(dir.file("t.npy")) + q(dir.file("y.npy"))),
      0);
  const auto m = load_model(path);
  EXPECT_EQ(m.network_kind, "mlp");
  EXPECT_EQ(m.process->name(), "discrete");
  EXPECT_EQ(m.model.discrete_steps(), 200);
  ASSERT_TRUE(m.training.has_value());
  EXPECT_EQ(m.training->step, 300);
  const auto x = io::read_npy(dir.file("x.npy"));
  const auto t = io::read_npy(dir.file("t.npy"));
  const auto y = io::read_npy(dir.file("y.npy"));
  torch::NoGradGuard g;
  EXPECT_TRUE(test::all_close(m.model(x, t), y, 0.0, 1e-6));
  // Sampled here: the standardized swiss roll's scale, no blow-up.
  auto o = samplers::SampleOptions().sampler("ddpm");
  o.common().per_sample_seed(0);
  const auto s = samplers::sample(m.model, *m.process, {1000, 2}, o).samples;
  EXPECT_TRUE(torch::isfinite(s).all().item<bool>());
  const double sd = s.std().item<double>();
  EXPECT_GT(sd, 0.5);
  EXPECT_LT(sd, 1.5);
}

}  // namespace
}  // namespace sbgm
