#include <gtest/gtest.h>
#include <sbgm/io/safetensors.h>
#include <sbgm/model_file.h>
#include <sbgm/nets/mlp.h>
#include <sbgm/nets/unet.h>
#include <sbgm/precondition.h>
#include <sbgm/processes/discrete.h>
#include <sbgm/processes/edm.h>
#include <sbgm/processes/ve.h>
#include <sbgm/processes/vp.h>
#include <sbgm/random.h>
#include <sbgm/samplers/samplers.h>
#include <sbgm/schedule.h>
#include <sbgm/train/ema.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <utility>
#include <vector>

#include "support.h"

namespace sbgm {
namespace {

using nlohmann::json;
using test::read_file;
using test::TempDir;
using test::write_file;

class ModelFileTest : public test::SeededTest {};

// A model file split into its JSON header and data section, and put back.
struct Parts {
  json header;
  std::string data;
};

Parts split(const std::string& bytes) {
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) {
    n = (n << 8) | static_cast<unsigned char>(bytes[static_cast<size_t>(i)]);
  }
  return {json::parse(bytes.substr(8, n)), bytes.substr(8 + n)};
}

std::string join(const json& header, const std::string& data) {
  const std::string text = header.dump();
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) {
    out[static_cast<size_t>(i)] =
        static_cast<char>((uint64_t{text.size()} >> (8 * i)) & 0xFF);
  }
  return out + text + data;
}

// Recomputes header_crc32 after an edit, as model_file.h defines it
// (written out here independently of the library), so that a test reaches
// the check behind the checksum.
std::string sealed(json header, const std::string& data) {
  auto& meta = header["__metadata__"];
  meta.erase("header_crc32");
  std::vector<std::pair<uint64_t, std::string>> order;
  for (const auto& item : header.items()) {
    if (item.key() != "__metadata__") {
      order.emplace_back(
          item.value()["data_offsets"][0].get<uint64_t>(), item.key());
    }
  }
  std::sort(order.begin(), order.end());
  const std::map<std::string, std::string> dtypes = {
      {"F32", "Float"}, {"F64", "Double"}, {"I64", "Long"}};
  json table = json::array();
  for (const auto& entry : order) {
    const auto& t = header[entry.second];
    table.push_back(
        {entry.second, dtypes.at(t["dtype"].get<std::string>()), t["shape"]});
  }
  const auto text = json{{"metadata", meta}, {"tensors", table}}.dump();
  char hex[9];
  std::snprintf(hex, sizeof hex, "%08x", io::crc32(text.data(), text.size()));
  meta["header_crc32"] = hex;
  return join(header, data);
}

MLP small_mlp(int64_t steps = 0) {
  auto o = MLPOptions(2).hidden(16).depth(2);
  if (steps > 0) {
    o.num_timesteps(steps);
  } else {
    o.embedding(TimeEmbeddingKind::Sinusoidal).time_scale(100.0);
  }
  MLP net(o);
  // Non-zero learned tables, so that the step embeddings matter.
  torch::NoGradGuard g;
  for (auto& p : net->parameters()) {
    p.normal_(0.0, 0.3);
  }
  return net;
}

torch::Tensor sample_with(const Model& model, const NoiseProcess& process) {
  auto o = samplers::SampleOptions().sampler("ddim").steps(8);
  o.common().generator(make_generator(7));
  return samplers::sample(model, process, {16, 2}, o).samples;
}

TEST(SafetensorsTest, Crc32MatchesTheStandardCheckValue) {
  const std::string s = "123456789";
  EXPECT_EQ(io::crc32(s.data(), s.size()), 0xCBF43926u);
  // Continuing a CRC over two parts gives the CRC of the whole.
  EXPECT_EQ(io::crc32(s.data() + 4, 5, io::crc32(s.data(), 4)), 0xCBF43926u);
}

TEST(SafetensorsTest, ReadsAHandWrittenFile) {
  TempDir dir;
  // Two float32 values and one int64, little-endian, as Python writes them.
  json h = {
      {"__metadata__", {{"k", "v"}}},
      {"a", {{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {0, 8}}}},
      {"b", {{"dtype", "I64"}, {"shape", {1, 1}}, {"data_offsets", {8, 16}}}}};
  const float a[2] = {1.5f, -2.0f};
  const int64_t b = 258;
  std::string data(16, '\0');
  std::memcpy(data.data(), a, 8);
  std::memcpy(data.data() + 8, &b, 8);
  write_file(dir.file("x.safetensors"), join(h, data));
  const auto f = io::load_safetensors(dir.file("x.safetensors"));
  EXPECT_EQ(f.metadata.at("k"), "v");
  ASSERT_EQ(f.tensors.size(), 2u);
  EXPECT_TRUE(torch::equal(f.at("a"), torch::tensor({1.5f, -2.0f})));
  EXPECT_EQ(f.at("b").sizes(), (std::vector<int64_t>{1, 1}));
  EXPECT_EQ(f.at("b").item<int64_t>(), 258);
  EXPECT_EQ(f.data_crc32, io::crc32(data.data(), data.size()));
  EXPECT_FALSE(f.contains("c"));
  EXPECT_THROW_MSG(f.at("c"), "no tensor named 'c'");
}

