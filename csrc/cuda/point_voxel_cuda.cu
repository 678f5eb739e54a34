// The point-voxel ops on the GPU, in float16, bfloat16, float32 and float64 (sums in float32 for the
// half types): the trilinear table (common/trilinear_corners.h), the gather that reads it, and the
// two sums onto voxels, point_scatter_mean and the gather's adjoint.
// The sums onto voxels are output-stationary, as on the CPU: the entries are sorted by voxel with a
// stable sort (point order, then corner order) and each voxel sums its own, in that order: no
// atomics, the same bits on every run.
// No host synchronisation checks the contents of the inputs: a point row that is not valid gets
// index -1 and weight 0 (as the CPU fills it, before it raises), and an index past the voxels reads
// or adds nothing. The Python layer validates points and builds the indices.
#include <ATen/ATen.h>
#include <ATen/AccumulateType.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include "../common/trilinear_corners.h"
#include "cuda_utils.cuh"

namespace pointengine {
namespace {

#define PE_DISPATCH_CUDA_FLOATS(type, name, ...) \
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, type, name, __VA_ARGS__)

template <typename scalar_t>
__global__ void trilinear_table_kernel(const scalar_t* coords, int64_t n, Sites sites, Stride3 stride, bool nearest,
                                       int32_t* idx, scalar_t* weights) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) point_corners(coords + 4 * i, stride.v, sites, nearest, idx + kCorners * i, weights + kCorners * i);
}

