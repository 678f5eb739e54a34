// BatchNorm in training mode over the rows of feats [N, C] (each row one sample), with an optional
// residual added and an optional ReLU after it, and its backward: what a training step runs after
// every convolution (a residual block's second one adds its shortcut). torch's CPU
// batch norm reads a [N, C] matrix a channel at a time (a stride of C floats), and the ReLU and its
// backward are two more passes; here every pass reads whole rows, the forward is two passes (sums,
// then normalise + ReLU) and the backward two (sums, then the input gradient).
// Sums run in float64 over fixed chunks of rows, added in chunk order: the same bits at any thread
// count. The statistics are returned in float64: the mean and the biased variance.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <vector>

#include "../common/checks.h"

namespace pointengine {
namespace {

constexpr int64_t kChunkRows = 1024;

// totals[j] (j < width) += the sum over the chunks of chunk_sums(first_row, last_row, partial), each
// chunk's partial sums [width] computed on its own and added in chunk order.
template <typename ChunkFn>
void sum_over_chunks(int64_t n, int64_t width, double* totals, const ChunkFn& chunk_sums) {
  const int64_t n_chunks = (n + kChunkRows - 1) / kChunkRows;
  std::vector<double> partial(n_chunks * width, 0.0);
  at::parallel_for(0, n_chunks, 1, [&](int64_t cb, int64_t ce) {
    for (int64_t c = cb; c < ce; ++c)
      chunk_sums(c * kChunkRows, std::min(n, (c + 1) * kChunkRows), partial.data() + c * width);
  });
  for (int64_t c = 0; c < n_chunks; ++c)
    for (int64_t j = 0; j < width; ++j) totals[j] += partial[c * width + j];
}

// The per-row loops, on restrict pointers so that the compiler vectorises them along the channels,
// built twice: for AVX2 (four float64 lanes) and for any x86-64, the one taken chosen when the
// library loads. Every element's sums run in the same order in both, without fused multiply-adds:
// the same bits. GCC vectorises the ReLU's selects only when comparisons may not trap (the results
// are the same: nothing here reads the floating-point exception flags); the loops' helpers carry the
// same option, without which GCC does not inline them.
#define PE_NO_TRAP __attribute__((optimize("no-trapping-math")))
#define PE_ROW_LOOP __attribute__((target_clones("avx2", "default"))) PE_NO_TRAP

template <typename T>
PE_ROW_LOOP void add_shifted_sums(const T* __restrict x, const double* __restrict shift, int64_t c,
                                  double* __restrict sum, double* __restrict sum_sq) {
  for (int64_t j = 0; j < c; ++j) {
    const double d = double(x[j]) - shift[j];
    sum[j] += d;
    sum_sq[j] += d * d;
  }
}

// The forward's scale of a channel, weight / sqrt(var + eps), rounded to the rows' type.
template <typename T>
T channel_scale(T weight, double var, double eps) {
  return T(double(weight) / std::sqrt(var + eps));
}

// The forward's normalized element before the residual and the ReLU: one definition, so that the
// backward's ReLU mask recomputed from x (ReluMask::kFromX) is the forward's, bit for bit.
template <typename T>
PE_NO_TRAP inline T normalized(T x, T mean, T scale, T bias) {
  return (x - mean) * scale + bias;
}

// residual: a row of C to add before the ReLU, or nullptr.
template <typename T>
PE_ROW_LOOP void normalize_row(const T* __restrict x, const T* __restrict mean, const T* __restrict scale,
                               const T* __restrict bias, const T* __restrict residual, int64_t c, bool relu,
                               T* __restrict y) {
  for (int64_t j = 0; j < c; ++j) y[j] = normalized(x[j], mean[j], scale[j], bias[j]);
  if (residual)
    for (int64_t j = 0; j < c; ++j) y[j] += residual[j];
  if (relu)
    for (int64_t j = 0; j < c; ++j) y[j] = y[j] <= T(0) ? T(0) : y[j];  // NaN stays NaN, as torch's ReLU
}

// In the backward rows, the gradient reaching the batch norm's output is zero where the ReLU cut it
// (output <= 0; NaN passes). Where the ReLU's input was the normalized x alone (no residual), the
// mask is recomputed from x (kFromX: one row fewer to read per element; forward + backward of 48
// channels in 0.77-0.88x the time), else read from the output y (kFromY); without a ReLU there is none.
enum class ReluMask { kNone, kFromY, kFromX };

// The forward's per-channel values that kFromX recomputes the ReLU's input with.
template <typename T>
struct Affine {
  const T* mean;
  const T* scale;
  const T* bias;
};

// grad where the ReLU passed, else 0.
template <ReluMask Mask, typename T>
PE_NO_TRAP inline T passed_gradient(T grad, T y, T x, T mean, T scale, T bias) {
  if constexpr (Mask == ReluMask::kFromY) return y <= T(0) ? T(0) : grad;
  if constexpr (Mask == ReluMask::kFromX) return normalized(x, mean, scale, bias) <= T(0) ? T(0) : grad;
  return grad;
}

// With KeepMasked, the sums pass also writes the passed gradient (the residual's) to masked.
template <ReluMask Mask, bool KeepMasked, typename T>
PE_ROW_LOOP void add_gradient_sums(
    const T* __restrict grad, const T* __restrict y, const T* __restrict x, const double* __restrict mean,
    Affine<T> affine, int64_t c, double* __restrict sum, double* __restrict sum_gx, T* __restrict masked) {
  const T* __restrict mean_x = affine.mean;
  const T* __restrict scale = affine.scale;
  const T* __restrict bias = affine.bias;
  for (int64_t j = 0; j < c; ++j) {
    // every operand read first: a select the compiler vectorises, not a branch
    const T gm = passed_gradient<Mask>(grad[j], y[j], x[j], mean_x[j], scale[j], bias[j]);
    if constexpr (KeepMasked) masked[j] = gm;
    const double g = double(gm);
    sum[j] += g;
    sum_gx[j] += g * (double(x[j]) - mean[j]);
  }
}

template <ReluMask Mask, typename T>
PE_ROW_LOOP void input_gradient_row(
    const T* __restrict grad, const T* __restrict y, const T* __restrict x, const T* __restrict a,
    const T* __restrict slope, Affine<T> affine, const T* __restrict d, int64_t c, T* __restrict out) {
  const T* __restrict mean = affine.mean;
  const T* __restrict scale = affine.scale;
  const T* __restrict bias = affine.bias;
  for (int64_t j = 0; j < c; ++j) {
    const T g = passed_gradient<Mask>(grad[j], y[j], x[j], mean[j], scale[j], bias[j]);
    out[j] = a[j] * g + slope[j] * (x[j] - mean[j]) + d[j];
  }
}

// Checks that t is a matrix of x's shape and dtype.
void check_shaped_like_x(const at::Tensor& t, const at::Tensor& x, const char* op, const char* arg) {
  check_matrix(t, op, arg, x.scalar_type(), x.size(1), "[N, C]");
  TORCH_CHECK(t.size(0) == x.size(0), op, ": ", arg, " must have x's shape ", x.sizes(), ", got ", t.sizes());
}

// t, checked to be a vector [C] of `dtype`, contiguous.
at::Tensor checked_channel_vector(const at::Tensor& t, const char* op, const char* arg, at::ScalarType dtype,
                                  int64_t c) {
  check_kernel_tensor(t, op, arg, dtype);
  TORCH_CHECK(t.dim() == 1 && t.size(0) == c, op, ": ", arg, " must be a vector of C = ", c, " entries, got ",
              t.sizes());
  return t.contiguous();
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> batch_norm_train_cpu(const at::Tensor& x_in, const at::Tensor& weight,
                                                                     const at::Tensor& bias, double eps, bool relu,
                                                                     const std::optional<at::Tensor>& residual_in) {
  constexpr const char* op = "batch_norm_train";
  check_float_matrix(x_in, op, "x", "[N, C]");
  TORCH_CHECK(x_in.size(0) > 1, op, ": training statistics need more than one row, got ", x_in.sizes());
  const int64_t n = x_in.size(0), c = x_in.size(1);
  const at::Tensor w_c = checked_channel_vector(weight, op, "weight", x_in.scalar_type(), c);
  const at::Tensor b_c = checked_channel_vector(bias, op, "bias", x_in.scalar_type(), c);
  TORCH_CHECK(eps > 0, op, ": eps must be positive, got ", eps);
  const bool has_residual = residual_in.has_value() && residual_in->defined();
  if (has_residual) check_shaped_like_x(*residual_in, x_in, op, "residual");
  const at::Tensor x = x_in.contiguous(), residual = has_residual ? residual_in->contiguous() : at::Tensor();
  at::Tensor y = at::empty_like(x);
  at::Tensor mean = at::empty({c}, x.options().dtype(at::kDouble));
  at::Tensor var = at::empty({c}, x.options().dtype(at::kDouble));
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "batch_norm_train_cpu", [&] {
    const scalar_t* xp = x.data_ptr<scalar_t>();
    // Sums of x - x[0] (per channel) and of its square: the shift keeps the variance from cancelling
    // when the mean is large against the spread.
    std::vector<double> shift(xp, xp + c), sums(2 * c, 0.0);
    sum_over_chunks(n, 2 * c, sums.data(), [&](int64_t begin, int64_t end, double* s) {
      for (int64_t i = begin; i < end; ++i) add_shifted_sums(xp + i * c, shift.data(), c, s, s + c);
    });
    double* m = mean.data_ptr<double>();
    double* v = var.data_ptr<double>();
    std::vector<scalar_t> scale(c), mean_x(c);
    const scalar_t* w = w_c.data_ptr<scalar_t>();
    const scalar_t* b = b_c.data_ptr<scalar_t>();
    for (int64_t j = 0; j < c; ++j) {
      const double centred_mean = sums[j] / double(n);
      m[j] = shift[j] + centred_mean;
      v[j] = std::max(0.0, sums[c + j] / double(n) - centred_mean * centred_mean);
      scale[j] = channel_scale(w[j], v[j], eps), mean_x[j] = scalar_t(m[j]);
    }
    scalar_t* yp = y.data_ptr<scalar_t>();
    const scalar_t* rp = has_residual ? residual.data_ptr<scalar_t>() : nullptr;
    at::parallel_for(0, n, kChunkRows, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i)
        normalize_row(xp + i * c, mean_x.data(), scale.data(), b, rp ? rp + i * c : nullptr, c, relu, yp + i * c);
    });
  });
  return {y, mean, var};
}

