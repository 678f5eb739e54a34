// Trilinear devoxelization table: for each point at p (stride-1 voxel units), q = p / stride per axis
// is read from the 8 voxels floor(q) + (dx, dy, dz), corner j = 4 dx + 2 dy + dz (x slowest, the
// order of kernel_offsets(2)). A voxel's value sits at its integer corner coordinate (SPVNAS and
// TorchSparse's convention), so corner j weighs prod over axes of (f if d = 1 else 1 - f), f = q -
// floor(q). Missing voxels get weight 0 and the others are renormalised to sum to 1; when none is
// present, or the present ones all weigh 0, every weight is 0. `nearest`: corner 0 alone, weight 1.
// Weights are computed in double and rounded once to the points' dtype.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>

#include "../common/hash_table.h"
#include "../common/point_rows.h"

namespace pointengine {
namespace {

constexpr int kCorners = 8;

// Fills one point's 8 (row, weight) entries; false when the row is not a valid point.
template <typename scalar_t>
bool point_corners(const scalar_t* row, const int64_t* stride, const TableView& table, bool nearest, int32_t* idx,
                   scalar_t* weights) {
  std::fill(idx, idx + kCorners, -1);
  std::fill(weights, weights + kCorners, scalar_t(0));
  const int32_t batch = point_batch(row);
  double base[3], frac[3];
  for (int d = 0; d < 3; ++d)
    if (!split_coordinate(row[1 + d], stride[d], &base[d], &frac[d])) return false;
  if (batch < 0) return false;
  double w[kCorners], total = 0;
  for (int j = 0; j < (nearest ? 1 : kCorners); ++j) {
    const int step[3] = {(j >> 2) & 1, (j >> 1) & 1, j & 1};
    double corner[3], weight = 1;
    bool inside = true;
    for (int d = 0; d < 3; ++d) {
      corner[d] = base[d] + step[d];  // exact: compared as a double before any cast to int
      inside &= corner[d] >= kCoordMin && corner[d] <= kCoordMax;
      weight *= step[d] ? frac[d] : 1 - frac[d];
    }
    if (inside) idx[j] = table.find(pack_key(batch, int32_t(corner[0]), int32_t(corner[1]), int32_t(corner[2])));
    w[j] = idx[j] >= 0 ? (nearest ? 1.0 : weight) : 0.0;
    total += w[j];
  }
  if (total > 0)
    for (int j = 0; j < kCorners; ++j) weights[j] = idx[j] >= 0 ? scalar_t(w[j] / total) : scalar_t(0);
  return true;
}

std::tuple<at::Tensor, at::Tensor> trilinear_table_cpu(const at::Tensor& keys, const at::Tensor& vals,
                                                       const at::Tensor& coords_in, at::IntArrayRef stride,
                                                       bool nearest) {
  TORCH_CHECK(coords_in.dim() == 2 && coords_in.size(1) == 4 && at::isFloatingType(coords_in.scalar_type()) &&
                  stride.size() == 3 && stride[0] >= 1 && stride[1] >= 1 && stride[2] >= 1 && keys.dim() == 1 &&
                  keys.scalar_type() == at::kLong && vals.scalar_type() == at::kInt && vals.sizes() == keys.sizes() &&
                  keys.numel() > 0 && (keys.numel() & (keys.numel() - 1)) == 0,
              "trilinear_table: expected floating coords [N, 4], 3 strides >= 1 and a table (keys int64, vals int32) "
              "of one power-of-two length, got coords ", coords_in.scalar_type(), " ", coords_in.sizes(), ", stride ",
              stride, ", keys ", keys.sizes(), ", vals ", vals.sizes());
  const at::Tensor coords = coords_in.contiguous();
  const int64_t n = coords.size(0);
  const int64_t s[3] = {stride[0], stride[1], stride[2]};
  const TableView table{keys.data_ptr<int64_t>(), vals.data_ptr<int32_t>(), uint64_t(keys.size(0) - 1)};
  at::Tensor idx = at::empty({n, kCorners}, coords.options().dtype(at::kInt));
  at::Tensor weights = at::empty({n, kCorners}, coords.options());
  std::atomic<int64_t> bad{0};
  AT_DISPATCH_FLOATING_TYPES(coords.scalar_type(), "trilinear_table_cpu", [&] {
    const scalar_t* c = coords.data_ptr<scalar_t>();
    int32_t* ix = idx.data_ptr<int32_t>();
    scalar_t* w = weights.data_ptr<scalar_t>();
    at::parallel_for(0, n, 2048, [&](int64_t begin, int64_t end) {
      int64_t local = 0;
      for (int64_t i = begin; i < end; ++i)
        local += !point_corners(c + 4 * i, s, table, nearest, ix + kCorners * i, w + kCorners * i);
      bad += local;
    });
  });
  TORCH_CHECK(bad.load() == 0, "trilinear_table: ", bad.load(),
              " coords rows have a non-finite value or a batch that is not an integer in [0, ", kBatchMax, "]");
  return {idx, weights};
}

}  // namespace

TORCH_LIBRARY_IMPL(pointengine, CPU, m) { m.impl("trilinear_table", &trilinear_table_cpu); }

}  // namespace pointengine