TEST(SafetensorsTest, WritesAlignedHeaderAndRoundTrips) {
  TempDir dir;
  const auto path = dir.file("t.safetensors");
  io::NamedTensors in = {
      {"w", torch::randn({3, 4}).t()},  // not contiguous
      {"d", torch::randn({5}, torch::kDouble)},
      {"h", torch::randn({2}).to(torch::kBFloat16)},
      {"i", torch::arange(4)}};
  io::save_safetensors(path, in, {{"m", "1"}});
  const auto bytes = read_file(path);
  const auto parts = split(bytes);
  EXPECT_EQ((bytes.size() - parts.data.size()) % 8, 0u);
  const auto out = io::load_safetensors(path);
  ASSERT_EQ(out.tensors.size(), in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    EXPECT_EQ(out.tensors[i].first, in[i].first);
    EXPECT_TRUE(torch::equal(out.tensors[i].second, in[i].second));
  }
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
}

TEST(SafetensorsTest, RejectsBadNames) {
  TempDir dir;
  const auto path = dir.file("t.safetensors");
  auto t = torch::zeros({1});
  EXPECT_THROW_MSG(
      io::save_safetensors(path, {{"a", t}, {"a", t}}),
      "tensor name 'a' appears twice");
  EXPECT_THROW_MSG(
      io::save_safetensors(path, {{"__metadata__", t}}),
      "invalid tensor name '__metadata__'");
  EXPECT_THROW_MSG(
      io::save_safetensors(
          path, {{"c", torch::zeros({1}, torch::kComplexFloat)}}),
      "is not supported");
}

TEST_F(ModelFileTest, MlpRoundTripGivesTheSameOutputsAndSamples) {
  TempDir dir;
  const auto path = dir.file("m.safetensors");
  DiscreteProcess process(Schedule::cosine(50));
  auto net = small_mlp(50);
  save_model(
      path,
      net,
      Prediction::Epsilon,
      process,
      SaveModelOptions().training(TrainingInfo{120, 3.5, 0.25}));
  const auto m = load_model(path);
  EXPECT_EQ(m.network_kind, "mlp");
  EXPECT_EQ(m.sample_shape, (std::vector<int64_t>{2}));
  EXPECT_EQ(m.model.prediction(), Prediction::Epsilon);
  EXPECT_EQ(m.model.discrete_steps(), 50);
  EXPECT_FALSE(m.has_raw);
  EXPECT_EQ(m.format_version, kModelFormatVersion);
  ASSERT_TRUE(m.training.has_value());
  EXPECT_EQ(m.training->step, 120);
  EXPECT_EQ(m.training->train_seconds, 3.5);
  EXPECT_EQ(m.training->final_loss, 0.25);
  const auto x = torch::randn({8, 2});
  const auto t = torch::arange(8) * 6;
  EXPECT_TRUE(torch::equal(m.model(x, t), net->forward(x, t)));
  const Model original(net, Prediction::Epsilon);
  EXPECT_TRUE(torch::equal(
      sample_with(m.model, *m.process), sample_with(original, process)));
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
}

// A class-conditional net keeps its classes: the loaded model is
// conditional and gives the same outputs for the same labels.
TEST_F(ModelFileTest, ConditionalNetsRoundTrip) {
  TempDir dir;
  const auto path = dir.file("c.safetensors");
  VPSDE process;
  MLP net(MLPOptions(2)
              .hidden(16)
              .embedding(TimeEmbeddingKind::Sinusoidal)
              .num_classes(3)
              .class_dropout(0.2));
  {
    torch::NoGradGuard ng;
    for (auto& p : net->parameters()) {
      p.normal_();
    }
  }
  net->eval();
  save_model(path, net, Prediction::Epsilon, process);
  const auto m = load_model(path);
  ASSERT_TRUE(m.model.is_conditional());
  const auto x = torch::randn({6, 2});
  const auto t = torch::rand({6});
  const auto c = torch::tensor({0, 1, 2, 3, 0, 1});
  EXPECT_TRUE(torch::equal(m.model(x, t, c), net->forward(x, t, c)));
  EXPECT_TRUE(torch::equal(m.model(x, t), net->forward(x, t)));

  // A U-Net whose class enters the up path only keeps that, and its
  // loaded model still shares the down path between guidance's halves.
  UNet unet(UNetOptions(1)
                .channels({8, 16})
                .groups(4)
                .num_classes(4)
                .class_up_path_only(true));
  {
    torch::NoGradGuard ng;
    for (auto& p : unet->parameters()) {
      p.normal_(0, 0.2);
    }
  }
  unet->eval();
  const auto upath = dir.file("u.safetensors");
  save_model(
      upath,
      unet,
      Prediction::Epsilon,
      process,
      SaveModelOptions().sample_shape({1, 8, 8}));
  const auto u = load_model(upath);
  ASSERT_TRUE(u.model.is_conditional());
  EXPECT_TRUE(u.model.shares_condition_work());
  const auto xi = torch::randn({4, 1, 8, 8});
  const auto ti = torch::rand({4});
  const auto ci = torch::tensor({0, 1, 2, 4});
  EXPECT_TRUE(torch::equal(u.model(xi, ti, ci), unet->forward(xi, ti, ci)));
}

