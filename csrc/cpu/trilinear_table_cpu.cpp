// Trilinear devoxelization table: for each point at p (stride-1 voxel units), q = p / stride per axis
// is read from the 8 voxels floor(q) + (dx, dy, dz), corner j = 4 dx + 2 dy + dz (x slowest, the
// order of kernel_offsets(2)). A voxel's value sits at its integer corner coordinate (SPVNAS and
// TorchSparse's convention), so corner j weighs prod over axes of (f if d = 1 else 1 - f), f = q -
// floor(q). Missing voxels get weight 0 and the others are renormalised to sum to 1; when none is
// present, every weight is 0. Index -1: a missing corner, or one of zero weight (never looked up).
// `nearest`: corner 0 alone, weight 1.
// `corners` [M, 8] is the 2x2x2 neighbour table of the sites (row of site r + (dx, dy, dz)), the
// stride-1 map of a 2x2x2 kernel: with it a point hashes its base cell alone, and a level's M sites
// are hashed 8 times once rather than 8 times per point. Weights are computed in double and rounded
// once to the points' dtype.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>

#include "../common/checks.h"
#include "../common/hash_table.h"
#include "../common/point_rows.h"

namespace pointengine {
namespace {

constexpr int kCorners = 8;

struct Sites {
  TableView table;
  const int32_t* corners;  // [M, 8]: row of site r + step_j, or -1
  int64_t n_sites;

  int32_t find(int32_t batch, const double* cell) const {
    for (int d = 0; d < 3; ++d)
      if (!(cell[d] >= kCoordMin && cell[d] <= kCoordMax)) return -1;  // never cast an outside double
    return table.find(pack_key(batch, int32_t(cell[0]), int32_t(cell[1]), int32_t(cell[2])));
  }
};

// Fills one point's 8 (row, weight) entries; false when the row is not a valid point or the table
// names a row past the corner table. The base cell floor(q) is hashed once and its corners read
// from the corner table; only when it is missing are the other corners hashed one by one. A corner
// of zero weight (the point lies on a grid plane) is not looked up and reads as missing: either way
// it adds nothing.
template <typename scalar_t>
bool point_corners(const scalar_t* row, const int64_t* stride, const Sites& sites, bool nearest, int32_t* idx,
                   scalar_t* weights) {
  const int32_t batch = point_batch(row);
  double base[3] = {0, 0, 0}, frac[3] = {0, 0, 0};
  bool valid = batch >= 0;
  for (int d = 0; d < 3; ++d) valid &= split_coordinate(row[1 + d], stride[d], &base[d], &frac[d]);
  const int32_t base_row = valid ? sites.find(batch, base) : -1;
  if (!valid || base_row >= sites.n_sites) {
    std::fill(idx, idx + kCorners, -1);
    std::fill(weights, weights + kCorners, scalar_t(0));
    return false;
  }
  // axis[d][step]: the weight of the low (1 - f) and high (f) corner along axis d.
  const double axis[3][2] = {{1 - frac[0], frac[0]}, {1 - frac[1], frac[1]}, {1 - frac[2], frac[2]}};
  double w[kCorners], total = 0;
  for (int j = 0; j < kCorners; ++j) {
    const int dx = j >> 2 & 1, dy = j >> 1 & 1, dz = j & 1;
    const double weight = nearest ? double(j == 0) : axis[0][dx] * axis[1][dy] * axis[2][dz];
    idx[j] = -1;
    if (weight != 0) {
      const double corner[3] = {base[0] + dx, base[1] + dy, base[2] + dz};  // exact in double
      idx[j] = base_row >= 0 ? sites.corners[int64_t(base_row) * kCorners + j] : sites.find(batch, corner);
    }
    w[j] = idx[j] >= 0 ? weight : 0.0;
    total += w[j];
  }
  for (int j = 0; j < kCorners; ++j) weights[j] = total > 0 ? scalar_t(w[j] / total) : scalar_t(0);
  return true;
}

std::tuple<at::Tensor, at::Tensor> trilinear_table_cpu(const at::Tensor& keys_in, const at::Tensor& vals_in,
                                                       const at::Tensor& corners_in, const at::Tensor& coords_in,
                                                       at::IntArrayRef stride, bool nearest) {
  const char* op = "trilinear_table";
  check_table(keys_in, vals_in, op);
  check_matrix(corners_in, op, "corners", at::kInt, kCorners, "[M, 8]");
  check_float_matrix(coords_in, op, "coords", "[N, 4] (batch, x, y, z)");
  TORCH_CHECK(coords_in.size(1) == 4, op, ": coords must have shape [N, 4] (batch, x, y, z), got ", coords_in.sizes());
  check_strides(stride, op);
  const at::Tensor keys = keys_in.contiguous(), vals = vals_in.contiguous();
  check_empty_slot(keys, op);
  const at::Tensor coords = coords_in.contiguous(), corners = corners_in.contiguous();
  const int64_t n = coords.size(0);
  const int64_t s[3] = {stride[0], stride[1], stride[2]};
  const Sites sites{{keys.data_ptr<int64_t>(), vals.data_ptr<int32_t>(), uint64_t(keys.size(0) - 1)},
                    corners.data_ptr<int32_t>(), corners.size(0)};
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
        local += !point_corners(c + 4 * i, s, sites, nearest, ix + kCorners * i, w + kCorners * i);
      bad += local;
    });
  });
  TORCH_CHECK(bad.load() == 0, "trilinear_table: ", bad.load(), " coords rows have a non-finite value, a batch that ",
              "is not an integer in [0, ", kBatchMax, "], or a site whose table row is past the corners rows");
  return {idx, weights};
}

}  // namespace

TORCH_LIBRARY_IMPL(pointengine, CPU, m) { m.impl("trilinear_table", &trilinear_table_cpu); }

}  // namespace pointengine
