#include "sbgm/train/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
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

// A one-line progress bar on stderr, redrawn in place.
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

}  // namespace

TrainerOptions::TrainerOptions(int64_t steps) : steps_(steps) {}

Trainer::Trainer(
    std::shared_ptr<torch::nn::Module> module,
    LossFn loss,
    TrainerOptions options,
    std::shared_ptr<torch::optim::Optimizer> optimizer)
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
    optimizer_ = std::make_shared<FlatAdam>(
        module_->parameters(), FlatAdamOptions(o.lr()));
  }
  flat_ = std::dynamic_pointer_cast<FlatAdam>(optimizer_);
  if (flat_ && o.grad_clip() > 0) {
    // Clipping fused into the optimizer step.
    static_cast<FlatAdamOptions&>(flat_->param_groups().at(0).options())
        .max_grad_norm(o.grad_clip());
  }
  for (auto& group : optimizer_->param_groups()) {
    base_lr_.push_back(group.options().get_lr());
  }
  if (o.ema_decay() > 0.0) {
    ema_ = std::make_unique<EMA>(*module_, o.ema_decay(), o.ema_warmup());
  }
}

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

void Trainer::save(const std::string& path) const {
  save_checkpoint(path, *module_, step_, optimizer_.get(), ema_.get(), true);
}

void Trainer::load(const std::string& path) {
  step_ = load_checkpoint(path, *module_, optimizer_.get(), ema_.get(), true);
}