TEST_F(ModelFileTest, EveryProcessRoundTrips) {
  TempDir dir;
  std::vector<std::shared_ptr<NoiseProcess>> processes = {
      std::make_shared<VPSDE>(0.2, 15.0),
      std::make_shared<SubVPSDE>(0.1, 19.0),
      std::make_shared<VESDE>(30.0),
      std::make_shared<GeometricVESDE>(0.02, 40.0),
      std::make_shared<EDMProcess>(0.003, 70.0, 0.6),
      std::make_shared<DiscreteProcess>(
          Schedule::sigmoid(40, 1e-4, 0.05).rescale_zero_terminal_snr(),
          DiscreteProcessOptions().quantize(false)),
  };
  auto net = small_mlp();
  for (const auto& p : processes) {
    const auto path = dir.file(p->name() + ".safetensors");
    save_model(path, net, Prediction::V, *p);
    const auto m = load_model(path);
    EXPECT_EQ(m.process->name(), p->name());
    EXPECT_EQ(m.process->t_max(), p->t_max());
    EXPECT_EQ(m.process->integer_model_time(), p->integer_model_time());
    for (double u : {0.0, 0.1, 0.5, 0.9, 1.0}) {
      const double t = p->t_min() + u * (p->t_max() - p->t_min());
      EXPECT_EQ(m.process->alpha(t), p->alpha(t)) << p->describe() << " " << t;
      EXPECT_EQ(m.process->sigma(t), p->sigma(t)) << p->describe() << " " << t;
    }
    EXPECT_EQ(m.process->prior_std(), p->prior_std());
  }
}

TEST_F(ModelFileTest, StoresTheEmaForSamplingAndTheTrainedWeightsAsRaw) {
  TempDir dir;
  const auto path = dir.file("m.safetensors");
  VPSDE process;
  auto net = small_mlp();
  EMA ema(*net, 0.5, /*warmup=*/false);
  {
    torch::NoGradGuard g;
    for (auto& p : net->parameters()) {
      p.add_(1.0);
    }
  }
  ema.update(*net);  // the average now differs from the weights by 0.5
  save_model(
      path, net, Prediction::Epsilon, process, SaveModelOptions().ema(&ema));
  const auto sampling = load_model(path);
  const auto raw = load_model(path, torch::kCPU, ModelWeights::Raw);
  EXPECT_TRUE(sampling.has_raw);
  const auto ps = sampling.network->named_parameters();
  const auto pr = raw.network->named_parameters();
  for (size_t i = 0; i < ema.shadow().size(); ++i) {
    EXPECT_TRUE(torch::equal(ps[ema.names()[i]], ema.shadow()[i]));
    EXPECT_TRUE(torch::equal(pr[ema.names()[i]], net->parameters()[i]));
  }
  // Without save_raw there are no trained weights to ask for.
  save_model(
      path,
      net,
      Prediction::Epsilon,
      process,
      SaveModelOptions().ema(&ema).save_raw(false));
  EXPECT_FALSE(load_model(path).has_raw);
  EXPECT_THROW_MSG(
      load_model(path, torch::kCPU, ModelWeights::Raw),
      "has no tensor 'raw.layers.0.weight'");
}

TEST_F(ModelFileTest, UnetDividedBySigmaAndEdmPreconditionedRoundTrip) {
  TempDir dir;
  auto process = std::make_shared<VESDE>(25.0);
  auto o = UNetOptions(1).channels({8, 16}).groups(4).time_dim(16);
  o.marginal_std(
      [process](const torch::Tensor& t) { return process->sigma(t); });
  UNet net(o);
  net->eval();
  const auto path = dir.file("u.safetensors");
  save_model(
      path,
      net,
      Prediction::Score,
      *process,
      SaveModelOptions().sample_shape({1, 6, 5}));
  const auto m = load_model(path);
  EXPECT_EQ(m.network_kind, "unet");
  EXPECT_EQ(m.sample_shape, (std::vector<int64_t>{1, 6, 5}));
  const auto x = torch::randn({3, 1, 6, 5});
  const auto t = torch::rand({3}) * 0.9 + 0.05;
  EXPECT_TRUE(torch::equal(m.model(x, t), net->forward(x, t)));

  // EDM: the stored network is wrapped in the preconditioning again.
  auto edm = std::make_shared<EDMProcess>();
  UNet raw(UNetOptions(1).channels({8, 16}).groups(4).time_dim(16));
  raw->eval();
  const auto edm_path = dir.file("e.safetensors");
  save_model(
      edm_path,
      raw,
      Prediction::X0,
      *edm,
      SaveModelOptions().sample_shape({1, 6, 5}).edm_sigma_data(0.5));
  const auto e = load_model(edm_path);
  const Model expected = edm_precondition(
      [raw](const torch::Tensor& x, const torch::Tensor& c) mutable {
        return raw->forward(x, c);
      },
      edm,
      0.5);
  const auto s = torch::rand({3}) * 10 + 0.1;
  EXPECT_EQ(e.model.prediction(), expected.prediction());
  EXPECT_TRUE(torch::equal(e.model(x, s), expected(x, s)));
}

