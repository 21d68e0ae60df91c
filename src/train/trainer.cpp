#include "sbgm/train/trainer.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <sstream>

#ifdef _WIN32
#include <io.h>
#define SBGM_ISATTY(fd) _isatty(fd)
#define SBGM_FILENO(f) _fileno(f)
#else
#include <unistd.h>
#define SBGM_ISATTY(fd) isatty(fd)
#define SBGM_FILENO(f) fileno(f)
#endif

#include "internal.h"
#include "sbgm/optim/flat_adam.h"
#include "sbgm/train/checkpoint.h"

namespace sbgm {

namespace {

using Clock = std::chrono::steady_clock;

// The signal that asked the running Trainer to stop (0: none).
std::atomic<int> g_stop_signal{0};
static_assert(std::atomic<int>::is_always_lock_free);

extern "C" void sbgm_trainer_on_signal(int sig) {
  if (g_stop_signal.exchange(sig) != 0) {
    // A second signal: act as if the trainer were not there.
    std::signal(sig, SIG_DFL);
    std::raise(sig);
  }
}

// Installs the stop handlers for SIGINT and SIGTERM while alive.
class SignalScope {
 public:
  explicit SignalScope(bool enabled) : enabled_(enabled) {
    if (!enabled_) {
      return;
    }
    g_stop_signal = 0;
#ifndef _WIN32
    struct sigaction sa {};
    sa.sa_handler = sbgm_trainer_on_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int_);
    sigaction(SIGTERM, &sa, &old_term_);
#else
    old_int_ = std::signal(SIGINT, sbgm_trainer_on_signal);
    old_term_ = std::signal(SIGTERM, sbgm_trainer_on_signal);
#endif
  }
  ~SignalScope() {
    if (!enabled_) {
      return;
    }
#ifndef _WIN32
    sigaction(SIGINT, &old_int_, nullptr);
    sigaction(SIGTERM, &old_term_, nullptr);
#else
    std::signal(SIGINT, old_int_);
    std::signal(SIGTERM, old_term_);
#endif
  }
  SignalScope(const SignalScope&) = delete;
  SignalScope& operator=(const SignalScope&) = delete;
  int caught() const {
    return enabled_ ? g_stop_signal.load() : 0;
  }

 private:
  bool enabled_;
#ifndef _WIN32
  struct sigaction old_int_ {};
  struct sigaction old_term_ {};
#else
  void (*old_int_)(int) = nullptr;
  void (*old_term_)(int) = nullptr;
#endif
};

// Global L2 norm of the gradients, as a float 0-dim tensor on their device.
torch::Tensor grad_norm(const std::vector<torch::Tensor>& grads) {
  std::vector<torch::Tensor> norms;
  norms.reserve(grads.size());
  for (const auto& g : grads) {
    norms.push_back(g.norm().to(torch::kFloat));
  }
  return torch::stack(norms).norm();
}

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) {
    return "--:--";
  }
  auto total = static_cast<int64_t>(s + 0.5);
  const int64_t h = total / 3600, m = (total % 3600) / 60, sec = total % 60;
  char buf[32];
  if (h > 0) {
    std::snprintf(
        buf,
        sizeof buf,
        "%lld:%02lld:%02lld",
        static_cast<long long>(h),
        static_cast<long long>(m),
        static_cast<long long>(sec));
  } else {
    std::snprintf(
        buf,
        sizeof buf,
        "%02lld:%02lld",
        static_cast<long long>(m),
        static_cast<long long>(sec));
  }
  return buf;
}

}  // namespace

