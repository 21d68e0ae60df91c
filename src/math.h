#pragma once

// Private: elementary functions with one name for doubles and tensors, so
// that each process writes its formulas once (templated on double and
// torch::Tensor) and gets its host and tensor forms from the same text.

#include <torch/types.h>

#include <cmath>

namespace sbgm::math {

inline double exp(double x) {
  return std::exp(x);
}
inline torch::Tensor exp(const torch::Tensor& x) {
  return torch::exp(x);
}
inline double expm1(double x) {
  return std::expm1(x);
}
inline torch::Tensor expm1(const torch::Tensor& x) {
  return torch::expm1(x);
}
inline double log(double x) {
  return std::log(x);
}
inline torch::Tensor log(const torch::Tensor& x) {
  return torch::log(x);
}
inline double log1p(double x) {
  return std::log1p(x);
}
inline torch::Tensor log1p(const torch::Tensor& x) {
  return torch::log1p(x);
}
inline double sqrt(double x) {
  return std::sqrt(x);
}
inline torch::Tensor sqrt(const torch::Tensor& x) {
  return torch::sqrt(x);
}
inline double square(double x) {
  return x * x;
}
inline torch::Tensor square(const torch::Tensor& x) {
  return x.square();
}
inline double asinh(double x) {
  return std::asinh(x);
}
inline torch::Tensor asinh(const torch::Tensor& x) {
  return torch::asinh(x);
}
/// log(1 + exp(x)) without overflow.
inline double softplus(double x) {
  return (x > 0 ? x : 0.0) + std::log1p(std::exp(-std::abs(x)));
}
inline torch::Tensor softplus(const torch::Tensor& x) {
  return x.clamp_min(0.0) + torch::log1p(torch::exp(-x.abs()));
}
/// 1 for every entry (alpha of the variance-exploding processes).
inline double ones_like(double) {
  return 1.0;
}
inline torch::Tensor ones_like(const torch::Tensor& x) {
  return torch::ones_like(x);
}
/// Elementwise min with a constant.
inline double min(double x, double c) {
  return x < c ? x : c;
}
inline torch::Tensor min(const torch::Tensor& x, double c) {
  return x.clamp_max(c);
}
/// Elementwise max with a constant.
inline double max(double x, double c) {
  return x > c ? x : c;
}
inline torch::Tensor max(const torch::Tensor& x, double c) {
  return x.clamp_min(c);
}

}  // namespace sbgm::math