TEST_F(ModelFileTest, SaveRejectsWhatItCannotStore) {
  TempDir dir;
  const auto path = dir.file("m.safetensors");
  auto net = small_mlp();
  VPSDE vp;
  EXPECT_THROW_MSG(
      save_model(
          path,
          net,
          Prediction::Epsilon,
          vp,
          SaveModelOptions().sample_shape({3})),
      "takes samples of shape [2], got sample_shape [3]");
  UNet unet(UNetOptions(1).channels({8}).groups(4).time_dim(8));
  EXPECT_THROW_MSG(
      save_model(path, unet, Prediction::Epsilon, vp),
      "a UNet needs sample_shape {1, H, W}, got []");
  EXPECT_THROW_MSG(
      save_model(
          path,
          net,
          Prediction::Epsilon,
          vp,
          SaveModelOptions().edm_sigma_data(-1)),
      "edm_sigma_data must be finite and >= 0, got -1");
  struct Odd : VPSDE {
    std::string name() const override {
      return "odd";
    }
  } odd;
  // An Odd is a VPSDE and is stored as one; a process of no known family
  // is refused (a GMM-style user process is simulated by a Schedule-free
  // subclass of NoiseProcess below).
  struct Custom : NoiseProcess {
    std::string name() const override {
      return "custom";
    }
    std::string describe() const override {
      return "custom()";
    }
    double t_max() const override {
      return 1;
    }
    double t_min() const override {
      return 0.01;
    }
    double t_floor() const override {
      return 0;
    }
    double data_time() const override {
      return 0;
    }
    double prior_std() const override {
      return 1;
    }

   protected:
    double alpha_impl(double) const override {
      return 1;
    }
    torch::Tensor alpha_impl(const torch::Tensor& t) const override {
      return torch::ones_like(t);
    }
    double sigma_impl(double t) const override {
      return t;
    }
    torch::Tensor sigma_impl(const torch::Tensor& t) const override {
      return t;
    }
  } custom;
  save_model(path, net, Prediction::Epsilon, odd);
  EXPECT_EQ(load_model(path).process->name(), "vp");
  EXPECT_THROW_MSG(
      save_model(path, net, Prediction::Epsilon, custom),
      "cannot store the process custom()");
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
}

// ---- damaged files: each gets its own clear error, before any allocation
// larger than the file.

class DamagedModelFile : public ModelFileTest {
 protected:
  void SetUp() override {
    save_model(path(), small_mlp(), Prediction::Epsilon, VPSDE());
    bytes_ = read_file(path());
  }
  std::string path() const {
    return dir_.file("m.safetensors");
  }
  TempDir dir_;
  std::string bytes_;
};

TEST_F(DamagedModelFile, Truncated) {
  write_file(path(), bytes_.substr(0, bytes_.size() - 10));
  EXPECT_THROW_MSG(load_model(path()), "the file is truncated or damaged");
  write_file(path(), bytes_.substr(0, 5));
  EXPECT_THROW_MSG(
      load_model(path()), "is truncated: 5 bytes, shorter than the 8-byte");
  write_file(path(), bytes_.substr(0, 40));
  EXPECT_THROW_MSG(
      load_model(path()), "runs past the end of the file (40 bytes)");
}

TEST_F(DamagedModelFile, WrongMagic) {
  // A zip archive (what torch::save writes) read as a header length.
  write_file(path(), "PK\x03\x04" + std::string(60, 'x'));
  EXPECT_THROW_MSG(load_model(path()), "runs past the end of the file");
  // A plausible length but no JSON object.
  std::string b = bytes_;
  b[8] = 'X';
  write_file(path(), b);
  EXPECT_THROW_MSG(
      load_model(path()), "wrong magic: the header does not start");
  // Valid safetensors from elsewhere.
  auto p = split(bytes_);
  p.header["__metadata__"]["format"] = "pt";
  write_file(path(), join(p.header, p.data));
  EXPECT_THROW_MSG(
      load_model(path()),
      "not an sbgm model (wrong magic: its metadata 'format' is 'pt'");
  p.header.erase("__metadata__");
  write_file(path(), join(p.header, p.data));
  EXPECT_THROW_MSG(load_model(path()), "'format' is missing");
}

TEST_F(DamagedModelFile, HeaderLengthPastTheEnd) {
  std::string b = bytes_;
  b[6] = '\x01';  // + 2^48
  write_file(path(), b);
  EXPECT_THROW_MSG(load_model(path()), "runs past the end of the file");
}

TEST_F(DamagedModelFile, TensorBytesOverrun) {
  auto p = split(bytes_);
  p.header["out.bias"]["data_offsets"][1] = p.data.size() + 4;
  write_file(path(), join(p.header, p.data));
  EXPECT_THROW_MSG(load_model(path()), "tensor 'out.bias' has bytes [");
  EXPECT_THROW_MSG(load_model(path()), "that overrun the data section");
  // A shape of 2^40 floats claims 4 TiB: refused, not allocated.
  p = split(bytes_);
  p.header["out.bias"]["shape"] = {uint64_t{1} << 40};
  write_file(path(), join(p.header, p.data));
  EXPECT_THROW_MSG(load_model(path()), "need 4398046511104");
  p.header["out.bias"]["shape"] = {uint64_t{1} << 40, uint64_t{1} << 40};
  write_file(path(), join(p.header, p.data));
  EXPECT_THROW_MSG(load_model(path()), "has a shape too large for the file");
  p = split(bytes_);
  p.header["out.bias"]["dtype"] = "F8";
  write_file(path(), join(p.header, p.data));
  EXPECT_THROW_MSG(
      load_model(path()), "tensor 'out.bias' has unsupported dtype 'F8'");
}