namespace detail {

// A one-line progress bar on stderr, redrawn in place (in a named namespace:
// Trainer::Run holds one, and a unity build warns about a member whose type
// has internal linkage).
class ProgressBar {
 public:
  ProgressBar(bool enabled, int64_t total) : enabled_(enabled), total_(total) {}
  void draw(int64_t step, double loss, double it_per_s, bool force) {
    if (!enabled_) {
      return;
    }
    auto now = Clock::now();
    if (!force && std::chrono::duration<double>(now - last_).count() < 0.1) {
      return;
    }
    last_ = now;
    constexpr int kWidth = 24;
    const double frac =
        total_ > 0 ? static_cast<double>(step) / static_cast<double>(total_)
                   : 1.0;
    const int filled = static_cast<int>(frac * kWidth);
    std::string bar(static_cast<size_t>(filled), '#');
    bar.resize(kWidth, '.');
    const double left = it_per_s > 0
                            ? static_cast<double>(total_ - step) / it_per_s
                            : std::nan("");
    std::fprintf(
        stderr,
        "\r[%s] %lld/%lld  loss %s  %.1f it/s  left %s   ",
        bar.c_str(),
        static_cast<long long>(step),
        static_cast<long long>(total_),
        std::isnan(loss) ? "-" : format_loss(loss).c_str(),
        it_per_s,
        format_duration(left).c_str());
    std::fflush(stderr);
    drawn_ = true;
  }
  void finish() {
    if (enabled_ && drawn_) {
      std::fprintf(stderr, "\n");
      std::fflush(stderr);
      drawn_ = false;
    }
  }
  ~ProgressBar() {
    finish();
  }

 private:
  static std::string format_loss(double v) {
    std::ostringstream os;
    os << std::setprecision(4) << v;
    return os.str();
  }
  bool enabled_;
  int64_t total_;
  bool drawn_ = false;
  Clock::time_point last_{};
};

}  // namespace detail

TrainerOptions::TrainerOptions(int64_t steps) : steps_(steps) {}

// What lives from begin() to end().
struct Trainer::Run {
  Run(bool bar_on, int64_t total) : bar(bar_on, total) {}
  std::ofstream csv;
  detail::ProgressBar bar;
  std::vector<torch::Tensor> params;
  // The window's per-step losses and gradient norms, on their device: read
  // back once per window, they name the first non-finite step.
  std::vector<torch::Tensor> win_loss, win_gn;
  std::vector<int64_t> win_steps;
  int64_t first_step = 0;
  // The step of the last checkpoint written or resumed from; -1: none.
  int64_t last_ckpt = -1;
  Clock::time_point t0;
  double shown_loss = std::nan("");
  TrainLogEntry last{0, std::nan(""), std::nan(""), 0.0, 0.0, 0.0};
  // The optimizer clips inside its step and reports the norm.
  bool fused = false;
};

Trainer::Trainer(
    std::shared_ptr<torch::nn::Module> module,
    LossFn loss,
    TrainerOptions options,
    std::shared_ptr<torch::optim::Optimizer> optimizer)
    : Trainer(
          std::move(module),
          std::move(loss),
          std::move(options),
          make_optimizer(std::move(optimizer))) {}

Trainer::Trainer(
    std::shared_ptr<torch::nn::Module> module,
    LossFn loss,
    TrainerOptions options,
    std::shared_ptr<Optimizer> optimizer)
    : module_(std::move(module)),
      loss_(std::move(loss)),
      options_(std::move(options)),
      optimizer_(std::move(optimizer)) {
  TORCH_CHECK(module_ != nullptr, "Trainer: the module is null");
  TORCH_CHECK(static_cast<bool>(loss_), "Trainer: the loss function is empty");
  const auto& o = options_;
  TORCH_CHECK(o.steps() >= 0, "Trainer: steps must be >= 0, got ", o.steps());
  TORCH_CHECK(
      o.log_every() > 0, "Trainer: log_every must be > 0, got ", o.log_every());
  TORCH_CHECK(
      o.checkpoint_every() >= 0,
      "Trainer: checkpoint_every must be >= 0, got ",
      o.checkpoint_every());
  TORCH_CHECK(
      o.print_every() >= 0,
      "Trainer: print_every must be >= 0, got ",
      o.print_every());
  TORCH_CHECK(
      o.lr_warmup() >= 0,
      "Trainer: lr_warmup must be >= 0, got ",
      o.lr_warmup());
  TORCH_CHECK(
      std::isfinite(o.grad_clip()),
      "Trainer: grad_clip must be finite, got ",
      o.grad_clip());
  TORCH_CHECK(
      std::isfinite(o.ema_decay()) && o.ema_decay() >= 0.0 &&
          o.ema_decay() < 1.0,
      "Trainer: ema_decay must lie in [0, 1), got ",
      o.ema_decay());
  if (!optimizer_) {
    TORCH_CHECK(
        std::isfinite(o.lr()) && o.lr() > 0.0,
        "Trainer: lr must be > 0, got ",
        o.lr());
    optimizer_ = std::make_shared<FlatAdamOptimizer>(std::make_shared<FlatAdam>(
        module_->parameters(), FlatAdamOptions(o.lr())));
  }
  if (o.grad_clip() > 0) {
    // Clipping fused into the optimizer step where it can be.
    optimizer_->fuse_grad_clip(o.grad_clip());
  }
  for (size_t i = 0; i < optimizer_->num_groups(); ++i) {
    base_lr_.push_back(optimizer_->lr(i));
  }
  if (o.ema_decay() > 0.0) {
    ema_ = std::make_unique<EMA>(*module_, o.ema_decay(), o.ema_warmup());
  }
}