std::tuple<at::Tensor, at::Tensor> trilinear_table_cuda(const at::Tensor& keys_in, const at::Tensor& vals_in,
                                                        const at::Tensor& corners_in, const at::Tensor& coords_in,
                                                        at::IntArrayRef stride, bool nearest) {
  const char* op = "trilinear_table";
  check_table(keys_in, vals_in, op, at::kCUDA);
  check_matrix(corners_in, op, "corners", at::kInt, kCorners, "[M, 8]", at::kCUDA);
  check_cuda_float_matrix(coords_in, op, "coords", "[N, 4] (batch, x, y, z)");
  TORCH_CHECK(coords_in.size(1) == 4, op, ": coords must have shape [N, 4] (batch, x, y, z), got ", coords_in.sizes());
  check_strides(stride, op);
  const c10::cuda::CUDAGuard guard(coords_in.device());
  const at::Tensor keys = keys_in.contiguous(), vals = vals_in.contiguous();
  const at::Tensor coords = coords_in.contiguous(), corners = corners_in.contiguous();
  const int64_t n = coords.size(0);
  const Sites sites{{keys.data_ptr<int64_t>(), vals.data_ptr<int32_t>(), uint64_t(keys.size(0) - 1)},
                    corners.data_ptr<int32_t>(), corners.size(0)};
  at::Tensor idx = at::empty({n, kCorners}, coords.options().dtype(at::kInt));
  at::Tensor weights = at::empty({n, kCorners}, coords.options());
  if (n == 0) return {idx, weights};
  PE_DISPATCH_CUDA_FLOATS(coords.scalar_type(), "trilinear_table_cuda", [&] {
    trilinear_table_kernel<scalar_t><<<blocks_for(n), kThreads, 0, current_stream()>>>(
        coords.data_ptr<scalar_t>(), n, sites, Stride3{{stride[0], stride[1], stride[2]}}, nearest,
        idx.data_ptr<int32_t>(), weights.data_ptr<scalar_t>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {idx, weights};
}

// out[i, ch] = base[i, ch] (or 0) + sum over corners j in order of weights[i, j] * feats[index[i, j], ch].
template <typename scalar_t>
__global__ void trilinear_gather_kernel(const scalar_t* feats, int64_t n_voxels, const int32_t* idx,
                                        const scalar_t* weights, const scalar_t* base, int64_t n, int64_t c,
                                        scalar_t* out) {
  using acc_t = at::acc_type<scalar_t, true>;
  const int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= n * c) return;
  const int64_t i = e / c, ch = e - i * c;
  acc_t acc = base ? acc_t(base[e]) : acc_t(0);
  for (int j = 0; j < kCorners; ++j) {
    const int32_t v = idx[kCorners * i + j];
    const acc_t w = acc_t(weights[kCorners * i + j]);
    if (v >= 0 && v < n_voxels && w != acc_t(0)) acc += w * acc_t(feats[int64_t(v) * c + ch]);
  }
  out[e] = scalar_t(acc);
}

// out = base (or 0) + the gather; out may be base itself (each element is read before it is written,
// by its own thread).
void gather_into(const at::Tensor& feats_in, const at::Tensor& index_in, const at::Tensor& weights_in,
                 const at::Tensor& base_in, at::Tensor& out, const char* op) {
  check_cuda_float_matrix(feats_in, op, "feats", "[M, C]");
  check_point_corners(index_in, weights_in, index_in.dim() == 2 ? index_in.size(0) : -1, feats_in.scalar_type(), op,
                      at::kCUDA);
  if (base_in.defined()) {
    check_matrix(base_in, op, "base", feats_in.scalar_type(), feats_in.size(1), "[N, C] (C: feats columns)",
                 at::kCUDA);
    TORCH_CHECK(base_in.size(0) == index_in.size(0), op, ": base must have one row per index row (",
                index_in.size(0), "), got ", base_in.sizes());
  }
  const c10::cuda::CUDAGuard guard(feats_in.device());
  const at::Tensor feats = feats_in.contiguous(), index = index_in.contiguous(), weights = weights_in.contiguous();
  const at::Tensor base = base_in.defined() ? base_in.contiguous() : at::Tensor();
  const int64_t n = index.size(0), c = feats.size(1);
  if (n * c == 0) return;
  PE_DISPATCH_CUDA_FLOATS(feats.scalar_type(), "trilinear_gather_cuda", [&] {
    trilinear_gather_kernel<scalar_t><<<blocks_for(n * c), kThreads, 0, current_stream()>>>(
        feats.data_ptr<scalar_t>(), feats.size(0), index.data_ptr<int32_t>(), weights.data_ptr<scalar_t>(),
        base.defined() ? base.data_ptr<scalar_t>() : nullptr, n, c, out.data_ptr<scalar_t>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

at::Tensor trilinear_gather_cuda(const at::Tensor& feats, const at::Tensor& index, const at::Tensor& weights,
                                 const c10::optional<at::Tensor>& base) {
  at::Tensor out = at::empty({index.dim() == 2 ? index.size(0) : 0, feats.dim() == 2 ? feats.size(1) : 0},
                             feats.options());
  gather_into(feats, index, weights, base.value_or(at::Tensor()), out, "trilinear_gather");
  return out;
}

void trilinear_gather_add_cuda(at::Tensor& base, const at::Tensor& feats, const at::Tensor& index,
                               const at::Tensor& weights) {
  TORCH_CHECK(base.is_contiguous(), "trilinear_gather_add_: base must be contiguous (it is written in place)");
  gather_into(feats, index, weights, base, base, "trilinear_gather_add_");
}

// First position in sorted[0, n) holding a value >= v.
__device__ int64_t lower_bound(const int32_t* sorted, int64_t n, int64_t v) {
  int64_t lo = 0, hi = n;
  while (lo < hi) {
    const int64_t mid = (lo + hi) / 2;
    if (sorted[mid] < v) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

// out[v, ch] = sum over the entries e of voxel v, in sorted order, of coef[e] (1 when null) *
// rows[e / entries_per_row, ch]; divided by the entry count (at least 1) when `mean`.
template <typename scalar_t>
__global__ void voxel_sum_kernel(const scalar_t* rows, int64_t c, const int32_t* sorted_voxels, const int64_t* order,
                                 int64_t n_entries, const scalar_t* coef, int64_t entries_per_row, bool mean,
                                 int64_t n_voxels, scalar_t* out) {
  using acc_t = at::acc_type<scalar_t, true>;
  const int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= n_voxels * c) return;
  const int64_t v = e / c, ch = e - v * c;
  const int64_t lo = lower_bound(sorted_voxels, n_entries, v), hi = lower_bound(sorted_voxels, n_entries, v + 1);
  acc_t acc = 0;
  for (int64_t j = lo; j < hi; ++j) {
    const int64_t entry = order[j];
    const acc_t w = coef ? acc_t(coef[entry]) : acc_t(1);
    if (w != acc_t(0)) acc += w * acc_t(rows[(entry / entries_per_row) * c + ch]);
  }
  if (mean) acc /= acc_t(hi > lo ? hi - lo : 1);
  out[e] = scalar_t(acc);
}

// The voxel sums of `rows` [R, C] over the entries voxel_of [R * entries_per_row] (-1: none).
at::Tensor voxel_sums(const at::Tensor& rows, const at::Tensor& voxel_of, const at::Tensor& coef,
                      int64_t entries_per_row, bool mean, int64_t n_voxels) {
  const int64_t c = rows.size(1);
  at::Tensor out = at::empty({n_voxels, c}, rows.options());
  if (n_voxels * c == 0) return out;
  const auto sorted = at::sort(voxel_of.view(-1), /*stable=*/true, /*dim=*/0, /*descending=*/false);
  const at::Tensor sorted_voxels = std::get<0>(sorted), order = std::get<1>(sorted);
  PE_DISPATCH_CUDA_FLOATS(rows.scalar_type(), "voxel_sums_cuda", [&] {
    voxel_sum_kernel<scalar_t><<<blocks_for(n_voxels * c), kThreads, 0, current_stream()>>>(
        rows.data_ptr<scalar_t>(), c, sorted_voxels.data_ptr<int32_t>(), order.data_ptr<int64_t>(),
        sorted_voxels.numel(), coef.defined() ? coef.data_ptr<scalar_t>() : nullptr, entries_per_row, mean,
        n_voxels, out.data_ptr<scalar_t>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

void check_voxel_count(int64_t n_voxels, const char* op) {
  TORCH_CHECK(n_voxels >= 0 && n_voxels <= INT32_MAX, op, ": n_voxels must be in [0, ", INT32_MAX, "], got ",
              n_voxels);
}

at::Tensor point_scatter_mean_cuda(const at::Tensor& feats_in, const at::Tensor& index_in, int64_t n_voxels) {
  const char* op = "point_scatter_mean";
  check_cuda_float_matrix(feats_in, op, "feats", "[N, C]");
  check_kernel_tensor(index_in, op, "index", at::kInt, at::kCUDA);
  TORCH_CHECK(index_in.dim() == 1 && index_in.size(0) == feats_in.size(0), op, ": index must have shape [",
              feats_in.size(0), "] (one entry per feats row), got ", index_in.sizes());
  check_voxel_count(n_voxels, op);
  const c10::cuda::CUDAGuard guard(feats_in.device());
  return voxel_sums(feats_in.contiguous(), index_in.contiguous(), at::Tensor(), 1, /*mean=*/true, n_voxels);
}

at::Tensor trilinear_gather_backward_cuda(const at::Tensor& grad_in, const at::Tensor& index_in,
                                          const at::Tensor& weights_in, int64_t n_voxels) {
  const char* op = "trilinear_gather_backward";
  check_cuda_float_matrix(grad_in, op, "grad_out", "[N, C]");
  check_point_corners(index_in, weights_in, grad_in.size(0), grad_in.scalar_type(), op, at::kCUDA);
  check_voxel_count(n_voxels, op);
  const c10::cuda::CUDAGuard guard(grad_in.device());
  return voxel_sums(grad_in.contiguous(), index_in.contiguous(), weights_in.contiguous(), kCorners, /*mean=*/false,
                    n_voxels);
}

}  // namespace

TORCH_LIBRARY_IMPL(pointengine, CUDA, m) {
  m.impl("trilinear_table", &trilinear_table_cuda);
  m.impl("trilinear_gather", &trilinear_gather_cuda);
  m.impl("trilinear_gather_add_", &trilinear_gather_add_cuda);
  m.impl("trilinear_gather_backward", &trilinear_gather_backward_cuda);
  m.impl("point_scatter_mean", &point_scatter_mean_cuda);
}

}  // namespace pointengine