TEST_F(DamagedModelFile, NameMissing) {
  auto p = split(bytes_);
  p.header.erase("out.weight");
  write_file(path(), sealed(p.header, p.data));
  EXPECT_THROW_MSG(
      load_model(path()),
      "has no tensor 'out.weight', which the network its config describes "
      "needs");
}

TEST_F(DamagedModelFile, NewerVersion) {
  auto p = split(bytes_);
  p.header["__metadata__"]["format_version"] = "3";
  write_file(path(), join(p.header, p.data));
  EXPECT_THROW_MSG(
      load_model(path()),
      "has format version 3, newer than this build of sbgm reads (2)");
  p.header["__metadata__"]["format_version"] = "two";
  write_file(path(), join(p.header, p.data));
  EXPECT_THROW_MSG(load_model(path()), "invalid format_version 'two'");
}

TEST_F(DamagedModelFile, ChecksumMismatch) {
  std::string b = bytes_;
  b[b.size() - 3] ^= 0x10;  // one bit of the last tensor
  write_file(path(), b);
  EXPECT_THROW_MSG(
      load_model(path()), "fails its checksum: the data's CRC-32 is");
  auto p = split(bytes_);
  p.header["__metadata__"].erase("data_crc32");
  write_file(path(), join(p.header, p.data));
  EXPECT_THROW_MSG(load_model(path()), "has no data_crc32");
}

TEST_F(DamagedModelFile, ConfigNotMatchingTheWeights) {
  auto p = split(bytes_);
  auto config =
      json::parse(p.header["__metadata__"]["config"].get<std::string>());
  config["network"]["hidden"] = 32;
  p.header["__metadata__"]["config"] = config.dump();
  write_file(path(), sealed(p.header, p.data));
  EXPECT_THROW_MSG(
      load_model(path()),
      "the config does not match the weights: tensor 'layers.0.weight' has "
      "shape [16, 2] in the file but [32, 2] in the network");
  config["network"]["hidden"] = 16;
  config["network"]["depth"] = 1;
  p.header["__metadata__"]["config"] = config.dump();
  write_file(path(), sealed(p.header, p.data));
  EXPECT_THROW_MSG(
      load_model(path()), "the file has a tensor 'layers.1.weight' that");
  config["network"]["depth"] = 0;
  p.header["__metadata__"]["config"] = config.dump();
  write_file(path(), sealed(p.header, p.data));
  EXPECT_THROW_MSG(
      load_model(path()),
      "has a config that cannot be used: MLP: depth must be > 0, got 0");
  config["network"]["depth"] = 2;
  config["process"]["name"] = "vq";
  p.header["__metadata__"]["config"] = config.dump();
  write_file(path(), sealed(p.header, p.data));
  EXPECT_THROW_MSG(load_model(path()), "unknown process 'vq'; registered:");
  config["process"].erase("name");
  p.header["__metadata__"]["config"] = config.dump();
  write_file(path(), sealed(p.header, p.data));
  EXPECT_THROW_MSG(
      load_model(path()), "must be an object with a string \"name\"");
  config["process"]["name"] = "vp";
  config["sample_shape"] = json::array();
  p.header["__metadata__"]["config"] = config.dump();
  write_file(path(), sealed(p.header, p.data));
  EXPECT_THROW_MSG(
      load_model(path()), "the sample_shape [] does not fit the network ([2])");
  config["sample_shape"] = {2};
  config["network"]["hidden"] = "wide";
  p.header["__metadata__"]["config"] = config.dump();
  write_file(path(), sealed(p.header, p.data));
  EXPECT_THROW_MSG(load_model(path()), "invalid config for network 'mlp'");
  p.header["__metadata__"]["config"] = "{not json";
  write_file(path(), sealed(p.header, p.data));
  EXPECT_THROW_MSG(load_model(path()), "has an invalid config");
}

TEST_F(DamagedModelFile, MissingFile) {
  EXPECT_THROW_MSG(load_model(dir_.file("none")), "cannot read '");
}

// ---- the header's checksum -------------------------------------------------

// Everything a loaded model is: configs, shapes, maps and weights.
void expect_same_model(const LoadedModel& a, const LoadedModel& b) {
  EXPECT_EQ(a.network_kind, b.network_kind);
  EXPECT_EQ(*a.network_config, *b.network_config);
  EXPECT_EQ(a.process->config(), b.process->config());
  EXPECT_EQ(a.model.prediction(), b.model.prediction());
  EXPECT_EQ(a.sample_shape, b.sample_shape);
  const auto& ta = a.data_transform;
  const auto& tb = b.data_transform;
  EXPECT_EQ(ta.scale(), tb.scale());
  EXPECT_EQ(ta.shift(), tb.shift());
  EXPECT_EQ(ta.clamp(), tb.clamp());
  EXPECT_EQ(ta.clamp_min(), tb.clamp_min());
  EXPECT_EQ(ta.clamp_max(), tb.clamp_max());
  ASSERT_EQ(a.training.has_value(), b.training.has_value());
  if (a.training) {
    EXPECT_EQ(a.training->step, b.training->step);
    EXPECT_EQ(a.training->train_seconds, b.training->train_seconds);
  }
  EXPECT_EQ(a.has_raw, b.has_raw);
  const auto pa = a.network->named_parameters();
  const auto pb = b.network->named_parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i) {
    EXPECT_EQ(pa[i].key(), pb[i].key());
    EXPECT_TRUE(torch::equal(pa[i].value(), pb[i].value()));
  }
}