Trainer::~Trainer() = default;

double Trainer::lr_factor(int64_t step) const {
  double f = 1.0;
  if (options_.lr_warmup() > 0) {
    f = std::min(
        1.0,
        static_cast<double>(step + 1) /
            static_cast<double>(options_.lr_warmup()));
  }
  if (options_.lr_schedule() == LRSchedule::Cosine) {
    f *= 0.5 * (1.0 + std::cos(
                          M_PI * static_cast<double>(step) /
                          static_cast<double>(options_.steps())));
  }
  return f;
}

void Trainer::add_state(
    std::string name,
    std::function<torch::Tensor()> save,
    std::function<void(const torch::Tensor&)> load) {
  TORCH_CHECK(
      static_cast<bool>(save) && static_cast<bool>(load),
      "Trainer::add_state: '",
      name,
      "' needs both a save and a load function");
  TORCH_CHECK(
      !name.empty() && name.find('\n') == std::string::npos,
      "Trainer::add_state: the name must be one non-empty line, got '",
      name,
      "'");
  for (const auto& st : states_) {
    TORCH_CHECK(
        st.name != name, "Trainer::add_state: '", name, "' is already added");
  }
  states_.push_back({std::move(name), std::move(save), std::move(load)});
}

void Trainer::add_generator(std::string name, at::Generator generator) {
  TORCH_CHECK(
      generator.defined(),
      "Trainer::add_generator: the generator '",
      name,
      "' is undefined");
  add_state(
      std::move(name),
      [generator]() { return generator.get_state(); },
      [generator](const torch::Tensor& s) mutable { generator.set_state(s); });
}

namespace {

// The name of rank r's copy of a state in a data-parallel checkpoint.
std::string rank_key(int64_t rank, const std::string& name) {
  return "rank" + std::to_string(rank) + "/" + name;
}
const char kRngCpu[] = "rng_cpu";

}  // namespace

void Trainer::save(const std::string& path) const {
  ExtraState extra;
  for (const auto& st : states_) {
    auto t = st.save();
    TORCH_CHECK(
        t.defined(),
        "Trainer: the state '",
        st.name,
        "' saved an undefined tensor");
    extra.emplace_back(st.name, std::move(t));
  }
  const auto& pg = options_.process_group();
  if (pg && pg->world_size() > 1) {
    // Every rank's own streams (its states and its default CPU generator),
    // gathered for rank 0 to write beside its own.
    ExtraState mine = extra;
    mine.emplace_back(
        kRngCpu, at::detail::getDefaultCPUGenerator().get_state());
    ExtraState ranks;
    for (const auto& e : mine) {
      auto all = pg->allgather(
          e.second.detach().cpu().contiguous(),
          "gathering the state '" + e.first + "' for checkpoint '" + path +
              "'");
      for (int64_t r = 0; r < pg->world_size(); ++r) {
        ranks.emplace_back(rank_key(r, e.first), all[static_cast<size_t>(r)]);
      }
    }
    if (pg->is_main()) {
      extra.insert(extra.end(), ranks.begin(), ranks.end());
      save_checkpoint(
          path, *module_, step_, *optimizer_, ema_.get(), true, extra);
    }
    pg->barrier("the barrier after rank 0 wrote checkpoint '" + path + "'");
    return;
  }
  save_checkpoint(path, *module_, step_, *optimizer_, ema_.get(), true, extra);
}

