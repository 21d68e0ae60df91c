#include "sbgm/train/checkpoint.h"

#include <ATen/Context.h>
#include <torch/cuda.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <sstream>
#include <vector>

#ifndef _WIN32
#include <fcntl.h>
#include <unistd.h>
#endif

#include "internal.h"
#include "sbgm/optim/optimizer.h"
#include "sbgm/train/ema.h"

namespace sbgm {

namespace {

constexpr const char* kMagic = "sbgm-checkpoint";

std::vector<std::pair<std::string, torch::Tensor>> named_state(
    const torch::nn::Module& module) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& p : module.named_parameters(/*recurse=*/true)) {
    out.emplace_back(p.key(), p.value());
  }
  for (const auto& b : module.named_buffers(/*recurse=*/true)) {
    out.emplace_back(b.key(), b.value());
  }
  return out;
}

std::string entry_str(const std::string& name, const torch::Tensor& t) {
  return name + " " + detail::shape_str(t);
}

std::vector<std::string> split_lines(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream is(s);
  std::string line;
  while (std::getline(is, line)) {
    out.push_back(line);
  }
  return out;
}

// Flushes a written file to the disk (POSIX only) and checks that it ends
// as a whole zip archive does. Returns "" or what went wrong.
std::string sync_file(const std::string& path) {
#ifndef _WIN32
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) {
    return std::string("cannot reopen it: ") + std::strerror(errno);
  }
  if (::fsync(fd) != 0) {
    const std::string why = std::strerror(errno);
    ::close(fd);
    return "fsync failed: " + why;
  }
  // The zip end-of-central-directory record: its signature sits 22 bytes
  // before the end (torch writes no archive comment).
  unsigned char tail[22] = {};
  const off_t size = ::lseek(fd, 0, SEEK_END);
  const bool ok = size >= 22 && ::pread(fd, tail, 22, size - 22) == 22 &&
                  tail[0] == 0x50 && tail[1] == 0x4b && tail[2] == 0x05 &&
                  tail[3] == 0x06;
  ::close(fd);
  if (!ok) {
    return "the file is incomplete (" + std::to_string(size) +
           " bytes, no zip end record): is the disk full?";
  }
  return "";
#else
  (void)path;
  return "";
#endif
}

// Writes the archive to `path` through our own file descriptor. torch's
// file writer notices a failed write only in its destructor, and throws
// there, which ends the process (std::terminate) on a full disk; here every
// write is checked and the first error kept. Returns "" or what went wrong.
std::string write_archive(
    torch::serialize::OutputArchive& archive, const std::string& path) {
#ifndef _WIN32
  const int fd =
      ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    return std::strerror(errno);
  }
  std::string error;
  try {
    archive.save_to([&](const void* data, size_t n) -> size_t {
      // After a failure, swallow the rest: torch must not see a short write.
      const char* p = static_cast<const char*>(data);
      size_t left = error.empty() ? n : 0;
      while (left > 0) {
        const ssize_t w = ::write(fd, p, left);
        if (w < 0) {
          if (errno == EINTR) {
            continue;
          }
          error = std::strerror(errno);
          break;
        }
        p += w;
        left -= static_cast<size_t>(w);
      }
      return n;
    });
  } catch (const c10::Error& e) {
    if (error.empty()) {
      error = e.what_without_backtrace();
    }
  }
  if (::close(fd) != 0 && error.empty()) {
    error = std::strerror(errno);
  }
  if (error.empty()) {
    error = sync_file(path);
  }
  return error;
#else
  try {
    archive.save_to(path);
  } catch (const c10::Error& e) {
    return e.what_without_backtrace();
  }
  return "";
#endif
}

void sync_dir_of(const std::string& path) {
#ifndef _WIN32
  auto dir = std::filesystem::path(path).parent_path();
  if (dir.empty()) {
    dir = ".";
  }
  int fd = ::open(dir.c_str(), O_RDONLY);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
#else
  (void)path;
#endif
}

torch::Device module_device(const torch::nn::Module& module) {
  for (const auto& p : named_state(module)) {
    return p.second.device();
  }
  return torch::kCPU;
}