// Every bit of the header (its 8-byte length and the JSON: config,
// version, checksums, tensor table), flipped in turn: each flip is refused
// with an error naming the file, or loads the same model.
TEST_F(ModelFileTest, EveryHeaderBitFlipIsRefusedOrHarmless) {
  TempDir dir;
  const auto path = dir.file("m.safetensors");
  MLP net(MLPOptions(2)
              .hidden(4)
              .depth(1)
              .embedding(TimeEmbeddingKind::Sinusoidal)
              .time_scale(100.0));
  save_model(
      path,
      net,
      Prediction::Epsilon,
      VPSDE(0.1, 20.0),
      SaveModelOptions()
          .data_transform(DataTransform().scale(0.5).shift({0.5}).clamp(true))
          .training(TrainingInfo{10, 1.5, 0.25}));
  const auto bytes = read_file(path);
  const auto original = load_model(path);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) {
    n = (n << 8) | static_cast<unsigned char>(bytes[static_cast<size_t>(i)]);
  }
  ASSERT_LT(8 + n, bytes.size());
  // Each byte once, its bit cycling through all eight positions along the
  // header (every bit of every byte, 8x the loads, also passes).
  int refused = 0;
  int harmless = 0;
  for (size_t i = 0; i < 8 + n; ++i) {
    const int bit = static_cast<int>(i % 8);
    std::string b = bytes;
    b[i] = static_cast<char>(b[i] ^ (1 << bit));
    write_file(path, b);
    std::optional<LoadedModel> m;
    try {
      m = load_model(path);
    } catch (const c10::Error& e) {
      const std::string msg = e.what_without_backtrace();
      EXPECT_NE(msg.find(path), std::string::npos)
          << "byte " << i << " bit " << bit << ": " << msg;
      ++refused;
      continue;
    }
    SCOPED_TRACE("byte " + std::to_string(i) + " bit " + std::to_string(bit));
    expect_same_model(original, *m);
    ++harmless;
  }
  RecordProperty("refused", refused);
  RecordProperty("harmless", harmless);
  EXPECT_EQ(refused + harmless, static_cast<int>(8 + n));
  // The config's digits (scale, shift, clamp bounds, time_scale, beta_min,
  // beta_max) are all in the header: nearly every flip must be refused.
  EXPECT_GT(refused, static_cast<int>(n) * 9 / 10);
}

TEST_F(DamagedModelFile, HeaderChecksum) {
  auto p = split(bytes_);
  auto config =
      json::parse(p.header["__metadata__"]["config"].get<std::string>());
  config["process"]["beta_max"] = 21.0;
  p.header["__metadata__"]["config"] = config.dump();
  write_file(path(), join(p.header, p.data));
  EXPECT_THROW_MSG(
      load_model(path()), "fails its header checksum: the header's CRC-32 is ");
  p.header["__metadata__"].erase("header_crc32");
  write_file(path(), join(p.header, p.data));
  EXPECT_THROW_MSG(load_model(path()), "has no header_crc32");
  // Sealed again, the edit is a valid (different) model.
  write_file(path(), sealed(p.header, p.data));
  EXPECT_EQ(
      load_model(path()).process->describe(), "vp(beta_min=0.1, beta_max=21)");
}

// A file written by format version 1 (no header checksum; "kind" for
// "name"; a discrete process's betas at its top level) still loads.
TEST_F(ModelFileTest, FormatVersion1StillLoads) {
  TempDir dir;
  const auto path = dir.file("m.safetensors");
  DiscreteProcess process(Schedule::cosine(20));
  save_model(path, small_mlp(20), Prediction::V, process);
  const auto now = load_model(path);
  auto p = split(read_file(path));
  auto& meta = p.header["__metadata__"];
  meta.erase("header_crc32");
  meta["format_version"] = "1";
  auto config = json::parse(meta["config"].get<std::string>());
  config["network"]["kind"] = "mlp";
  config["network"].erase("name");
  json v1 = {
      {"kind", "discrete"},
      {"betas", config["process"]["schedule"]["betas"]},
      {"quantize", true}};
  config["process"] = v1;
  meta["config"] = config.dump();
  write_file(path, join(p.header, p.data));
  const auto old = load_model(path);
  EXPECT_EQ(old.format_version, 1);
  EXPECT_EQ(old.network_kind, "mlp");
  EXPECT_EQ(old.process->describe(), "discrete(custom, T=20)");
  for (double t : {0.0, 3.0, 7.5, 19.0}) {
    EXPECT_EQ(old.process->sigma(t), now.process->sigma(t));
  }
  auto x = torch::randn({5, 2});
  auto t = torch::tensor({0, 3, 7, 12, 19}, torch::kLong);
  EXPECT_TRUE(torch::equal(old.model(x, t), now.model(x, t)));
}

// ---- a user's own network and process, saved, loaded and sampled by name