void Trainer::load(const std::string& path) {
  ExtraState extra;
  for (const auto& st : states_) {
    extra.emplace_back(st.name, torch::Tensor());
  }
  const auto& pg = options_.process_group();
  const bool dp = pg && pg->world_size() > 1;
  // A data-parallel checkpoint holds each rank's own streams.
  bool own = false;
  const size_t base = extra.size();
  if (dp) {
    const auto names = read_checkpoint_info(path).extra_names;
    own =
        std::find(names.begin(), names.end(), rank_key(pg->rank(), kRngCpu)) !=
        names.end();
    if (own) {
      for (const auto& st : states_) {
        extra.emplace_back(rank_key(pg->rank(), st.name), torch::Tensor());
      }
      extra.emplace_back(rank_key(pg->rank(), kRngCpu), torch::Tensor());
    }
  }
  step_ =
      load_checkpoint(path, *module_, *optimizer_, ema_.get(), true, &extra);
  for (size_t i = 0; i < states_.size(); ++i) {
    states_[i].load(extra[own ? base + i : i].second);
  }
  if (own) {
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(extra.back().second);
  } else if (dp) {
    // Written by another number of processes: every rank got rank 0's
    // streams; the default generator moves to one of each rank's own (the
    // add_state states stay rank 0's).
    const auto r = torch::randint(1 << 30, {1}, torch::kLong).item<int64_t>();
    torch::manual_seed(static_cast<uint64_t>(r + pg->rank()));
    if (pg->is_main()) {
      std::fprintf(
          stderr,
          "sbgm::Trainer: '%s' was not written by %lld ranks; each rank "
          "reseeds its default generator from it\n",
          path.c_str(),
          static_cast<long long>(pg->world_size()));
    }
  }
}

void Trainer::sync_start() {
  auto& pg = *options_.process_group();
  auto steps = pg.allgather(
      torch::tensor({step_}, torch::kLong), "agreeing on the first step");
  std::ostringstream seen;
  bool same = true;
  for (size_t r = 0; r < steps.size(); ++r) {
    const auto s = steps[r].item<int64_t>();
    same = same && s == step_;
    seen << (r ? ", " : "") << "rank " << r << ": " << s;
  }
  TORCH_CHECK(
      same,
      "Trainer: the ranks would start from different steps (",
      seen.str(),
      "); every rank must see the same checkpoint file '",
      options_.checkpoint_path(),
      "' (a shared file system) or none");
  std::vector<torch::Tensor> state = module_->parameters(/*recurse=*/true);
  for (auto& b : module_->buffers(/*recurse=*/true)) {
    state.push_back(b);
  }
  pg.broadcast_(state, 0, "the broadcast of rank 0's parameters and buffers");
  if (ema_ && ema_->num_updates() == 0) {
    // Start the average at the broadcast weights.
    ema_ = std::make_unique<EMA>(*module_, ema_->decay(), ema_->warmup());
  }
}

TrainLogEntry Trainer::run() {
  const auto& pg = options_.process_group();
  if (!pg || pg->world_size() <= 1) {
    return run_impl();
  }
  try {
    return run_impl();
  } catch (const c10::Error& e) {
    pg->report_failure(e.what_without_backtrace());
    throw;
  } catch (const std::exception& e) {
    pg->report_failure(e.what());
    throw;
  }
}