// Opens a checkpoint and checks its header. Throws with `where` and the path.
torch::serialize::InputArchive open_checkpoint(
    const std::string& path,
    std::optional<torch::Device> device,
    CheckpointInfo* info,
    const char* where) {
  TORCH_CHECK(
      std::filesystem::is_regular_file(path),
      where,
      ": no checkpoint file '",
      path,
      "'");
  torch::serialize::InputArchive archive;
  try {
    if (device) {
      archive.load_from(path, *device);
    } else {
      archive.load_from(path);
    }
  } catch (const c10::Error& e) {
    TORCH_CHECK(
        false,
        where,
        ": cannot read '",
        path,
        "': the file is truncated, damaged or not a torch archive (",
        e.what_without_backtrace(),
        ")");
  }
  c10::IValue v;
  TORCH_CHECK(
      archive.try_read("sbgm_magic", v) && v.isString() &&
          v.toStringRef() == kMagic,
      where,
      ": '",
      path,
      "' is not an sbgm checkpoint (no '",
      kMagic,
      "' marker)");
  TORCH_CHECK(
      archive.try_read("sbgm_version", v) && v.isInt(),
      where,
      ": '",
      path,
      "' has no format version");
  info->version = v.toInt();
  TORCH_CHECK(
      info->version == kCheckpointVersion,
      where,
      ": '",
      path,
      "' has checkpoint format version ",
      info->version,
      " but this sbgm reads version ",
      kCheckpointVersion);
  TORCH_CHECK(
      archive.try_read("step", v) && v.isInt(),
      where,
      ": '",
      path,
      "' has no step");
  info->step = v.toInt();
  TORCH_CHECK(
      archive.try_read("fingerprint", v) && v.isString(),
      where,
      ": '",
      path,
      "' has no model fingerprint");
  info->fingerprint = v.toStringRef();
  info->has_optimizer =
      archive.try_read("has_optimizer", v) && v.isBool() && v.toBool();
  info->has_ema = archive.try_read("has_ema", v) && v.isBool() && v.toBool();
  info->has_rng = archive.try_read("has_rng", v) && v.isBool() && v.toBool();
  if (archive.try_read("extra_names", v) && v.isString()) {
    info->extra_names = split_lines(v.toStringRef());
  }
  return archive;
}

void check_fingerprint(
    const std::string& path,
    const std::string& saved,
    const torch::nn::Module& module,
    const char* where) {
  const auto mine = model_fingerprint(module);
  if (mine == saved) {
    return;
  }
  auto a = split_lines(saved);
  auto b = split_lines(mine);
  size_t i = 0;
  while (i < a.size() && i < b.size() && a[i] == b[i]) {
    ++i;
  }
  const std::string sa = i < a.size() ? a[i] : std::string("(nothing)");
  const std::string sb = i < b.size() ? b[i] : std::string("(nothing)");
  TORCH_CHECK(
      false,
      where,
      ": '",
      path,
      "' was saved from a different model: entry ",
      i,
      " is '",
      sa,
      "' in the checkpoint but '",
      sb,
      "' in this model (",
      a.size(),
      " vs ",
      b.size(),
      " tensors)");
}

// Reads the saved model tensors into temporaries (shapes are guaranteed by
// the fingerprint check).
std::vector<torch::Tensor> read_model_tensors(
    torch::serialize::InputArchive& archive,
    const torch::nn::Module& module,
    const std::string& prefix,
    const std::string& path,
    const char* where) {
  auto state = named_state(module);
  std::vector<torch::Tensor> out(state.size());
  for (size_t i = 0; i < state.size(); ++i) {
    torch::Tensor t;
    const bool ok =
        archive.try_read(prefix + std::to_string(i), t, /*is_buffer=*/true);
    TORCH_CHECK(
        ok && t.sizes() == state[i].second.sizes(),
        where,
        ": '",
        path,
        "' lacks a valid tensor for '",
        state[i].first,
        "'");
    out[i] = t;
  }
  return out;
}

void copy_into(
    torch::nn::Module& module, const std::vector<torch::Tensor>& values) {
  torch::NoGradGuard no_grad;
  auto state = named_state(module);
  for (size_t i = 0; i < state.size(); ++i) {
    state[i].second.copy_(values[i]);
  }
}

}  // namespace

std::string model_fingerprint(const torch::nn::Module& module) {
  std::string out;
  for (const auto& p : module.named_parameters(/*recurse=*/true)) {
    out += "param " + entry_str(p.key(), p.value()) + "\n";
  }
  for (const auto& b : module.named_buffers(/*recurse=*/true)) {
    out += "buffer " + entry_str(b.key(), b.value()) + "\n";
  }
  return out;
}