struct TinyNetImpl : torch::nn::Module {
  explicit TinyNetImpl(int64_t dim) : dim(dim) {
    lin = register_module("lin", torch::nn::Linear(dim + 1, dim));
  }
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& t) {
    auto tt = t.to(x.dtype()).reshape({-1, 1}).expand({x.size(0), 1});
    return lin(torch::cat({x, tt}, 1));
  }
  int64_t dim;
  torch::nn::Linear lin{nullptr};
};
TORCH_MODULE(TinyNet);

Network tiny_network(const TinyNet& net) {
  auto n = make_network(
      "tiny_net",
      std::make_shared<const Config>(
          Config{{"name", "tiny_net"}, {"dim", net->dim}}),
      net);
  const int64_t d = net->dim;
  n.sample_shape = [d](const std::vector<int64_t>& shape) {
    return shape.empty() ? std::vector<int64_t>{d} : shape;
  };
  return n;
}

// A VP process written by a user: names, config, range and alpha, sigma.
class UserVP : public NoiseProcess {
 public:
  explicit UserVP(double beta_max) : beta_max_(beta_max) {}
  std::string name() const override {
    return "user_vp";
  }
  std::string describe() const override {
    return "user_vp(" + std::to_string(beta_max_) + ")";
  }
  Config config() const override {
    return {{"name", "user_vp"}, {"beta_max", beta_max_}};
  }
  double t_max() const override {
    return 1.0;
  }
  double t_min() const override {
    return 1e-3;
  }
  double t_floor() const override {
    return 0.0;
  }
  double data_time() const override {
    return 0.0;
  }
  double prior_std() const override {
    return 1.0;
  }

 protected:
  double B(double t) const {
    return 0.1 * t + 0.5 * (beta_max_ - 0.1) * t * t;
  }
  torch::Tensor B(const torch::Tensor& t) const {
    return 0.1 * t + 0.5 * (beta_max_ - 0.1) * t * t;
  }
  double alpha_impl(double t) const override {
    return std::exp(-0.5 * B(t));
  }
  torch::Tensor alpha_impl(const torch::Tensor& t) const override {
    return torch::exp(-0.5 * B(t));
  }
  double sigma_impl(double t) const override {
    return std::sqrt(-std::expm1(-B(t)));
  }
  torch::Tensor sigma_impl(const torch::Tensor& t) const override {
    return torch::sqrt(-torch::expm1(-B(t)));
  }

 private:
  double beta_max_;
};

void register_user_pieces() {
  if (!network_registry().contains("tiny_net")) {
    network_registry().add("tiny_net", [](const Config& c) {
      return tiny_network(TinyNet(c.value("dim", int64_t{2})));
    });
  }
  if (!process_registry().contains("user_vp")) {
    process_registry().add("user_vp", [](const Config& c) {
      return std::make_shared<UserVP>(c.value("beta_max", 20.0));
    });
  }
  // A user's sampler: deterministic DDIM written as one loop over the grid
  // with the public update functions.
  if (!samplers::sampler_registry().contains("user_ddim")) {
    samplers::sampler_registry().add("user_ddim", [](const Config&) {
      samplers::Sampler s;
      s.default_steps = [](const NoiseProcess&) { return int64_t{10}; };
      s.run = [](const Model& model,
                 const NoiseProcess& process,
                 torch::IntArrayRef shape,
                 const samplers::GridSpec& grid,
                 const samplers::CommonOptions& options) {
        c10::InferenceMode guard;
        const auto pts = grid.resolve(process, 10).points(process);
        auto x = samplers::initial_state(
            process, pts.front().t, shape, options, "user_ddim");
        samplers::ModelCaller call(model, process);
        samplers::SamplerLoop loop(options, pts.size() - 1, "user_ddim");
        loop.start(x);
        for (size_t i = 0; i + 1 < pts.size(); ++i) {
          auto d = samplers::update::denoised(
              x, call(x, pts[i].t), model.prediction(), pts[i]);
          x = samplers::update::ddim(
              d.x0, d.eps, torch::Tensor(), pts[i], pts[i + 1], 0.0);
          loop.step(static_cast<int64_t>(i + 1), pts[i + 1].t, x, d.x0);
        }
        return loop.finish(x, call.nfe());
      };
      return s;
    });
  }
}