TrainLogEntry Trainer::run_impl() {
  const auto& o = options_;
  const auto& pg = o.process_group();
  const bool dp = pg && pg->world_size() > 1;
  stop_signal_ = 0;
  begin();
  // Ends the run on the way out, by return or by exception.
  struct RunScope {
    std::unique_ptr<Run>* run;
    ~RunScope() {
      run->reset();
    }
  } scope{&run_};
  SignalScope signals(o.stop_on_signal());
  while (step_ < o.steps()) {
    step();
    int caught = signals.caught();
    if (dp && o.stop_on_signal()) {
      // Every rank stops after the same step: the first signal any got.
      for (auto& c : pg->allgather(
               torch::tensor({static_cast<int64_t>(caught)}, torch::kLong),
               "the signal check of step " + std::to_string(step_))) {
        const auto v = static_cast<int>(c.item<int64_t>());
        caught = caught != 0 ? caught : v;
      }
    }
    if (log_due() || caught != 0) {
      log();
    }
    if (checkpoint_due() || (caught != 0 && !o.checkpoint_path().empty())) {
      checkpoint();
    }
    if (caught != 0) {
      stop_signal_ = caught;
      break;
    }
  }
  return end();
}

bool Trainer::begin() {
  run_.reset();  // a run begun before ends here
  const auto& o = options_;
  const std::string& ckpt = o.checkpoint_path();
  const auto& pg = o.process_group();
  const bool main_rank = !pg || pg->is_main();
  bool resumed = false;
  if (!ckpt.empty() && o.resume() && std::filesystem::exists(ckpt)) {
    load(ckpt);  // throws on a damaged or mismatched file, leaving it alone
    resumed = true;
  }
  if (pg && pg->world_size() > 1) {
    sync_start();
  }
  const bool bar_on = main_rank && (o.progress() == ProgressMode::On ||
                                    (o.progress() == ProgressMode::Auto &&
                                     SBGM_ISATTY(SBGM_FILENO(stderr))));
  auto r = std::make_unique<Run>(bar_on, o.steps());
  if (!o.csv_path().empty() && main_rank) {
    const bool append = resumed && std::filesystem::exists(o.csv_path());
    r->csv.open(o.csv_path(), append ? std::ios::app : std::ios::trunc);
    TORCH_CHECK(
        r->csv.good(), "Trainer: cannot open the CSV log '", o.csv_path(), "'");
    if (!append) {
      r->csv << "step,loss,grad_norm,lr,it_per_s,elapsed_s\n" << std::flush;
    }
  }
  module_->train();
  r->params = module_->parameters(/*recurse=*/true);
  r->first_step = step_;
  r->last_ckpt = resumed ? step_ : -1;
  r->t0 = Clock::now();
  r->last.step = step_;
  r->fused = optimizer_->clips();
  run_ = std::move(r);
  return resumed;
}

Trainer::Run& Trainer::current(const char* where) {
  TORCH_CHECK(
      run_ != nullptr,
      "Trainer::",
      where,
      ": no run has begun; call begin() first (it resumes from the "
      "checkpoint and opens the log)");
  return *run_;
}

namespace {

std::vector<torch::Tensor> defined_grads(
    const std::vector<torch::Tensor>& params) {
  std::vector<torch::Tensor> grads;
  for (const auto& p : params) {
    if (p.grad().defined()) {
      grads.push_back(p.grad());
    }
  }
  return grads;
}

}  // namespace

