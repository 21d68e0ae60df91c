#include "sbgm/distributed.h"

#include <torch/version.h>

#include <cerrno>
#include <cstdlib>
#include <exception>
#include <sstream>
#include <thread>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/Work.hpp>
#if TORCH_VERSION_MAJOR >= 2
#include <torch/csrc/distributed/c10d/Backend.hpp>
#else
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#endif

#ifdef USE_C10D_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#ifdef USE_C10D_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

extern char** environ;

namespace sbgm {
namespace dist {

namespace {

// LibTorch 2.x made Gloo and NCCL backends of a ProcessGroup; 1.13's were
// ProcessGroups themselves. Their collectives are spelled the same.
#if TORCH_VERSION_MAJOR >= 2
using C10dBackend = c10d::Backend;
#else
using C10dBackend = c10d::ProcessGroup;
#endif

const char kFailureKey[] = "sbgm/failure";

std::string error_text(const std::exception& e) {
  if (auto* c = dynamic_cast<const c10::Error*>(&e)) {
    return c->what_without_backtrace();
  }
  return e.what();
}

int64_t parse_int(
    const std::map<std::string, std::string>& env, const std::string& name) {
  const std::string& s = env.at(name);
  errno = 0;
  char* end = nullptr;
  const long long v = std::strtoll(s.c_str(), &end, 10);
  TORCH_CHECK(
      !s.empty() && end != nullptr && *end == '\0' && errno == 0,
      "sbgm distributed: ",
      name,
      "='",
      s,
      "' is not an integer");
  return static_cast<int64_t>(v);
}

bool is_loopback(const std::string& addr) {
  return addr == "localhost" || addr == "::1" || addr.rfind("127.", 0) == 0;
}

}  // namespace

LaunchInfo launch_info(const std::map<std::string, std::string>& env) {
  auto has = [&](const char* k) { return env.count(k) > 0; };
  LaunchInfo info;
  const bool torchrun = has("RANK") || has("WORLD_SIZE");
  const bool slurm = !torchrun && has("SLURM_PROCID");
  if (!torchrun && !slurm) {
    return info;
  }
  if (torchrun) {
    TORCH_CHECK(
        has("RANK") && has("WORLD_SIZE"),
        "sbgm distributed: ",
        has("RANK") ? "RANK" : "WORLD_SIZE",
        " is set but ",
        has("RANK") ? "WORLD_SIZE" : "RANK",
        " is not (a launcher sets both)");
    info.launcher = "torchrun";
    info.rank = parse_int(env, "RANK");
    info.world_size = parse_int(env, "WORLD_SIZE");
    info.local_rank = has("LOCAL_RANK") ? parse_int(env, "LOCAL_RANK") : 0;
    if (has("MASTER_ADDR")) {
      info.master_addr = env.at("MASTER_ADDR");
    }
    info.agent_store = has("TORCHELASTIC_USE_AGENT_STORE") &&
                       env.at("TORCHELASTIC_USE_AGENT_STORE") == "True";
    if (info.agent_store && has("TORCHELASTIC_RESTART_COUNT")) {
      info.restart_count = parse_int(env, "TORCHELASTIC_RESTART_COUNT");
    }
  } else {
    info.launcher = "slurm";
    TORCH_CHECK(
        has("SLURM_NTASKS"),
        "sbgm distributed: SLURM_PROCID is set but SLURM_NTASKS is not");
    info.rank = parse_int(env, "SLURM_PROCID");
    info.world_size = parse_int(env, "SLURM_NTASKS");
    info.local_rank =
        has("SLURM_LOCALID") ? parse_int(env, "SLURM_LOCALID") : 0;
    TORCH_CHECK(
        info.world_size == 1 || has("MASTER_ADDR"),
        "sbgm distributed: under Slurm (SLURM_NTASKS=",
        info.world_size,
        ") MASTER_ADDR must name the host of rank 0, e.g. "
        "export MASTER_ADDR=$(scontrol show hostnames $SLURM_JOB_NODELIST | "
        "head -n 1)");
    if (has("MASTER_ADDR")) {
      info.master_addr = env.at("MASTER_ADDR");
    }
  }
  if (has("MASTER_PORT")) {
    info.master_port = parse_int(env, "MASTER_PORT");
  }
  TORCH_CHECK(
      info.world_size >= 1,
      "sbgm distributed: the world size must be >= 1, got ",
      info.world_size);
  TORCH_CHECK(
      info.rank >= 0 && info.rank < info.world_size,
      "sbgm distributed: the rank must lie in [0, ",
      info.world_size,
      "), got ",
      info.rank);
  TORCH_CHECK(
      info.local_rank >= 0 && info.local_rank < info.world_size,
      "sbgm distributed: the local rank must lie in [0, ",
      info.world_size,
      "), got ",
      info.local_rank);
  TORCH_CHECK(
      info.master_port >= 1 && info.master_port <= 65535,
      "sbgm distributed: MASTER_PORT must lie in [1, 65535], got ",
      info.master_port);
  TORCH_CHECK(
      !info.master_addr.empty(), "sbgm distributed: MASTER_ADDR is empty");
  return info;
}

LaunchInfo launch_info() {
  std::map<std::string, std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    const std::string kv(*e);
    const auto eq = kv.find('=');
    if (eq != std::string::npos) {
      env.emplace(kv.substr(0, eq), kv.substr(eq + 1));
    }
  }
  return launch_info(env);
}

bool nccl_available() {
#ifdef USE_C10D_NCCL
  return true;
#else
  return false;
#endif
}

struct ProcessGroup::Impl {
  LaunchInfo info;
  ProcessGroupOptions options;
  std::string backend_name;
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<C10dBackend> group;
};

struct PendingOp::Impl {
  const ProcessGroup* group;
  c10::intrusive_ptr<c10d::Work> work;
  std::string what;
  bool done = false;
  // NCCL reduces only CUDA tensors: a CPU tensor goes through a copy on the
  // group's device and comes back when the op is waited for.
  torch::Tensor staged, target;
};

namespace {

// The tensor a collective of `group` can take: `t` itself, or (NCCL and a
// CPU tensor) a copy on the group's device.
torch::Tensor comm_tensor(
    const std::string& backend, torch::Device device, const torch::Tensor& t) {
  return backend == "nccl" && !t.is_cuda() ? t.to(device) : t;
}

}  // namespace

ProcessGroup::ProcessGroup(std::unique_ptr<Impl> impl)
    : impl_(std::move(impl)) {}

ProcessGroup::~ProcessGroup() {
  try {
    shutdown(/*barrier=*/false);
  } catch (...) {
  }
}

std::shared_ptr<ProcessGroup> ProcessGroup::create(
    const LaunchInfo& info, ProcessGroupOptions options) {
  TORCH_CHECK(
      info.world_size >= 1 && info.rank >= 0 && info.rank < info.world_size,
      "sbgm distributed: rank ",
      info.rank,
      " does not fit world size ",
      info.world_size);
  TORCH_CHECK(
      options.timeout().count() > 0,
      "sbgm distributed: the timeout must be > 0 ms, got ",
      options.timeout().count());
  TORCH_CHECK(
      options.init_timeout().count() > 0,
      "sbgm distributed: init_timeout must be > 0 ms, got ",
      options.init_timeout().count());
  auto impl = std::make_unique<Impl>();
  impl->info = info;
  const bool cuda = options.device().is_cuda();
  Backend backend = options.backend();
  if (backend == Backend::Auto) {
    backend = cuda && nccl_available() ? Backend::NCCL : Backend::Gloo;
  }
  TORCH_CHECK(
      backend != Backend::NCCL || nccl_available(),
      "sbgm distributed: the NCCL backend was asked for but this build has "
      "none (LibTorch without CUDA/NCCL, or nccl.h not found at configure "
      "time)");
  TORCH_CHECK(
      backend != Backend::NCCL || cuda,
      "sbgm distributed: the NCCL backend needs a CUDA device, got ",
      options.device());
  if (cuda && !options.device().has_index()) {
    options.device(torch::Device(
        torch::kCUDA, static_cast<c10::DeviceIndex>(info.local_rank)));
  }
  impl->options = options;

  const std::string where = "rank " + std::to_string(info.rank) + " of " +
                            std::to_string(info.world_size);
  // The store: rank 0 serves it unless torchrun's agent does.
  try {
    c10d::TCPStoreOptions so;
    so.port = static_cast<std::uint16_t>(info.master_port);
    so.isServer = info.rank == 0 && !info.agent_store;
    so.numWorkers = static_cast<std::size_t>(info.world_size);
    so.waitWorkers = !info.agent_store;
    so.timeout = options.init_timeout();
    c10::intrusive_ptr<c10d::Store> store =
        c10::make_intrusive<c10d::TCPStore>(info.master_addr, so);
    if (info.agent_store) {
      store = c10::make_intrusive<c10d::PrefixStore>(
          "/worker/attempt_" + std::to_string(info.restart_count), store);
    }
    impl->store = store;
  } catch (const std::exception& e) {
    TORCH_CHECK(
        false,
        "sbgm distributed: ",
        where,
        ": cannot ",
        info.rank == 0 && !info.agent_store ? "serve" : "reach",
        " the store at ",
        info.master_addr,
        ":",
        info.master_port,
        " (MASTER_ADDR:MASTER_PORT) within ",
        options.init_timeout().count(),
        " ms: ",
        error_text(e));
  }

  // Every rank alive before the backend's (possibly shorter) timeout
  // starts counting: a count in the store.
  {
    const auto t0 = std::chrono::steady_clock::now();
    int64_t joined = 0;
    try {
      joined = impl->store->add("sbgm/joined", 1);
      while (joined < info.world_size &&
             std::chrono::steady_clock::now() - t0 < options.init_timeout()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
        joined = impl->store->add("sbgm/joined", 0);
      }
    } catch (const std::exception& e) {
      TORCH_CHECK(
          false,
          "sbgm distributed: ",
          where,
          ": the store at ",
          info.master_addr,
          ":",
          info.master_port,
          " failed while the ranks joined: ",
          error_text(e));
    }
    TORCH_CHECK(
        joined >= info.world_size,
        "sbgm distributed: ",
        where,
        ": only ",
        joined,
        " of ",
        info.world_size,
        " ranks joined within ",
        options.init_timeout().count(),
        " ms (init_timeout)");
  }

  try {
    if (backend == Backend::Gloo) {
#ifndef USE_C10D_GLOO
      TORCH_CHECK(
          false,
          "sbgm was built without Gloo (gloo/algorithm.h was not found at "
          "configure time; Debian: libgloo-dev)");
#else
      auto go = c10d::ProcessGroupGloo::Options::create(options.timeout());
      std::string iface = options.interface();
      if (iface.empty()) {
        if (const char* e = std::getenv("GLOO_SOCKET_IFNAME")) {
          iface = e;
        }
      }
      if (!iface.empty()) {
        go->devices.push_back(
            c10d::ProcessGroupGloo::createDeviceForInterface(iface));
      } else if (is_loopback(info.master_addr)) {
        go->devices.push_back(
            c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
      } else {
        go->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      }
      go->threads = 2;
      impl->group = c10::make_intrusive<c10d::ProcessGroupGloo>(
          impl->store,
          static_cast<int>(info.rank),
          static_cast<int>(info.world_size),
          go);
      impl->backend_name = "gloo";
#endif
    } else {
#ifdef USE_C10D_NCCL
      auto no = c10d::ProcessGroupNCCL::Options::create();
      no->timeout = options.timeout();
      impl->group = c10::make_intrusive<c10d::ProcessGroupNCCL>(
          impl->store,
          static_cast<int>(info.rank),
          static_cast<int>(info.world_size),
          no);
      impl->backend_name = "nccl";
#endif
    }
  } catch (const std::exception& e) {
    TORCH_CHECK(
        false,
        "sbgm distributed: ",
        where,
        ": joining the ",
        backend == Backend::Gloo ? "Gloo" : "NCCL",
        " group through ",
        info.master_addr,
        ":",
        info.master_port,
        " failed: ",
        error_text(e));
  }
  return std::shared_ptr<ProcessGroup>(new ProcessGroup(std::move(impl)));
}

int64_t ProcessGroup::rank() const {
  return impl_->info.rank;
}
int64_t ProcessGroup::world_size() const {
  return impl_->info.world_size;
}
int64_t ProcessGroup::local_rank() const {
  return impl_->info.local_rank;
}
std::string ProcessGroup::backend_name() const {
  return impl_->backend_name;
}
std::chrono::milliseconds ProcessGroup::timeout() const {
  return impl_->options.timeout();
}
const LaunchInfo& ProcessGroup::info() const {
  return impl_->info;
}

void ProcessGroup::fail(
    const std::string& what, const std::string& error) const {
  // Did a peer say why, before it went? Ask the store briefly (it is gone
  // when rank 0 was the one that died).
  std::string peer;
  if (impl_->store) {
    try {
      impl_->store->setTimeout(std::chrono::milliseconds(2000));
      if (impl_->store->check({kFailureKey})) {
        auto v = impl_->store->get(kFailureKey);
        peer = std::string(v.begin(), v.end());
      }
    } catch (...) {
    }
  }
  std::ostringstream os;
  os << "sbgm distributed: rank " << rank() << " of " << world_size() << ": "
     << what << " failed: " << error;
  if (!peer.empty()) {
    os << "; " << peer;
  } else {
    os << "; no rank reported an error first (a rank was killed, hung past "
          "the "
       << timeout().count() << " ms timeout, or lost its connection)";
  }
  TORCH_CHECK(false, os.str());
}

void ProcessGroup::report_failure(const std::string& message) noexcept {
  try {
    if (impl_ && impl_->store) {
      impl_->store->setTimeout(std::chrono::milliseconds(2000));
      const std::string m =
          "rank " + std::to_string(rank()) + " reported: " + message;
      // The first report wins: set only where no rank has reported yet.
      impl_->store->compareSet(
          kFailureKey, {}, std::vector<uint8_t>(m.begin(), m.end()));
    }
  } catch (...) {
  }
}

namespace {

void check_group(const c10::intrusive_ptr<C10dBackend>& g, const char* op) {
  TORCH_CHECK(
      g, "sbgm distributed: ", op, " on a process group that was shut down");
}

}  // namespace

void PendingOp::wait() {
  if (!impl_ || impl_->done) {
    return;
  }
  impl_->done = true;
  try {
    impl_->work->wait(impl_->group->timeout());
    if (impl_->staged.defined()) {
      impl_->target.copy_(impl_->staged);
    }
  } catch (const std::exception& e) {
    impl_->group->fail(impl_->what, error_text(e));
  }
}

PendingOp ProcessGroup::allreduce_sum_async_(
    torch::Tensor tensor, const std::string& what) {
  check_group(impl_->group, what.c_str());
  TORCH_CHECK(
      tensor.is_contiguous(),
      "sbgm distributed: ",
      what,
      ": the tensor must be contiguous");
  PendingOp op;
  op.impl_ = std::make_shared<PendingOp::Impl>();
  op.impl_->group = this;
  op.impl_->what = what;
  try {
    std::vector<at::Tensor> ts{
        comm_tensor(impl_->backend_name, impl_->options.device(), tensor)};
    if (!ts[0].is_same(tensor)) {
      op.impl_->staged = ts[0];
      op.impl_->target = tensor;
    }
    op.impl_->work = impl_->group->allreduce(ts);
  } catch (const std::exception& e) {
    fail(what, error_text(e));
  }
  return op;
}

void ProcessGroup::allreduce_sum_(
    torch::Tensor tensor, const std::string& what) {
  allreduce_sum_async_(std::move(tensor), what).wait();
}

void ProcessGroup::allreduce_mean_(
    torch::Tensor tensor, const std::string& what) {
  allreduce_sum_(tensor, what);
  if (world_size() > 1) {
    tensor.div_(static_cast<double>(world_size()));
  }
}

void ProcessGroup::allreduce_mean_bucketed_(
    const std::vector<torch::Tensor>& tensors,
    int64_t bucket_bytes,
    const std::string& what) {
  torch::NoGradGuard no_grad;
  size_t i = 0;
  while (i < tensors.size()) {
    // One bucket: consecutive tensors of one dtype and device.
    size_t j = i;
    int64_t bytes = 0;
    std::vector<torch::Tensor> flat;
    while (j < tensors.size() && (j == i || bytes < bucket_bytes) &&
           tensors[j].scalar_type() == tensors[i].scalar_type() &&
           tensors[j].device() == tensors[i].device()) {
      bytes +=
          tensors[j].numel() * static_cast<int64_t>(tensors[j].element_size());
      flat.push_back(tensors[j].reshape({-1}));
      ++j;
    }
    auto buf = torch::cat(flat);
    allreduce_mean_(buf, what);
    int64_t off = 0;
    for (size_t k = i; k < j; ++k) {
      const int64_t n = tensors[k].numel();
      tensors[k].copy_(buf.slice(0, off, off + n).view_as(tensors[k]));
      off += n;
    }
    i = j;
  }
}

std::vector<torch::Tensor> ProcessGroup::allgather(
    const torch::Tensor& tensor, const std::string& what) {
  check_group(impl_->group, what.c_str());
  std::vector<at::Tensor> in{comm_tensor(
      impl_->backend_name, impl_->options.device(), tensor.contiguous())};
  std::vector<std::vector<at::Tensor>> out(1);
  for (int64_t r = 0; r < world_size(); ++r) {
    out[0].push_back(torch::empty_like(in[0]));
  }
  try {
    impl_->group->allgather(out, in)->wait(timeout());
  } catch (const std::exception& e) {
    fail(what, error_text(e));
  }
  if (in[0].device() != tensor.device()) {
    for (auto& t : out[0]) {
      t = t.to(tensor.device());
    }
  }
  return out[0];
}

void ProcessGroup::broadcast_(
    std::vector<torch::Tensor> tensors, int64_t root, const std::string& what) {
  check_group(impl_->group, what.c_str());
  TORCH_CHECK(
      root >= 0 && root < world_size(),
      "sbgm distributed: ",
      what,
      ": root ",
      root,
      " is not a rank of a group of ",
      world_size());
  torch::NoGradGuard no_grad;
  // One buffer per dtype: a single collective for a whole module.
  std::map<std::pair<int, std::string>, std::vector<torch::Tensor>> groups;
  for (auto& t : tensors) {
    if (t.defined() && t.numel() > 0) {
      groups[{static_cast<int>(t.scalar_type()), t.device().str()}].push_back(
          t);
    }
  }
  for (auto& kv : groups) {
    auto& ts = kv.second;
    std::vector<torch::Tensor> flat;
    for (auto& t : ts) {
      flat.push_back(t.reshape({-1}));
    }
    std::vector<at::Tensor> buf{comm_tensor(
        impl_->backend_name, impl_->options.device(), torch::cat(flat))};
    try {
      c10d::BroadcastOptions bo;
      bo.rootRank = root;
      impl_->group->broadcast(buf, bo)->wait(timeout());
    } catch (const std::exception& e) {
      fail(what, error_text(e));
    }
    int64_t off = 0;
    for (auto& t : ts) {
      const int64_t n = t.numel();
      t.copy_(buf[0].slice(0, off, off + n).view_as(t));
      off += n;
    }
  }
}

void ProcessGroup::barrier(const std::string& what) {
  check_group(impl_->group, what.c_str());
  try {
    impl_->group->barrier()->wait(timeout());
  } catch (const std::exception& e) {
    fail(what, error_text(e));
  }
}

void ProcessGroup::shutdown(bool barrier) {
  if (!impl_->group) {
    return;
  }
  if (barrier) {
    this->barrier("shutdown barrier");
  }
  impl_->group.reset();
  impl_->store.reset();
}

std::shared_ptr<ProcessGroup> init_from_env(ProcessGroupOptions options) {
  const LaunchInfo info = launch_info();
  if (info.world_size <= 1) {
    return nullptr;
  }
  return ProcessGroup::create(info, std::move(options));
}

}  // namespace dist
}  // namespace sbgm