TEST_F(ModelFileTest, UserNetworkProcessAndSamplerSaveLoadAndSampleByName) {
  register_user_pieces();
  TempDir dir;
  const auto path = dir.file("user.safetensors");
  TinyNet net(3);
  UserVP process(15.0);
  save_model(path, tiny_network(net), Prediction::Epsilon, process);
  const auto m = load_model(path);
  EXPECT_EQ(m.network_kind, "tiny_net");
  EXPECT_EQ(*m.network_config, (Config{{"name", "tiny_net"}, {"dim", 3}}));
  EXPECT_EQ(m.process->name(), "user_vp");
  EXPECT_EQ(m.process->config(), process.config());
  EXPECT_EQ(m.sample_shape, (std::vector<int64_t>{3}));
  auto x = torch::randn({4, 3});
  auto t = torch::rand({4});
  torch::NoGradGuard g;
  EXPECT_TRUE(torch::equal(m.model(x, t), net->forward(x, t)));
  // Sampled by a sampler's name, through the loaded pieces alone.
  auto o = samplers::SampleOptions().sampler("ddim").steps(6);
  o.common().generator(make_generator(3));
  const auto loaded = samplers::sample(m.model, *m.process, {8, 3}, o).samples;
  o.common().generator(make_generator(3));
  const auto direct =
      samplers::sample(Model(net, Prediction::Epsilon), process, {8, 3}, o)
          .samples;
  EXPECT_TRUE(torch::isfinite(loaded).all().item<bool>());
  EXPECT_TRUE(torch::equal(loaded, direct));
  // The user's own sampler, by its name, on the loaded user network and
  // process: the same method as the built-in DDIM (eta = 0), so the same
  // samples up to float32 rounding.
  auto u = samplers::SampleOptions().sampler("user_ddim").steps(6);
  u.common().generator(make_generator(3));
  const auto mine = samplers::sample(m.model, *m.process, {8, 3}, u);
  EXPECT_EQ(mine.nfe, 6);
  EXPECT_TRUE(torch::allclose(mine.samples, loaded, 1e-4, 1e-5))
      << (mine.samples - loaded).abs().max().item<double>();
}

TEST_F(ModelFileTest, NetworkConfigsRoundTrip) {
  auto mlp = small_mlp(30);
  auto a = to_network(mlp);
  auto b = network_from_config(Config::parse(a.config->dump()));
  EXPECT_EQ(*a.config, *b.config);
  EXPECT_EQ(b.name, "mlp");
  auto process = std::make_shared<VESDE>(25.0);
  auto o = UNetOptions(1).channels({8, 16}).groups(4).time_dim(16);
  o.marginal_std(
      [process](const torch::Tensor& t) { return process->sigma(t); });
  auto u = to_network(UNet(o));
  EXPECT_TRUE(u.config->at("divide_by_sigma").get<bool>());
  auto v = network_from_config(*u.config);
  EXPECT_EQ(*u.config, *v.config);
  ASSERT_TRUE(static_cast<bool>(v.bind_process));
  // Missing options take the defaults.
  EXPECT_EQ(
      *network_from_config(
           {{"name", "mlp"}, {"input_dim", 4}, {"num_timesteps", 10}})
           .config,
      to_config(MLPOptions(4).num_timesteps(10)));
}

TEST_F(ModelFileTest, NetworkRegistryErrors) {
  register_user_pieces();
  TempDir dir;
  const auto path = dir.file("m.safetensors");
  VPSDE vp;
  EXPECT_THROW_MSG(to_network(MLP(nullptr)), "to_network: the MLP is empty");
  EXPECT_THROW_MSG(to_network(UNet(nullptr)), "to_network: the UNet is empty");
  EXPECT_THROW_MSG(
      network_from_config(Config::array()),
      "network_from_config: the config must be an object with a string "
      "\"name\", got []");
  EXPECT_THROW_MSG(
      network_from_config({{"name", "transformer"}}),
      "unknown network 'transformer'; registered: ");
  EXPECT_THROW_MSG(
      network_from_config({{"name", "mlp"}}),
      "invalid config for network 'mlp'");
  if (!network_registry().contains("hollow_net")) {
    network_registry().add(
        "hollow_net", [](const Config&) { return Network{}; });
  }
  EXPECT_THROW_MSG(
      network_from_config({{"name", "hollow_net"}}),
      "the factory of 'hollow_net' returned a network without its module");
  EXPECT_THROW_MSG(
      save_model(path, Network{}, Prediction::Epsilon, vp),
      "save_model: the network '' has no module or no config");
  auto unregistered = tiny_network(TinyNet(2));
  unregistered.name = "not_registered";
  EXPECT_THROW_MSG(
      save_model(path, unregistered, Prediction::Epsilon, vp),
      "save_model: the network 'not_registered' is not registered");
  auto shapeless = tiny_network(TinyNet(2));
  shapeless.sample_shape = nullptr;
  EXPECT_THROW_MSG(
      save_model(path, shapeless, Prediction::Epsilon, vp),
      "save_model: the network 'tiny_net' needs a sample_shape");
  struct Renamed : VPSDE {
    Config config() const override {
      auto c = VPSDE::config();
      c["name"] = "vp_elsewhere";
      return c;
    }
  } renamed;
  EXPECT_THROW_MSG(
      save_model(path, small_mlp(), Prediction::Epsilon, renamed),
      "its config's name 'vp_elsewhere' is not registered");
}

// The fuzz seeds: files of format version 1, and the same models rewritten
// to version 2 by a script that follows model_file.h's definition of
// header_crc32 (Python's json and zlib): each pair loads as one model.
TEST_F(ModelFileTest, SeedFilesOfBothVersionsLoadAlike) {
  const std::string dir =
      std::string(SBGM_TEST_DATA_DIR) + "/../fuzz/corpus/model_file/";
  for (const char* name : {"mlp_vp", "mlp_cosine_discrete"}) {
    SCOPED_TRACE(name);
    const auto v1 = load_model(dir + name + ".safetensors");
    const auto v2 = load_model(dir + name + "_v2.safetensors");
    EXPECT_EQ(v1.format_version, 1);
    EXPECT_EQ(v2.format_version, 2);
    expect_same_model(v1, v2);
  }
}

}  // namespace
}  // namespace sbgm