// The ReLU's mask comes from y when given, else (relu without a residual) it is recomputed from x
// with bias. masked_grad (with relu and y): also returns grad_y with zeros where the ReLU cut it, the
// gradient of a residual added before the ReLU; else the fourth result is empty.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> batch_norm_train_backward_cpu(
    const at::Tensor& grad_y_in, const at::Tensor& x_in, const std::optional<at::Tensor>& y_in, const at::Tensor& mean,
    const at::Tensor& var, const at::Tensor& weight, double eps, bool relu, bool masked_grad,
    const std::optional<at::Tensor>& bias_in) {
  constexpr const char* op = "batch_norm_train_backward";
  TORCH_CHECK(relu || !masked_grad, op, ": masked_grad needs relu (without one, the residual's gradient is grad_y)");
  const bool has_y = y_in.has_value() && y_in->defined(), has_bias = bias_in.has_value() && bias_in->defined();
  TORCH_CHECK(!masked_grad || has_y, op, ": masked_grad needs y (after a residual, the ReLU's mask is read from y)");
  TORCH_CHECK(!relu || has_y || has_bias, op,
              ": a ReLU's mask needs y (the forward's output) or bias (to recompute it from x)");
  check_float_matrix(x_in, op, "x", "[N, C]");
  const int64_t n = x_in.size(0), c = x_in.size(1);
  TORCH_CHECK(n > 1, op, ": training statistics need more than one row, got ", x_in.sizes());
  check_shaped_like_x(grad_y_in, x_in, op, "grad_y");
  const ReluMask mask = !relu ? ReluMask::kNone : has_y ? ReluMask::kFromY : ReluMask::kFromX;
  if (mask == ReluMask::kFromY) check_shaped_like_x(*y_in, x_in, op, "y");
  const at::Tensor mean_c = checked_channel_vector(mean, op, "mean", at::kDouble, c);
  const at::Tensor var_c = checked_channel_vector(var, op, "var", at::kDouble, c);
  const at::Tensor w_c = checked_channel_vector(weight, op, "weight", x_in.scalar_type(), c);
  const at::Tensor b_c = mask == ReluMask::kFromX ? checked_channel_vector(*bias_in, op, "bias", x_in.scalar_type(), c)
                                                  : at::zeros({c}, x_in.options());
  const at::Tensor grad_y = grad_y_in.contiguous(), x = x_in.contiguous();
  const at::Tensor y = mask == ReluMask::kFromY ? y_in->contiguous() : at::Tensor();
  at::Tensor grad_x = at::empty_like(x);
  at::Tensor grad_weight = at::empty({c}, x.options()), grad_bias = at::empty({c}, x.options());
  at::Tensor masked = masked_grad ? at::empty_like(x) : at::empty({0}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "batch_norm_train_backward_cpu", [&] {
    const scalar_t* gp = grad_y.data_ptr<scalar_t>();
    const scalar_t* xp = x.data_ptr<scalar_t>();
    const scalar_t* yp = mask == ReluMask::kFromY ? y.data_ptr<scalar_t>() : xp;  // read only for kFromY
    scalar_t* mp = masked_grad ? masked.data_ptr<scalar_t>() : nullptr;
    const double* m = mean_c.data_ptr<double>();
    const scalar_t* w = w_c.data_ptr<scalar_t>();
    const double* v = var_c.data_ptr<double>();
    std::vector<scalar_t> mean_x(c), scale(c);
    for (int64_t j = 0; j < c; ++j) mean_x[j] = scalar_t(m[j]), scale[j] = channel_scale(w[j], v[j], eps);
    const Affine<scalar_t> affine{mean_x.data(), scale.data(), b_c.data_ptr<scalar_t>()};
    const auto sums_of_row = masked_grad                  ? &add_gradient_sums<ReluMask::kFromY, true, scalar_t>
                             : mask == ReluMask::kFromY ? &add_gradient_sums<ReluMask::kFromY, false, scalar_t>
                             : mask == ReluMask::kFromX ? &add_gradient_sums<ReluMask::kFromX, false, scalar_t>
                                                        : &add_gradient_sums<ReluMask::kNone, false, scalar_t>;
    std::vector<double> sums(2 * c, 0.0);  // sum of g, sum of g * (x - mean)
    sum_over_chunks(n, 2 * c, sums.data(), [&](int64_t begin, int64_t end, double* s) {
      for (int64_t i = begin; i < end; ++i)
        sums_of_row(gp + i * c, yp + i * c, xp + i * c, m, affine, c, s, s + c, mp ? mp + i * c : nullptr);
    });
    // With the masked gradient written, the input gradient reads it instead of grad_y and the mask.
    if (masked_grad) gp = mp;
    const auto gradient_of_row = masked_grad || mask == ReluMask::kNone ? &input_gradient_row<ReluMask::kNone, scalar_t>
                                 : mask == ReluMask::kFromY        ? &input_gradient_row<ReluMask::kFromY, scalar_t>
                                                                   : &input_gradient_row<ReluMask::kFromX, scalar_t>;
    // grad_x = w * invstd * (g - mean(g) - (x - mean) * invstd^2 * mean(g * (x - mean))),
    // as a * g + slope * (x - mean) + d per channel.
    std::vector<scalar_t> a(c), slope(c), d(c);
    scalar_t* gw = grad_weight.data_ptr<scalar_t>();
    scalar_t* gb = grad_bias.data_ptr<scalar_t>();
    for (int64_t j = 0; j < c; ++j) {
      const double invstd = 1.0 / std::sqrt(v[j] + eps), wi = double(w[j]) * invstd;
      a[j] = scalar_t(wi), slope[j] = scalar_t(-wi * invstd * invstd * sums[c + j] / double(n));
      d[j] = scalar_t(-wi * sums[j] / double(n));
      gw[j] = scalar_t(sums[c + j] * invstd), gb[j] = scalar_t(sums[j]);
    }
    scalar_t* gx = grad_x.data_ptr<scalar_t>();
    at::parallel_for(0, n, kChunkRows, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const int64_t e = i * c;
        gradient_of_row(gp + e, yp + e, xp + e, a.data(), slope.data(), affine, d.data(), c, gx + e);
      }
    });
  });
  return {grad_x, grad_weight, grad_bias, masked};
}

}  // namespace

TORCH_LIBRARY_IMPL(pointengine, CPU, m) {
  m.impl("batch_norm_train", &batch_norm_train_cpu);
  m.impl("batch_norm_train_backward", &batch_norm_train_backward_cpu);
}

}  // namespace pointengine
