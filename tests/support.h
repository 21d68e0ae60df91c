#pragma once

// Shared test fixtures: seeding, devices, closeness helpers.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <spawn.h>
#include <torch/torch.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

extern char** environ;

namespace sbgm::test {

/// Seeds torch's global generator so every test is reproducible.
class SeededTest : public ::testing::Test {
 protected:
  SeededTest() {
    torch::manual_seed(0);
  }
};

/// The devices a device-parametrized test runs on. CUDA cases skip when no
/// GPU is present.
inline std::vector<std::string> test_devices() {
  return {"cpu", "cuda"};
}

class DeviceTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    torch::manual_seed(0);
    if (GetParam() == "cuda" && !torch::cuda::is_available()) {
      GTEST_SKIP() << "CUDA is not available";
    }
  }
  torch::Device device() const {
    return torch::Device(GetParam());
  }
  torch::TensorOptions f32() const {
    return torch::TensorOptions().dtype(torch::kFloat).device(device());
  }
  torch::TensorOptions f64() const {
    return torch::TensorOptions().dtype(torch::kDouble).device(device());
  }
};

#define SBGM_INSTANTIATE_DEVICES(Suite)                \
  INSTANTIATE_TEST_SUITE_P(                            \
      Devices,                                         \
      Suite,                                           \
      ::testing::ValuesIn(sbgm::test::test_devices()), \
      [](const auto& info) { return info.param; })

/// Largest absolute difference, as a double.
inline double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kCPU, torch::kDouble) - b.to(torch::kCPU, torch::kDouble))
      .abs()
      .max()
      .item<double>();
}

/// Asserts elementwise closeness with a message that shows the worst entry.
/// Non-finite entries must match exactly (NaN with NaN, +-Inf with the same
/// Inf); a NaN or Inf on one side only fails.
inline ::testing::AssertionResult all_close(
    const torch::Tensor& a,
    const torch::Tensor& b,
    double rtol = 1e-6,
    double atol = 1e-9) {
  if (a.sizes() != b.sizes()) {
    return ::testing::AssertionFailure()
           << "shapes differ: " << a.sizes() << " vs " << b.sizes();
  }
  auto x = a.to(torch::kCPU, torch::kDouble).reshape({-1});
  auto y = b.to(torch::kCPU, torch::kDouble).reshape({-1});
  auto xf = x.isfinite(), yf = y.isfinite();
  auto same_nonfinite = (x.isnan() & y.isnan()) | (~xf & ~yf & x.eq(y));
  auto mismatch = (xf != yf) | (~xf & ~yf & ~same_nonfinite);
  if (mismatch.any().item<bool>()) {
    auto i = mismatch.nonzero()[0][0].item<int64_t>();
    return ::testing::AssertionFailure()
           << "entry " << i << ": " << x[i].item<double>() << " vs "
           << y[i].item<double>() << " (non-finite on one side)";
  }
  auto both = xf & yf;
  auto err = torch::where(
      both, (x - y).abs() - (y.abs() * rtol + atol), torch::full_like(x, -1));
  if (err.numel() == 0) {
    return ::testing::AssertionSuccess();
  }
  auto worst = err.argmax().item<int64_t>();
  if (err[worst].item<double>() > 0) {
    return ::testing::AssertionFailure()
           << "entry " << worst << ": " << x[worst].item<double>() << " vs "
           << y[worst].item<double>() << " (rtol " << rtol << ", atol " << atol
           << ")";
  }
  return ::testing::AssertionSuccess();
}

/// Expects `stmt` to throw a c10::Error whose message contains `substr`.
#define EXPECT_THROW_MSG(stmt, substr)                                        \
  do {                                                                        \
    try {                                                                     \
      stmt;                                                                   \
      ADD_FAILURE() << "expected an error containing \"" << (substr) << "\""; \
    } catch (const c10::Error& e) {                                           \
      EXPECT_NE(                                                              \
          std::string(e.what_without_backtrace()).find(substr),               \
          std::string::npos)                                                  \
          << "message was: " << e.what_without_backtrace();                   \
    }                                                                         \
  } while (0)

/// A fresh directory per test (named after it and the process), removed
/// afterwards.
class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = std::filesystem::temp_directory_path() /
            (std::string("sbgm_") + info->test_suite_name() + "_" +
             info->name() + "_" + std::to_string(::getpid()));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const {
    return (path_ / name).string();
  }

 private:
  std::filesystem::path path_;
};

/// The whole file as bytes ("" when it cannot be read).
inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

/// Replaces the file with `bytes`.
inline void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
}

/// This process's environment, without the variables `drop` accepts.
inline std::map<std::string, std::string> environment_without(
    const std::function<bool(const std::string& name)>& drop) {
  std::map<std::string, std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string kv(*e);
    const auto eq = kv.find('=');
    if (eq != std::string::npos && !drop(kv.substr(0, eq))) {
      env[kv.substr(0, eq)] = kv.substr(eq + 1);
    }
  }
  return env;
}

/// Starts `exe` with `args` and `env` by posix_spawn (a fresh exec: this
/// process's LibTorch threads are never forked), its stdout and stderr into
/// the file `log`. Returns its pid; throws when it cannot start.
inline pid_t spawn(
    const std::string& exe,
    const std::vector<std::string>& args,
    const std::map<std::string, std::string>& env,
    const std::string& log) {
  std::vector<std::string> env_strings, argv_strings{exe};
  for (const auto& kv : env) {
    env_strings.push_back(kv.first + "=" + kv.second);
  }
  argv_strings.insert(argv_strings.end(), args.begin(), args.end());
  std::vector<char*> envp, argv;
  for (auto& s : env_strings) {
    envp.push_back(s.data());
  }
  envp.push_back(nullptr);
  for (auto& s : argv_strings) {
    argv.push_back(s.data());
  }
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(
      &fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  pid_t pid = -1;
  const int rc =
      posix_spawn(&pid, exe.c_str(), &fa, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) {
    throw std::runtime_error("posix_spawn of " + exe + " failed");
  }
  return pid;
}

}  // namespace sbgm::test