torch::Tensor Trainer::step() {
  Run& r = current("step");
  const auto& o = options_;
  const auto& pg = o.process_group();
  const bool dp = pg && pg->world_size() > 1;
  const bool skip_bad = o.nonfinite() == NonFinitePolicy::Skip;
  if (o.lr_warmup() > 0 || o.lr_schedule() != LRSchedule::Constant) {
    const double f = lr_factor(step_);
    for (size_t i = 0; i < base_lr_.size(); ++i) {
      optimizer_->set_lr(i, base_lr_[i] * f);
    }
  }
  optimizer_->zero_grad();
  auto loss = loss_(step_);
  TORCH_CHECK(
      loss.defined() && loss.numel() == 1,
      "Trainer: the loss function must return a single-element tensor, got ",
      loss.defined() ? detail::shape_str(loss) : std::string("(undefined)"),
      " at step ",
      step_);
  if (o.loss_fn_computes_grads()) {
    TORCH_CHECK(
        !loss.requires_grad(),
        "Trainer: loss_fn_computes_grads is set but the loss at step ",
        step_,
        " requires grad (return it detached, with the gradients already "
        "accumulated)");
  } else {
    TORCH_CHECK(
        loss.requires_grad(),
        "Trainer: the loss at step ",
        step_,
        " does not require grad (is it built from the module's output?)");
    loss.backward();
  }
  if (dp) {
    // The ranks' mean gradient, before clipping: one all-reduce of the
    // optimizer's flat buffer, or buckets of the gradients.
    const std::string what =
        "the gradient all-reduce of step " + std::to_string(step_);
    auto flat = optimizer_->flat_grad();
    if (flat.defined()) {
      pg->allreduce_mean_(flat, what);
    } else {
      pg->allreduce_mean_bucketed_(defined_grads(r.params), 25 << 20, what);
    }
  }

  // Global gradient norm and clipping, all on the device; an optimizer that
  // clips itself does both inside its step.
  const bool fused = r.fused;
  torch::Tensor gnorm;
  bool skipped = false;
  {
    torch::NoGradGuard no_grad;
    auto grads = (!fused || skip_bad) ? defined_grads(r.params)
                                      : std::vector<torch::Tensor>();
    if (!fused || skip_bad) {
      gnorm = grads.empty()
                  ? torch::zeros({}, loss.options().requires_grad(false))
                  : grad_norm(grads);
    }
    if (skip_bad) {
      // The one host sync of the step: is it safe to apply?
      auto both = torch::stack(
          {loss.detach().reshape({}).to(torch::kFloat),
           gnorm.to(loss.device(), torch::kFloat)});
      if (dp) {  // every rank skips the same steps
        pg->allreduce_sum_(
            both, "the non-finite check of step " + std::to_string(step_));
      }
      skipped = !torch::isfinite(both).all().item<bool>();
      if (skipped) {
        auto v = both.cpu();
        ++skipped_;
        r.bar.finish();
        std::fprintf(
            stderr,
            "sbgm::Trainer: skipped step %lld: loss %g, gradient norm %g "
            "(%lld skipped so far)\n",
            static_cast<long long>(step_),
            v[0].item<double>(),
            v[1].item<double>(),
            static_cast<long long>(skipped_));
      }
    }
    if (!skipped && !fused && o.grad_clip() > 0 && !grads.empty()) {
      auto coef = (o.grad_clip() / (gnorm + 1e-6)).clamp_max(1.0);
      for (auto& g : grads) {
        g.mul_(coef.to(g.scalar_type()));
      }
    }
  }
  if (!skipped) {
    optimizer_->step();
    if (fused) {
      gnorm = optimizer_->last_grad_norm();
    }
    if (ema_) {
      ema_->update(*module_);
    }
    torch::NoGradGuard no_grad;
    r.win_loss.push_back(loss.detach().reshape({}).to(torch::kFloat).clone());
    r.win_gn.push_back(gnorm.detach().to(loss.device(), torch::kFloat).clone());
    r.win_steps.push_back(step_);
  }
  ++step_;
  const double elapsed = seconds_since(r.t0);
  const double rate =
      elapsed > 0 ? static_cast<double>(step_ - r.first_step) / elapsed : 0.0;
  r.bar.draw(step_, r.shown_loss, rate, false);
  return loss.detach();
}

bool Trainer::log_due() const {
  const auto& o = options_;
  return step_ > 0 && (step_ % o.log_every() == 0 || step_ == o.steps());
}

bool Trainer::checkpoint_due() const {
  const auto& o = options_;
  return step_ > 0 && !o.checkpoint_path().empty() &&
         ((o.checkpoint_every() > 0 && step_ % o.checkpoint_every() == 0) ||
          step_ == o.steps());
}

void Trainer::stop_nonfinite(
    Run& r, int64_t bad_step, double value, bool is_loss) {
  r.bar.finish();
  const std::string& ckpt = options_.checkpoint_path();
  std::ostringstream where;
  if (r.last_ckpt >= 0) {
    where << "the last good checkpoint is '" << ckpt << "' (step "
          << r.last_ckpt << ")";
  } else if (!ckpt.empty()) {
    where << "no checkpoint had been written yet";
  } else {
    where << "no checkpoint path was set";
  }
  TORCH_CHECK(
      false,
      "Trainer: the ",
      is_loss ? "loss" : "gradient norm",
      " became non-finite (",
      value,
      ") at step ",
      bad_step,
      "; training stopped (NonFinitePolicy::Skip would skip such steps); ",
      where.str());
}

