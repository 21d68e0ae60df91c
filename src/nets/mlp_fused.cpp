#include "sbgm/nets/mlp_fused.h"

#include <ATen/ATen.h>
#include <dlfcn.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>

#include <algorithm>
#include <climits>

#include "internal.h"

namespace sbgm {

namespace {

// ---- the CPU path on the BLAS LibTorch itself calls ------------------------
//
// At batch 128 and 64 units every matrix product is ~1 MFLOP (~10 us), and
// the ~35 ATen operators of the tensor path cost ~3 us of dispatch each.
// On CPU the step therefore calls the Fortran BLAS that LibTorch links
// (sgemm_/dgemm_, found at run time) directly, and fuses the elementwise
// work (bias, embedding rows, ReLU, the loss, masks, bias and embedding
// gradients) into one loop per layer. Where the symbols are absent (a
// LibTorch with a private BLAS) the tensor path runs instead.

template <typename T>
using GemmFn = void (*)(
    const char*,
    const char*,
    const int*,
    const int*,
    const int*,
    const T*,
    const T*,
    const int*,
    const T*,
    const int*,
    const T*,
    T*,
    const int*);

template <typename T>
GemmFn<T> blas_gemm() {
  static const GemmFn<T> fn = reinterpret_cast<GemmFn<T>>(
      dlsym(RTLD_DEFAULT, sizeof(T) == 4 ? "sgemm_" : "dgemm_"));
  return fn;
}

// Column-major C[m, n] = alpha op(A) op(B) + beta C, as BLAS defines it.
template <typename T>
void gemm(
    char ta,
    char tb,
    int64_t m,
    int64_t n,
    int64_t k,
    T alpha,
    const T* a,
    int64_t lda,
    const T* b,
    int64_t ldb,
    T beta,
    T* c,
    int64_t ldc) {
  const int im = static_cast<int>(m), in = static_cast<int>(n),
            ik = static_cast<int>(k), ia = static_cast<int>(lda),
            ib = static_cast<int>(ldb), ic = static_cast<int>(ldc);
  blas_gemm<T>()(
      &ta, &tb, &im, &in, &ik, &alpha, a, &ia, b, &ib, &beta, c, &ic);
}

template <typename T>
T* ptr(const torch::Tensor& t) {
  return t.data_ptr<T>();
}

// z <- max((z + b) + e, 0) (ReLU; NaN stays NaN). The row helpers are kept
// out of line so that their __restrict holds and the loops vectorize.
template <typename T>
__attribute__((noinline)) void bias_relu_row(
    T* __restrict z, const T* __restrict b, const T* __restrict e, int64_t H) {
  for (int64_t j = 0; j < H; ++j) {
    const T v = (z[j] + b[j]) + e[j];
    z[j] = v < T(0) ? T(0) : v;
  }
}

// d <- dh [h > 0]; gb += d; ge += d (ge is one embedding row; gb and ge
// never overlap: they are different parameters' gradients).
template <typename T>
__attribute__((noinline)) void relu_grad_row(
    T* __restrict d,
    const T* __restrict dh,
    const T* __restrict h,
    T* __restrict gb,
    T* __restrict ge,
    int64_t H) {
  for (int64_t j = 0; j < H; ++j) {
    const T g = dh[j];
    const T v = h[j] > T(0) ? g : T(0);
    d[j] = v;
    gb[j] += v;
    ge[j] += v;
  }
}

// The whole step on raw buffers; the same equations as the tensor path
// (mlp_fused.h), row-major [N, features] activations. A row-major X[r, c]
// is the column-major X^T with leading dimension c, so Z = H W^T is
// gemm('T', 'N') on (W, H), and so on below.
template <typename T>
double raw_step(
    int64_t depth,
    int64_t H,
    int64_t D,
    const T* x,
    const int64_t* t,
    const T* target,
    int64_t n,
    std::vector<torch::Tensor>& h,
    std::vector<torch::Tensor>& dz,
    torch::Tensor& dh_buf,
    torch::Tensor& out_buf,
    const std::vector<torch::Tensor*>& params,
    const std::vector<torch::Tensor*>& grads) {
  // params and grads: per layer (W, b, E), then W_o, b_o.
  auto weight = [&](int64_t l) {
    return ptr<T>(*params[static_cast<size_t>(3 * l)]);
  };
  auto bias = [&](int64_t l) {
    return ptr<T>(*params[static_cast<size_t>(3 * l + 1)]);
  };
  auto table = [&](int64_t l) {
    return ptr<T>(*params[static_cast<size_t>(3 * l + 2)]);
  };
  auto grad = [&](size_t i) { return ptr<T>(*grads[i]); };
  auto hp = [&](int64_t l) { return l == 0 ? x : ptr<T>(h[l]); };

  for (int64_t l = 0; l < depth; ++l) {
    const int64_t in = l == 0 ? D : H;
    T* z = ptr<T>(h[l + 1]);
    gemm<T>('T', 'N', H, n, in, 1, weight(l), in, hp(l), in, 0, z, H);
    const T* b = bias(l);
    const T* e = table(l);
    for (int64_t i = 0; i < n; ++i) {
      bias_relu_row(z + i * H, b, e + t[i] * H, H);
    }
  }
  const size_t go = static_cast<size_t>(3 * depth);
  const T* wo = ptr<T>(*params[go]);
  const T* bo = ptr<T>(*params[go + 1]);
  T* out = ptr<T>(out_buf);
  gemm<T>('T', 'N', D, n, H, 1, wo, H, hp(depth), H, 0, out, D);
  const T scale = T(2) / static_cast<T>(n * D);
  double sq = 0;
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < D; ++j) {
      const T r = (out[i * D + j] + bo[j]) - target[i * D + j];
      sq += static_cast<double>(r) * static_cast<double>(r);
      out[i * D + j] = r * scale;
    }
  }
  // Read-out layer.
  gemm<T>('N', 'T', H, D, n, 1, hp(depth), H, out, D, 1, grad(go), H);
  T* gbo = grad(go + 1);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < D; ++j) {
      gbo[j] += out[i * D + j];
    }
  }
  T* dh = ptr<T>(dh_buf);
  gemm<T>('N', 'N', H, n, D, 1, wo, H, out, D, 0, dh, H);
  for (int64_t l = depth - 1; l >= 0; --l) {
    const int64_t in = l == 0 ? D : H;
    const T* hl1 = ptr<T>(h[l + 1]);
    T* d = ptr<T>(dz[l]);
    T* gb = grad(static_cast<size_t>(3 * l + 1));
    T* ge = grad(static_cast<size_t>(3 * l + 2));
    for (int64_t i = 0; i < n; ++i) {
      relu_grad_row(d + i * H, dh + i * H, hl1 + i * H, gb, ge + t[i] * H, H);
    }
    gemm<T>(
        'N',
        'T',
        in,
        H,
        n,
        1,
        hp(l),
        in,
        d,
        H,
        1,
        grad(static_cast<size_t>(3 * l)),
        in);
    if (l > 0) {
      gemm<T>('N', 'N', in, n, H, 1, weight(l), in, d, H, 0, dh, in);
    }
  }
  return sq / static_cast<double>(n * D);
}

