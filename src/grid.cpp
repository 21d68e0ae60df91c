#include "sbgm/grid.h"

#include <cmath>
#include <limits>
#include <sstream>

#include "internal.h"
#include "sbgm/processes/discrete.h"

namespace sbgm {

namespace {

std::string list(const std::vector<double>& v) {
  std::ostringstream os;
  os << "[";
  const size_t n = v.size();
  for (size_t i = 0; i < n; ++i) {
    if (n > 8 && i == 4) {
      os << ", ...";
      i = n - 3;
    }
    os << (i > 0 ? ", " : "") << v[i];
  }
  os << "]";
  return os.str();
}

}  // namespace

TimeGrid::TimeGrid(std::vector<double> times) : times_(std::move(times)) {
  TORCH_CHECK(
      times_.size() >= 2,
      "TimeGrid: a grid needs at least 2 times (one step), got ",
      times_.size(),
      ": ",
      list(times_));
  for (size_t i = 0; i < times_.size(); ++i) {
    const double t = times_[i];
    TORCH_CHECK(
        !std::isnan(t) && t != std::numeric_limits<double>::infinity() &&
            (t != -std::numeric_limits<double>::infinity() ||
             i + 1 == times_.size()),
        "TimeGrid: t[",
        i,
        "] = ",
        t,
        " is not a usable time (NaN, +inf, or -inf before the end) in ",
        list(times_));
    if (i > 0) {
      TORCH_CHECK(
          t < times_[i - 1],
          "TimeGrid: times must strictly decrease, but t[",
          i,
          "] = ",
          t,
          " follows t[",
          i - 1,
          "] = ",
          times_[i - 1],
          " in ",
          list(times_));
    }
  }
}

double TimeGrid::operator[](int64_t i) const {
  TORCH_CHECK(
      i >= 0 && i < static_cast<int64_t>(times_.size()),
      "TimeGrid: index ",
      i,
      " is outside [0, ",
      times_.size(),
      ")");
  return times_[static_cast<size_t>(i)];
}

bool TimeGrid::ends_at_data(const NoiseProcess& process) const {
  return times_.back() == process.data_time();
}

void TimeGrid::check(const NoiseProcess& process, const char* where) const {
  for (size_t i = 0; i < times_.size(); ++i) {
    const double t = times_[i];
    const bool last = i + 1 == times_.size();
    TORCH_CHECK(
        !(t == process.data_time() && !last),
        where,
        ": the grid reaches the data time ",
        t,
        " of the ",
        process.describe(),
        " process at t[",
        i,
        "], before its end; the data time may only end a grid");
    if (t != process.data_time()) {
      TORCH_CHECK(
          t >= process.t_floor() && t <= process.t_max(),
          where,
          ": grid time t[",
          i,
          "] = ",
          t,
          " is outside the range of the ",
          process.describe(),
          " process, [",
          process.t_floor(),
          ", ",
          process.t_max(),
          "] (or its data time ",
          process.data_time(),
          ")");
    }
  }
}

std::vector<ProcessPoint> TimeGrid::points(
    const NoiseProcess& process, const char* where) const {
  check(process, where);
  std::vector<ProcessPoint> pts;
  pts.reserve(times_.size());
  for (double t : times_) {
    pts.push_back(process.at(t));
  }
  return pts;
}

namespace grids {

namespace {

void check_steps(int64_t n, const char* where) {
  TORCH_CHECK(n >= 1, where, ": num_steps must be >= 1, got ", n);
}

struct Span {
  double start, end;
  int64_t points;  // evaluation points spread over [end, start]
};

// t_start / t_end resolved and checked; `points` = N with the data time
// appended, N + 1 without.
Span span(
    const NoiseProcess& p, int64_t n, const GridOptions& o, const char* where) {
  check_steps(n, where);
  Span s{
      o.t_start() ? *o.t_start() : p.t_max(),
      o.t_end() ? *o.t_end() : p.t_min(),
      o.to_data() ? n : n + 1};
  for (double t : {s.start, s.end}) {
    TORCH_CHECK(
        std::isfinite(t) && t >= p.t_floor() && t <= p.t_max() &&
            t != p.data_time(),
        where,
        ": t_start and t_end must lie in the range of the ",
        p.describe(),
        " process, (",
        p.t_floor(),
        ", ",
        p.t_max(),
        "], excluding its data time ",
        p.data_time(),
        "; got t_start = ",
        s.start,
        ", t_end = ",
        s.end);
  }
  TORCH_CHECK(
      s.points == 1 || s.start > s.end,
      where,
      ": t_start must be > t_end, got t_start = ",
      s.start,
      ", t_end = ",
      s.end);
  return s;
}

// The evaluation times f(u), u = i / (points - 1), with the ends exact,
// then the data time when asked for.
template <class F>
TimeGrid build(
    const NoiseProcess& p, const Span& s, const GridOptions& o, F f) {
  std::vector<double> t(static_cast<size_t>(s.points));
  for (int64_t i = 0; i < s.points; ++i) {
    const double u =
        s.points == 1 ? 0.0 : static_cast<double>(i) / (s.points - 1);
    t[i] = i == 0 ? s.start : i == s.points - 1 ? s.end : f(u);
  }
  if (o.to_data()) {
    t.push_back(p.data_time());
  }
  return TimeGrid(std::move(t));
}

const DiscreteProcess& discrete(
    const NoiseProcess& p, int64_t n, const char* where) {
  check_steps(n, where);
  const auto* d = dynamic_cast<const DiscreteProcess*>(&p);
  TORCH_CHECK(
      d != nullptr,
      where,
      ": this spacing picks steps of a discrete schedule and needs a "
      "DiscreteProcess, got the ",
      p.describe(),
      " process");
  TORCH_CHECK(
      n <= d->num_timesteps(),
      where,
      ": num_steps must be <= T = ",
      d->num_timesteps(),
      ", got ",
      n);
  return *d;
}

TimeGrid from_steps(std::vector<double> t, const GridOptions& o) {
  if (o.to_data()) {
    t.push_back(-1.0);
  }
  return TimeGrid(std::move(t));
}

}  // namespace

TimeGrid uniform(const NoiseProcess& p, int64_t n, const GridOptions& o) {
  const Span s = span(p, n, o, "grids::uniform");
  return build(
      p, s, o, [&](double u) { return s.start + u * (s.end - s.start); });
}

TimeGrid log_snr(const NoiseProcess& p, int64_t n, const GridOptions& o) {
  const Span s = span(p, n, o, "grids::log_snr");
  const double l0 = p.lambda(s.start), l1 = p.lambda(s.end);
  return build(
      p, s, o, [&](double u) { return p.t_of_lambda(l0 + u * (l1 - l0)); });
}

TimeGrid karras(const NoiseProcess& p, int64_t n, const GridOptions& o) {
  const char* where = "grids::karras";
  TORCH_CHECK(
      std::isfinite(o.rho()) && o.rho() > 0,
      where,
      ": rho must be finite and > 0, got ",
      o.rho());
  const Span s = span(p, n, o, where);
  const double inv = 1.0 / o.rho();
  const double a = std::pow(std::exp(-p.lambda(s.start)), inv);
  const double b = std::pow(std::exp(-p.lambda(s.end)), inv);
  return build(p, s, o, [&](double u) {
    const double sigma = std::pow(a + u * (b - a), o.rho());
    return p.t_of_lambda(-std::log(sigma));
  });
}

TimeGrid quadratic(const NoiseProcess& p, int64_t n, const GridOptions& o) {
  const Span s = span(p, n, o, "grids::quadratic");
  return build(p, s, o, [&](double u) {
    return s.end + (s.start - s.end) * (1.0 - u) * (1.0 - u);
  });
}

TimeGrid linspace(const NoiseProcess& p, int64_t n, const GridOptions& o) {
  const auto& d = discrete(p, n, "grids::linspace");
  const int64_t T = d.num_timesteps();
  std::vector<double> t;
  if (n == 1) {
    t.push_back(static_cast<double>(T - 1));
  }
  for (int64_t i = n - 1; n > 1 && i >= 0; --i) {
    t.push_back(std::nearbyint(static_cast<double>(i) * (T - 1) / (n - 1)));
  }
  return from_steps(std::move(t), o);
}

TimeGrid leading(const NoiseProcess& p, int64_t n, const GridOptions& o) {
  const auto& d = discrete(p, n, "grids::leading");
  const int64_t ratio = d.num_timesteps() / n;
  std::vector<double> t;
  for (int64_t i = n - 1; i >= 0; --i) {
    t.push_back(static_cast<double>(i * ratio));
  }
  return from_steps(std::move(t), o);
}

TimeGrid trailing(const NoiseProcess& p, int64_t n, const GridOptions& o) {
  const auto& d = discrete(p, n, "grids::trailing");
  const auto T = static_cast<double>(d.num_timesteps());
  std::vector<double> t;
  for (int64_t i = 0; i < n; ++i) {
    t.push_back(std::nearbyint(T - static_cast<double>(i) * T / n) - 1.0);
  }
  return from_steps(std::move(t), o);
}

std::string to_string(GridKind kind) {
  switch (kind) {
    case GridKind::Uniform:
      return "uniform";
    case GridKind::LogSNR:
      return "logsnr";
    case GridKind::Karras:
      return "karras";
    case GridKind::Quadratic:
      return "quadratic";
    case GridKind::Linspace:
      return "linspace";
    case GridKind::Leading:
      return "leading";
    case GridKind::Trailing:
      return "trailing";
  }
  return "unknown";
}

std::vector<std::string> names() {
  return {
      "default",
      "uniform",
      "logsnr",
      "karras",
      "quadratic",
      "linspace",
      "leading",
      "trailing"};
}

GridKind kind_from_name(const std::string& name) {
  for (auto k :
       {GridKind::Uniform,
        GridKind::LogSNR,
        GridKind::Karras,
        GridKind::Quadratic,
        GridKind::Linspace,
        GridKind::Leading,
        GridKind::Trailing}) {
    if (to_string(k) == name) {
      return k;
    }
  }
  std::string valid;
  for (const auto& v : names()) {
    valid += (valid.empty() ? "" : ", ") + v;
  }
  TORCH_CHECK(false, "unknown grid '", name, "'; valid names: ", valid);
}

TimeGrid make(
    GridKind kind, const NoiseProcess& p, int64_t n, const GridOptions& o) {
  switch (kind) {
    case GridKind::Uniform:
      return uniform(p, n, o);
    case GridKind::LogSNR:
      return log_snr(p, n, o);
    case GridKind::Karras:
      return karras(p, n, o);
    case GridKind::Quadratic:
      return quadratic(p, n, o);
    case GridKind::Linspace:
      return linspace(p, n, o);
    case GridKind::Leading:
      return leading(p, n, o);
    case GridKind::Trailing:
      return trailing(p, n, o);
  }
  TORCH_CHECK(false, "grids::make: unknown grid kind");
}

TimeGrid default_grid(const NoiseProcess& p, int64_t n, const GridOptions& o) {
  return make(p.default_grid(), p, n, o);
}

TimeGrid from_name(
    const std::string& name,
    const NoiseProcess& p,
    int64_t n,
    const GridOptions& o) {
  if (name == "default") {
    return default_grid(p, n, o);
  }
  return make(kind_from_name(name), p, n, o);
}

}  // namespace grids

}  // namespace sbgm