Trainer::Window Trainer::read_window(Run& r) {
  Window w{std::nan(""), std::nan("")};
  if (r.win_loss.empty()) {
    return w;
  }
  const auto& pg = options_.process_group();
  // The one host sync of the window.
  auto losses = torch::stack(r.win_loss).to(torch::kCPU, torch::kDouble);
  if (pg && pg->world_size() > 1) {  // the ranks' mean loss
    pg->allreduce_mean_(
        losses, "the loss log of step " + std::to_string(step_));
  }
  auto gns = torch::stack(r.win_gn).to(torch::kCPU, torch::kDouble);
  const double n = static_cast<double>(r.win_loss.size());
  w.loss = losses.sum().item<double>() / n;
  w.grad_norm = gns.sum().item<double>() / n;
  if (!std::isfinite(w.loss) || !std::isfinite(w.grad_norm)) {
    auto l = losses.accessor<double, 1>();
    auto g = gns.accessor<double, 1>();
    for (size_t i = 0; i < r.win_steps.size(); ++i) {
      const auto k = static_cast<int64_t>(i);
      if (!std::isfinite(l[k]) || !std::isfinite(g[k])) {
        const bool is_loss = !std::isfinite(l[k]);
        stop_nonfinite(r, r.win_steps[i], is_loss ? l[k] : g[k], is_loss);
      }
    }
  }
  return w;
}

TrainLogEntry Trainer::log() {
  Run& r = current("log");
  const auto& pg = options_.process_group();
  const bool main_rank = !pg || pg->is_main();
  const double elapsed = seconds_since(r.t0);
  const double rate =
      elapsed > 0 ? static_cast<double>(step_ - r.first_step) / elapsed : 0.0;
  const Window w = read_window(r);
  const double lr = optimizer_->num_groups() == 0 ? 0.0 : optimizer_->lr(0);
  r.last = {step_, w.loss, w.grad_norm, lr, rate, elapsed};
  r.shown_loss = w.loss;
  if (r.csv.is_open()) {
    const auto& e = r.last;
    r.csv << e.step << ',' << std::setprecision(8) << e.loss << ','
          << e.grad_norm << ',' << e.lr << ',' << std::setprecision(6)
          << e.it_per_s << ',' << e.elapsed_s << '\n'
          << std::flush;
  }
  if (on_log_ && main_rank) {
    on_log_(r.last);
  }
  const int64_t every = options_.print_every();
  if (every > 0 && main_rank &&
      (step_ % every == 0 || step_ == options_.steps())) {
    r.bar.finish();
    std::printf(
        "step %6lld  loss %.4f  %.1f it/s  %.0f s\n",
        static_cast<long long>(step_),
        r.last.loss,
        r.last.it_per_s,
        r.last.elapsed_s);
    std::fflush(stdout);
  }
  r.win_loss.clear();
  r.win_gn.clear();
  r.win_steps.clear();
  r.bar.draw(step_, r.shown_loss, rate, true);
  return r.last;
}

void Trainer::checkpoint() {
  Run& r = current("checkpoint");
  const std::string& ckpt = options_.checkpoint_path();
  TORCH_CHECK(
      !ckpt.empty(),
      "Trainer::checkpoint: options.checkpoint_path is empty (set it, or "
      "call save(path))");
  // A non-finite step since the last log leaves the last good file alone.
  read_window(r);
  save(ckpt);
  r.last_ckpt = step_;
}

TrainLogEntry Trainer::end() {
  TrainLogEntry last{step_, std::nan(""), std::nan(""), 0.0, 0.0, 0.0};
  if (run_) {
    last = run_->last;
    run_->bar.finish();
    run_.reset();
  }
  return last;
}

}  // namespace sbgm