namespace {

// save_checkpoint with the optimizer behind the sbgm::Optimizer interface.
void save_any(
    const std::string& path,
    const torch::nn::Module& module,
    int64_t step,
    const Optimizer* optimizer,
    const EMA* ema,
    bool save_rng,
    const ExtraState& extra) {
  TORCH_CHECK(!path.empty(), "save_checkpoint: the path is empty");
  TORCH_CHECK(step >= 0, "save_checkpoint: step must be >= 0, got ", step);
  std::string extra_names;
  for (const auto& e : extra) {
    TORCH_CHECK(
        !e.first.empty() && e.first.find('\n') == std::string::npos,
        "save_checkpoint: an extra state needs a one-line, non-empty name, "
        "got '",
        e.first,
        "'");
    TORCH_CHECK(
        e.second.defined(),
        "save_checkpoint: the extra state '",
        e.first,
        "' is an undefined tensor");
    TORCH_CHECK(
        extra_names.find(e.first + "\n") != 0 &&
            extra_names.find("\n" + e.first + "\n") == std::string::npos,
        "save_checkpoint: two extra states are named '",
        e.first,
        "'");
    extra_names += e.first + "\n";
  }
  torch::serialize::OutputArchive archive;
  archive.write("sbgm_magic", c10::IValue(std::string(kMagic)));
  archive.write("sbgm_version", c10::IValue(kCheckpointVersion));
  archive.write("step", c10::IValue(step));
  archive.write("fingerprint", c10::IValue(model_fingerprint(module)));
  archive.write("has_optimizer", c10::IValue(optimizer != nullptr));
  archive.write("has_ema", c10::IValue(ema != nullptr));
  archive.write("has_rng", c10::IValue(save_rng));
  {
    auto state = named_state(module);
    for (size_t i = 0; i < state.size(); ++i) {
      archive.write(
          "m" + std::to_string(i),
          state[i].second.detach(),
          /*is_buffer=*/true);
    }
  }
  if (optimizer != nullptr) {
    torch::serialize::OutputArchive sub;
    optimizer->save(sub);
    archive.write("optimizer", sub);
  }
  if (ema != nullptr) {
    torch::serialize::OutputArchive sub;
    ema->save(sub);
    archive.write("ema", sub);
  }
  if (save_rng) {
    archive.write(
        "rng_cpu",
        at::detail::getDefaultCPUGenerator().get_state(),
        /*is_buffer=*/true);
    const int64_t n = torch::cuda::is_available()
                          ? static_cast<int64_t>(torch::cuda::device_count())
                          : 0;
    archive.write("rng_cuda_count", c10::IValue(n));
    for (int64_t i = 0; i < n; ++i) {
      auto gen = at::globalContext().defaultGenerator(
          torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(i)));
      archive.write(
          "rng_cuda_" + std::to_string(i), gen.get_state(), /*is_buffer=*/true);
    }
  }
  if (!extra.empty()) {
    archive.write("extra_names", c10::IValue(extra_names));
    for (size_t i = 0; i < extra.size(); ++i) {
      archive.write(
          "x" + std::to_string(i),
          extra[i].second.detach().cpu(),
          /*is_buffer=*/true);
    }
  }
  const std::string tmp = path + ".tmp";
  const std::string failure = write_archive(archive, tmp);
  if (!failure.empty()) {
    std::error_code ec;
    std::filesystem::remove(tmp, ec);
    TORCH_CHECK(
        false,
        "save_checkpoint: cannot write '",
        tmp,
        "' (",
        failure,
        "); the previous checkpoint at '",
        path,
        "' is unchanged");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  TORCH_CHECK(
      !ec,
      "save_checkpoint: cannot rename '",
      tmp,
      "' to '",
      path,
      "': ",
      ec.message());
  sync_dir_of(path);
}

}  // namespace

CheckpointInfo read_checkpoint_info(const std::string& path) {
  CheckpointInfo info;
  open_checkpoint(path, std::nullopt, &info, "read_checkpoint_info");
  return info;
}

