// The voxel of every point, in one pass: (batch, q(x / sx), q(y / sy), q(z / sz)) as int32 rows, q
// floor, or round (halves to even) minus its minimum over the points of the same batch index
// (SPVNAS's round-then-shift). The quotients are taken in float64, as a Python-float reference
// would; their extremes come back beside the rows so that the caller can refuse coordinates
// outside the packed-key range with a message naming the axis (a value past int32 is clamped in
// the rows, never cast out of range). Minima and maxima do not depend on the order of the
// points, so the result is the same for any thread count.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <mutex>
#include <vector>

#include "../common/checks.h"

namespace pointengine {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr int64_t kGrain = 16384;

// floor and round (halves to even) without a call into libm, which the baseline x86-64 (no roundsd)
// makes of std::floor and std::nearbyint, at 3x their speed. Exact below 2^52 in magnitude, where
// doubles still have a fractional bit; larger values, integers already, pass through.
double floor_of(double q) {
  if (!(std::fabs(q) < 0x1p52)) return q;
  const double t = double(int64_t(q));  // toward zero
  return t > q ? t - 1 : t;
}

double round_half_even(double q) {
  if (!(std::fabs(q) < 0x1p52)) return q;
  // Adding 2^52 leaves no fractional bits: the addition rounds q as the current mode does, to nearest even.
  return q >= 0 ? (q + 0x1p52) - 0x1p52 : (q - 0x1p52) + 0x1p52;
}

template <typename scalar_t>
struct Quotients {
  const scalar_t* points;
  int64_t row_stride, col_stride;
  double size[3];
  bool round;

  double operator()(int64_t i, int d) const {
    const double q = double(points[i * row_stride + d * col_stride]) / size[d];
    return round ? round_half_even(q) : floor_of(q);
  }
};

// The minimum of each axis over the points of each batch index ([n_batches][3], +inf where none).
template <typename scalar_t>
std::vector<double> batch_minima(const Quotients<scalar_t>& quotient, const int32_t* batch, int64_t n,
                                 int64_t n_batches) {
  std::vector<double> lowest(n_batches * 3, kInf);
  std::mutex merge;
  at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) {
    std::vector<double> local(n_batches * 3, kInf);
    for (int64_t i = begin; i < end; ++i)
      for (int d = 0; d < 3; ++d) local[batch[i] * 3 + d] = std::min(local[batch[i] * 3 + d], quotient(i, d));
    std::lock_guard<std::mutex> lock(merge);
    for (size_t j = 0; j < local.size(); ++j) lowest[j] = std::min(lowest[j], local[j]);
  });
  return lowest;
}

int32_t clamped(double v) {
  return int32_t(std::clamp(v, double(std::numeric_limits<int32_t>::min()), double(std::numeric_limits<int32_t>::max())));
}

template <typename scalar_t>
void voxel_rows(const Quotients<scalar_t>& quotient, const int32_t* batch, int64_t n, int64_t n_batches,
                int32_t* coords, double* bounds) {
  const std::vector<double> lowest =
      quotient.round ? batch_minima(quotient, batch, n, n_batches) : std::vector<double>();
  for (int d = 0; d < 3; ++d) bounds[d] = kInf, bounds[3 + d] = -kInf;
  std::mutex merge;
  at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) {
    double lo[3] = {kInf, kInf, kInf}, hi[3] = {-kInf, -kInf, -kInf};
    for (int64_t i = begin; i < end; ++i) {
      coords[4 * i] = batch[i];
      for (int d = 0; d < 3; ++d) {
        const double v = quotient.round ? quotient(i, d) - lowest[batch[i] * 3 + d] : quotient(i, d);
        lo[d] = std::min(lo[d], v), hi[d] = std::max(hi[d], v);
        coords[4 * i + 1 + d] = clamped(v);
      }
    }
    std::lock_guard<std::mutex> lock(merge);
    for (int d = 0; d < 3; ++d) bounds[d] = std::min(bounds[d], lo[d]), bounds[3 + d] = std::max(bounds[3 + d], hi[d]);
  });
}

std::tuple<at::Tensor, at::Tensor> voxel_coords_cpu(const at::Tensor& points, at::ArrayRef<double> voxel_size,
                                                    const at::Tensor& batch_in, int64_t n_batches, bool round_shift) {
  const char* op = "voxel_coords";
  TORCH_CHECK(points.device().is_cpu(), op, ": points must be a CPU tensor, got one on ", points.device());
  TORCH_CHECK(at::isFloatingType(points.scalar_type()), op, ": points must be floating point, got ",
              dtype_name(points.scalar_type()));
  TORCH_CHECK(points.dim() == 2 && points.size(1) >= 3, op, ": points must have shape [N, >= 3], got ", points.sizes());
  TORCH_CHECK(voxel_size.size() == 3, op, ": voxel_size must have 3 entries, got ", voxel_size.size());
  for (double s : voxel_size) TORCH_CHECK(std::isfinite(s) && s > 0, op, ": voxel_size must be finite and > 0, got ", s);
  check_kernel_tensor(batch_in, op, "batch", at::kInt);
  TORCH_CHECK(batch_in.dim() == 1 && batch_in.size(0) == points.size(0), op, ": batch must have shape [",
              points.size(0), "], got ", batch_in.sizes());
  TORCH_CHECK(n_batches >= 1 && n_batches <= 65535, op, ": n_batches must be in [1, 65535], got ", n_batches);
  const at::Tensor batch = batch_in.contiguous();
  const int64_t n = points.size(0);
  const int32_t* b = batch.data_ptr<int32_t>();
  for (int64_t i = 0; i < n; ++i)
    TORCH_CHECK(b[i] >= 0 && b[i] < n_batches, op, ": batch entries must be in [0, ", n_batches, "), got ", b[i]);
  at::Tensor coords = at::empty({n, 4}, batch.options());
  at::Tensor bounds = at::empty({2, 3}, points.options().dtype(at::kDouble));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, points.scalar_type(), "voxel_coords", [&] {
    const Quotients<scalar_t> quotient{points.data_ptr<scalar_t>(), points.stride(0), points.stride(1),
                                       {voxel_size[0], voxel_size[1], voxel_size[2]}, round_shift};
    voxel_rows(quotient, b, n, n_batches, coords.data_ptr<int32_t>(), bounds.data_ptr<double>());
  });
  return {coords, bounds};
}

}  // namespace

TORCH_LIBRARY_IMPL(pointengine, CPU, m) { m.impl("voxel_coords", &voxel_coords_cpu); }

}  // namespace pointengine