// The grad of p, allocated as zeros the first time (as backward() does).
torch::Tensor& grad_of(torch::Tensor& p) {
  if (!p.mutable_grad().defined()) {
    p.mutable_grad() = torch::zeros_like(p);
  }
  return p.mutable_grad();
}

}  // namespace

bool FusedMLPStep::supports(const MLP& net) {
  return net->options.embedding() == TimeEmbeddingKind::Learned &&
         net->options.activation() == Activation::ReLU &&
         net->options.num_classes() == 0;
}

FusedMLPStep::FusedMLPStep(MLP net) : net_(std::move(net)) {
  TORCH_CHECK(
      supports(net_),
      "FusedMLPStep: needs an unconditional MLP with a Learned embedding "
      "and ReLU, got embedding ",
      to_string(net_->options.embedding()),
      ", activation ",
      to_string(net_->options.activation()),
      " and num_classes ",
      net_->options.num_classes());
}

torch::Tensor FusedMLPStep::operator()(
    const torch::Tensor& x,
    const torch::Tensor& t,
    const torch::Tensor& target) {
  const auto& o = net_->options;
  const int64_t depth = o.depth();
  detail::check_floating(x, "x", "FusedMLPStep");
  TORCH_CHECK(
      x.dim() == 2 && x.size(1) == o.input_dim(),
      "FusedMLPStep: x must have shape [N, ",
      o.input_dim(),
      "], got ",
      detail::shape_str(x));
  TORCH_CHECK(
      target.sizes() == x.sizes(),
      "FusedMLPStep: target has shape ",
      detail::shape_str(target),
      " but x has shape ",
      detail::shape_str(x));
  detail::check_time_tensor(t, x, /*integer=*/true, "FusedMLPStep");
  TORCH_CHECK(
      t.dim() == 1,
      "FusedMLPStep: t must have one step per sample, got shape ",
      detail::shape_str(t));
  const int64_t n = x.size(0);
  const auto opts = x.options();
  if (z_.size() != static_cast<size_t>(depth) || z_[0].size(0) != n ||
      z_[0].options().dtype() != opts.dtype() || z_[0].device() != x.device()) {
    z_.assign(depth, {});
    h_.assign(depth + 1, {});
    for (int64_t l = 0; l < depth; ++l) {
      z_[l] = torch::empty({n, o.hidden()}, opts);
      h_[l + 1] = torch::empty({n, o.hidden()}, opts);
    }
    emb_ = torch::empty({n, o.hidden()}, opts);
    dh_ = torch::empty({n, o.hidden()}, opts);
    out_ = torch::empty({n, o.input_dim()}, opts);
    ones_ = torch::ones({n}, opts);
  }
  torch::NoGradGuard no_grad;
  h_[0] = x;
  detail::check_step_range(t, o.num_timesteps(), "FusedMLPStep");

  if (torch::Tensor loss; raw_path(x, t, target, loss)) {
    return loss;
  }

  // Forward, keeping h_l for the backward pass.
  for (int64_t l = 0; l < depth; ++l) {
    auto lin = net_->layers[l]->as<torch::nn::Linear>();
    auto table = net_->embeddings[l]->as<TimeEmbedding>()->table->weight;
    at::index_select_out(emb_, table, 0, t);
    at::addmm_out(z_[l], lin->bias, h_[l], lin->weight.t());
    z_[l].add_(emb_);
    at::relu_out(h_[l + 1], z_[l]);
  }
  at::addmm_out(out_, net_->out->bias, h_[depth], net_->out->weight.t());

  // Loss and its gradient with respect to the output (out_ becomes g).
  out_.sub_(target);
  torch::Tensor loss = out_.square().mean();
  out_.mul_(2.0 / static_cast<double>(out_.numel()));

  // Backward.
  grad_of(net_->out->weight).addmm_(out_.t(), h_[depth]);
  grad_of(net_->out->bias).addmv_(out_.t(), ones_);
  at::mm_out(dh_, out_, net_->out->weight);
  for (int64_t l = depth - 1; l >= 0; --l) {
    auto lin = net_->layers[l]->as<torch::nn::Linear>();
    auto& table = net_->embeddings[l]->as<TimeEmbedding>()->table->weight;
    torch::Tensor& dz = z_[l];  // reuse: z_l is not needed any more
    at::threshold_backward_out(dz, dh_, h_[l + 1], 0);
    grad_of(lin->weight).addmm_(dz.t(), h_[l]);
    grad_of(lin->bias).addmv_(dz.t(), ones_);
    grad_of(table).index_add_(0, t, dz);
    if (l > 0) {
      at::mm_out(dh_, dz, lin->weight);
    }
  }
  return loss;
}