TrainLogEntry Trainer::run() {
  const auto& o = options_;
  const std::string& ckpt = o.checkpoint_path();
  bool resumed = false;
  int64_t last_ckpt = -1;
  if (!ckpt.empty() && o.resume() && std::filesystem::exists(ckpt)) {
    load(ckpt);  // throws on a damaged or mismatched file, leaving it alone
    resumed = true;
    last_ckpt = step_;
  }

  std::ofstream csv;
  if (!o.csv_path().empty()) {
    const bool append = resumed && std::filesystem::exists(o.csv_path());
    csv.open(o.csv_path(), append ? std::ios::app : std::ios::trunc);
    TORCH_CHECK(
        csv.good(), "Trainer: cannot open the CSV log '", o.csv_path(), "'");
    if (!append) {
      csv << "step,loss,grad_norm,lr,it_per_s,elapsed_s\n" << std::flush;
    }
  }

  const bool bar_on =
      o.progress() == ProgressMode::On ||
      (o.progress() == ProgressMode::Auto && SBGM_ISATTY(SBGM_FILENO(stderr)));
  ProgressBar bar(bar_on, o.steps());

  module_->train();
  auto params = module_->parameters(/*recurse=*/true);
  torch::Tensor loss_acc, gn_acc;  // device accumulators of the window
  int64_t window = 0, window_start = step_;
  const int64_t first_step = step_;
  const auto t0 = Clock::now();
  TrainLogEntry last{step_, std::nan(""), std::nan(""), 0.0, 0.0, 0.0};
  double shown_loss = std::nan("");

  auto current_lr = [&]() {
    return optimizer_->param_groups().empty()
               ? 0.0
               : optimizer_->param_groups()[0].options().get_lr();
  };

  // FlatAdam with max_grad_norm > 0 clips inside its step.
  const bool fused = flat_ && static_cast<const FlatAdamOptions&>(
                                  flat_->param_groups().at(0).options())
                                      .max_grad_norm() > 0;
  while (step_ < o.steps()) {
    if (o.lr_warmup() > 0 || o.lr_schedule() != LRSchedule::Constant) {
      const double f = lr_factor(step_);
      auto& groups = optimizer_->param_groups();
      for (size_t i = 0; i < groups.size(); ++i) {
        groups[i].options().set_lr(base_lr_[i] * f);
      }
    }
    if (flat_) {
      flat_->zero_flat_grad();
    } else {
      optimizer_->zero_grad();
    }
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

    // Global gradient norm and clipping, all on the device; FlatAdam with
    // max_grad_norm > 0 does both inside its step.
    torch::Tensor gnorm;
    if (!fused) {
      std::vector<torch::Tensor> grads;
      for (auto& p : params) {
        if (p.grad().defined()) {
          grads.push_back(p.grad());
        }
      }
      torch::NoGradGuard no_grad;
      if (grads.empty()) {
        gnorm = torch::zeros({}, loss.options().requires_grad(false));
      } else {
        std::vector<torch::Tensor> norms;
        norms.reserve(grads.size());
        for (auto& g : grads) {
          norms.push_back(g.norm().to(torch::kFloat));
        }
        gnorm = torch::stack(norms).norm();
        if (o.grad_clip() > 0) {
          auto coef = (o.grad_clip() / (gnorm + 1e-6)).clamp_max(1.0);
          for (auto& g : grads) {
            g.mul_(coef.to(g.scalar_type()));
          }
        }
      }
    }
    optimizer_->step();
    if (fused) {
      gnorm = flat_->last_grad_norm();
    }
    if (ema_) {
      ema_->update(*module_);
    }
    ++step_;
    {
      torch::NoGradGuard no_grad;
      auto l = loss.detach().reshape({}).to(torch::kFloat);
      auto g = gnorm.detach().to(l.device(), torch::kFloat);
      loss_acc = loss_acc.defined() ? loss_acc.add_(l) : l.clone();
      gn_acc = gn_acc.defined() ? gn_acc.add_(g) : g.clone();
    }
    ++window;

    const bool log_now = step_ % o.log_every() == 0 || step_ == o.steps();
    const bool ckpt_now =
        !ckpt.empty() &&
        ((o.checkpoint_every() > 0 && step_ % o.checkpoint_every() == 0) ||
         step_ == o.steps());
    const double elapsed = seconds_since(t0);
    const double rate =
        elapsed > 0 ? static_cast<double>(step_ - first_step) / elapsed : 0.0;
    if (log_now || ckpt_now) {
      // The one host sync of the window.
      const double mean_loss =
          loss_acc.item<double>() / static_cast<double>(window);
      const double mean_gn =
          gn_acc.item<double>() / static_cast<double>(window);
      if (!std::isfinite(mean_loss) || !std::isfinite(mean_gn)) {
        bar.finish();
        std::ostringstream where;
        if (last_ckpt >= 0) {
          where << "the last good checkpoint is '" << ckpt << "' (step "
                << last_ckpt << ")";
        } else if (!ckpt.empty()) {
          where << "no checkpoint had been written yet";
        } else {
          where << "no checkpoint path was set";
        }
        TORCH_CHECK(
            false,
            "Trainer: the ",
            std::isfinite(mean_loss) ? "gradient norm" : "loss",
            " became non-finite (",
            std::isfinite(mean_loss) ? mean_gn : mean_loss,
            ") between steps ",
            window_start,
            " and ",
            step_,
            "; training stopped; ",
            where.str());
      }
      if (log_now) {
        last = {step_, mean_loss, mean_gn, current_lr(), rate, elapsed};
        shown_loss = mean_loss;
        if (csv.is_open()) {
          csv << last.step << ',' << std::setprecision(8) << last.loss << ','
              << last.grad_norm << ',' << last.lr << ',' << std::setprecision(6)
              << last.it_per_s << ',' << last.elapsed_s << '\n'
              << std::flush;
        }
        if (on_log_) {
          on_log_(last);
        }
        loss_acc = torch::Tensor();
        gn_acc = torch::Tensor();
        window = 0;
        window_start = step_;
      }
      if (ckpt_now) {
        save(ckpt);
        last_ckpt = step_;
      }
    }
    bar.draw(step_, shown_loss, rate, log_now);
  }
  bar.finish();
  return last;
}

}  // namespace sbgm
