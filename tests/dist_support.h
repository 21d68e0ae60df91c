#pragma once

// Spawns the ranks of a data-parallel test: the helper executable
// sbgm_dist_worker (SBGM_DIST_WORKER), started by posix_spawn (a fresh exec;
// this process's LibTorch threads are never forked) with RANK, WORLD_SIZE,
// LOCAL_RANK, MASTER_ADDR=127.0.0.1, a free MASTER_PORT and
// OMP_NUM_THREADS=1, its output captured per rank.

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <map>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support.h"

namespace sbgm::test {

/// A TCP port that was free a moment ago (bound to port 0 and released).
inline int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) {
    throw std::runtime_error("free_port: socket() failed");
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    throw std::runtime_error("free_port: bind() failed");
  }
  const int port = ntohs(addr.sin_port);
  ::close(fd);
  return port;
}

/// How one rank ended.
struct RankRun {
  int exit_code = -1;  // -1 when killed by a signal
  bool signaled = false;
  int signal = 0;
  /// Seconds from the start of the launch to this rank's exit.
  double seconds = 0;
  /// Its stdout and stderr.
  std::string log;
};

/// Runs `world` ranks of the worker with `args` and waits for all of them.
/// Once a rank has failed, the others get `grace_s` seconds to end on their
/// own before they are killed; after `guard_s` seconds in all, every rank
/// left is killed and the test fails (a hang guard, not a timing check).
/// `slurm`: the ranks get Slurm's SLURM_PROCID, SLURM_NTASKS and
/// SLURM_LOCALID instead of torchrun's RANK, WORLD_SIZE and LOCAL_RANK.
inline std::vector<RankRun> run_ranks(
    int world,
    const std::vector<std::string>& args,
    double guard_s = 60,
    double grace_s = 30,
    bool slurm = false) {
  static std::atomic<int> launch{0};
  const auto dir = std::filesystem::temp_directory_path() /
                   ("sbgm_ranks_" + std::to_string(::getpid()) + "_" +
                    std::to_string(launch++));
  std::filesystem::create_directories(dir);
  const int port = free_port();
  std::vector<pid_t> pids(world, -1);
  std::vector<RankRun> runs(world);
  std::vector<std::string> logs(world);
  const auto t0 = std::chrono::steady_clock::now();
  for (int r = 0; r < world; ++r) {
    auto env = environment_without([](const std::string& k) {
      return k.rfind("SLURM_", 0) == 0 || k.rfind("TORCHELASTIC_", 0) == 0 ||
             k == "RANK" || k == "WORLD_SIZE" || k == "LOCAL_RANK";
    });
    env[slurm ? "SLURM_PROCID" : "RANK"] = std::to_string(r);
    env[slurm ? "SLURM_NTASKS" : "WORLD_SIZE"] = std::to_string(world);
    env[slurm ? "SLURM_LOCALID" : "LOCAL_RANK"] = std::to_string(r);
    env["MASTER_ADDR"] = "127.0.0.1";
    env["MASTER_PORT"] = std::to_string(port);
    env["OMP_NUM_THREADS"] = "1";
    logs[r] = (dir / ("rank" + std::to_string(r) + ".log")).string();
    try {
      pids[r] = spawn(SBGM_DIST_WORKER, args, env, logs[r]);
    } catch (...) {
      for (int q = 0; q < r; ++q) {
        ::kill(pids[q], SIGKILL);
        ::waitpid(pids[q], nullptr, 0);
      }
      throw;
    }
  }
  auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
        .count();
  };
  int left = world;
  double first_failure = -1;
  bool guard_fired = false;
  while (left > 0) {
    for (int r = 0; r < world; ++r) {
      if (pids[r] < 0) {
        continue;
      }
      int status = 0;
      if (::waitpid(pids[r], &status, WNOHANG) == pids[r]) {
        runs[r].seconds = elapsed();
        runs[r].signaled = WIFSIGNALED(status);
        runs[r].signal = runs[r].signaled ? WTERMSIG(status) : 0;
        runs[r].exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        if (runs[r].exit_code != 0 && first_failure < 0) {
          first_failure = runs[r].seconds;
        }
        pids[r] = -1;
        --left;
      }
    }
    const double now = elapsed();
    const bool guard = now > guard_s;
    const bool grace = first_failure >= 0 && now > first_failure + grace_s;
    if (left > 0 && (guard || grace)) {
      guard_fired = guard_fired || guard;
      for (int r = 0; r < world; ++r) {
        if (pids[r] >= 0) {
          ::kill(pids[r], SIGKILL);
        }
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  for (int r = 0; r < world; ++r) {
    runs[r].log = read_file(logs[r]);
  }
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  EXPECT_FALSE(guard_fired)
      << "ranks still running after " << guard_s << " s were killed";
  return runs;
}

}  // namespace sbgm::test