bool FusedMLPStep::raw_path(
    const torch::Tensor& x,
    const torch::Tensor& t,
    const torch::Tensor& target,
    torch::Tensor& loss) {
  const auto dtype = x.scalar_type();
  if (!x.device().is_cpu() ||
      (dtype != torch::kFloat && dtype != torch::kDouble) ||
      !x.is_contiguous() || !target.is_contiguous() ||
      target.scalar_type() != dtype || t.scalar_type() != torch::kLong ||
      (dtype == torch::kFloat ? blas_gemm<float>() == nullptr
                              : blas_gemm<double>() == nullptr)) {
    return false;
  }
  const auto& o = net_->options;
  const int64_t n = x.size(0), depth = o.depth();
  if (n * std::max(o.hidden(), o.input_dim()) >= INT_MAX) {
    return false;
  }
  // Parameters and gradients in the order raw_step reads them: per layer
  // (W, b, E), then W_o, b_o; all contiguous, of x's dtype, on the CPU.
  std::vector<torch::Tensor*> params;
  for (int64_t l = 0; l < depth; ++l) {
    params.push_back(&net_->layers[l]->as<torch::nn::Linear>()->weight);
    params.push_back(&net_->layers[l]->as<torch::nn::Linear>()->bias);
    params.push_back(&net_->embeddings[l]->as<TimeEmbedding>()->table->weight);
  }
  params.push_back(&net_->out->weight);
  params.push_back(&net_->out->bias);
  std::vector<torch::Tensor*> grads;
  for (auto* p : params) {
    if (!p->device().is_cpu() || p->scalar_type() != dtype ||
        !p->is_contiguous()) {
      return false;
    }
    auto& g = grad_of(*p);
    if (g.scalar_type() != dtype || !g.is_contiguous() ||
        !g.device().is_cpu()) {
      return false;
    }
    grads.push_back(&g);
  }
  auto tc = t.contiguous();
  const int64_t* tp = tc.data_ptr<int64_t>();
  const int64_t H = o.hidden(), D = o.input_dim();
  double value = 0;
  AT_DISPATCH_FLOATING_TYPES(dtype, "FusedMLPStep", [&] {
    value = raw_step<scalar_t>(
        depth,
        H,
        D,
        x.data_ptr<scalar_t>(),
        tp,
        target.data_ptr<scalar_t>(),
        n,
        h_,
        z_,
        dh_,
        out_,
        params,
        grads);
  });
  loss = torch::scalar_tensor(value, x.options());
  return true;
}

}  // namespace sbgm