namespace {

// load_checkpoint with the optimizer behind the sbgm::Optimizer interface.
int64_t load_any(
    const std::string& path,
    torch::nn::Module& module,
    Optimizer* optimizer,
    EMA* ema,
    bool restore_rng,
    ExtraState* extra) {
  const char* where = "load_checkpoint";
  CheckpointInfo info;
  auto archive = open_checkpoint(path, module_device(module), &info, where);
  check_fingerprint(path, info.fingerprint, module, where);
  auto values = read_model_tensors(archive, module, "m", path, where);

  torch::serialize::InputArchive opt_sub, ema_sub;
  if (optimizer != nullptr) {
    TORCH_CHECK(
        info.has_optimizer && archive.try_read("optimizer", opt_sub),
        where,
        ": '",
        path,
        "' holds no optimizer state");
  }
  if (ema != nullptr) {
    TORCH_CHECK(
        info.has_ema && archive.try_read("ema", ema_sub),
        where,
        ": '",
        path,
        "' holds no EMA weights");
  }
  torch::Tensor rng_cpu;
  std::vector<torch::Tensor> rng_cuda;
  if (restore_rng && info.has_rng) {
    TORCH_CHECK(
        archive.try_read("rng_cpu", rng_cpu, /*is_buffer=*/true),
        where,
        ": '",
        path,
        "' lacks the CPU generator state");
    c10::IValue v;
    archive.read("rng_cuda_count", v);
    const int64_t n = std::min<int64_t>(
        v.toInt(),
        torch::cuda::is_available()
            ? static_cast<int64_t>(torch::cuda::device_count())
            : 0);
    for (int64_t i = 0; i < n; ++i) {
      torch::Tensor s;
      archive.read("rng_cuda_" + std::to_string(i), s, /*is_buffer=*/true);
      rng_cuda.push_back(s.cpu());
    }
  }
  std::vector<torch::Tensor> extra_values;
  if (extra != nullptr) {
    for (const auto& e : *extra) {
      const auto it =
          std::find(info.extra_names.begin(), info.extra_names.end(), e.first);
      TORCH_CHECK(
          it != info.extra_names.end(),
          where,
          ": '",
          path,
          "' holds no state named '",
          e.first,
          "' (it was saved by a run that did not register it)");
      torch::Tensor t;
      TORCH_CHECK(
          archive.try_read(
              "x" + std::to_string(it - info.extra_names.begin()),
              t,
              /*is_buffer=*/true),
          where,
          ": '",
          path,
          "' lacks the tensor of the state '",
          e.first,
          "'");
      extra_values.push_back(t.cpu());
    }
  }
  // Everything is read; now change state.
  if (ema != nullptr) {
    try {
      ema->load(ema_sub);
    } catch (const c10::Error& e) {
      TORCH_CHECK(
          false,
          where,
          ": '",
          path,
          "': cannot load the EMA weights: ",
          e.what_without_backtrace());
    }
  }
  if (optimizer != nullptr) {
    try {
      optimizer->load(opt_sub);
    } catch (const c10::Error& e) {
      TORCH_CHECK(
          false,
          where,
          ": '",
          path,
          "': cannot load the optimizer state (was it saved from a "
          "different optimizer?): ",
          e.what_without_backtrace());
    }
  }
  copy_into(module, values);
  for (size_t i = 0; i < extra_values.size(); ++i) {
    (*extra)[i].second = extra_values[i];
  }
  if (rng_cpu.defined()) {
    auto cpu_gen = at::detail::getDefaultCPUGenerator();
    cpu_gen.set_state(rng_cpu.cpu());
    for (size_t i = 0; i < rng_cuda.size(); ++i) {
      auto gen = at::globalContext().defaultGenerator(
          torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(i)));
      gen.set_state(rng_cuda[i]);
    }
  }
  return info.step;
}

}  // namespace

namespace {
// A TorchOptimizer over a caller's optimizer that it does not own.
std::unique_ptr<TorchOptimizer> borrow(const torch::optim::Optimizer* opt) {
  if (opt == nullptr) {
    return nullptr;
  }
  return std::make_unique<TorchOptimizer>(
      std::shared_ptr<torch::optim::Optimizer>(
          const_cast<torch::optim::Optimizer*>(opt),
          [](torch::optim::Optimizer*) {}));
}
}  // namespace

void save_checkpoint(
    const std::string& path,
    const torch::nn::Module& module,
    int64_t step,
    const torch::optim::Optimizer* optimizer,
    const EMA* ema,
    bool save_rng,
    const ExtraState& extra) {
  save_any(path, module, step, borrow(optimizer).get(), ema, save_rng, extra);
}

void save_checkpoint(
    const std::string& path,
    const torch::nn::Module& module,
    int64_t step,
    const Optimizer& optimizer,
    const EMA* ema,
    bool save_rng,
    const ExtraState& extra) {
  save_any(path, module, step, &optimizer, ema, save_rng, extra);
}

int64_t load_checkpoint(
    const std::string& path,
    torch::nn::Module& module,
    torch::optim::Optimizer* optimizer,
    EMA* ema,
    bool restore_rng,
    ExtraState* extra) {
  return load_any(
      path, module, borrow(optimizer).get(), ema, restore_rng, extra);
}

int64_t load_checkpoint(
    const std::string& path,
    torch::nn::Module& module,
    Optimizer& optimizer,
    EMA* ema,
    bool restore_rng,
    ExtraState* extra) {
  return load_any(path, module, &optimizer, ema, restore_rng, extra);
}

int64_t load_weights(
    const std::string& path, torch::nn::Module& module, bool prefer_ema) {
  const char* where = "load_weights";
  CheckpointInfo info;
  auto archive = open_checkpoint(path, module_device(module), &info, where);
  check_fingerprint(path, info.fingerprint, module, where);
  auto values = read_model_tensors(archive, module, "m", path, where);
  copy_into(module, values);
  if (prefer_ema && info.has_ema) {
    EMA ema(module, 0.0, false);
    torch::serialize::InputArchive sub;
    archive.read("ema", sub);
    ema.load(sub);
    ema.copy_to(module);
  }
  return info.step;
}

}  // namespace sbgm
