// Trilinear devoxelization table, shared by the CPU and CUDA kernels: for each point at p (stride-1
// voxel units), q = p / stride per axis is read from the 8 voxels floor(q) + (dx, dy, dz), corner
// j = 4 dx + 2 dy + dz (x slowest, the order of kernel_offsets(2)). A voxel's value sits at its
// integer corner coordinate (SPVNAS and TorchSparse's convention), so corner j weighs prod over axes
// of (f if d = 1 else 1 - f), f = q - floor(q). Missing voxels get weight 0 and the others are
// renormalised to sum to 1; when none is present, every weight is 0. Index -1: a missing corner, or
// one of zero weight (never looked up). `nearest`: corner 0 alone, weight 1.
// `corners` [M, 8] is the 2x2x2 neighbour table of the sites (row of site r + (dx, dy, dz)), the
// stride-1 map of a 2x2x2 kernel: with it a point hashes its base cell alone, and a level's M sites
// are hashed 8 times once rather than 8 times per point. Weights are computed in double and rounded
// once to the points' dtype.
#pragma once
#include <math.h>

#include <cstdint>

#include "hash_table.h"
#include "keys.h"

namespace pointengine {

constexpr int kCorners = 8;

// False for NaN and infinities (x - x is NaN for both), without <cmath>'s host-only std::isfinite.
PE_HD inline bool is_finite(double x) { return x - x == 0.0; }

// The batch index of a point row, or -1 when it is not an integer in [0, kBatchMax].
template <typename scalar_t>
PE_HD int32_t point_batch(const scalar_t* row) {
  const double b = double(row[0]);
  if (!(b >= 0 && b <= kBatchMax) || b != ::floor(b)) return -1;
  return int32_t(b);
}

// q = coordinate / stride in double (so float32 and float64 points of one value floor alike), split
// into its floor and fractional part. False for NaN or inf; a floor outside the key range is
// returned as a double, never cast, and the caller treats its voxels as missing.
template <typename scalar_t>
PE_HD bool split_coordinate(scalar_t value, int64_t stride, double* floor_part, double* fraction) {
  const double q = double(value) / double(stride);
  if (!is_finite(q)) return false;
  *floor_part = ::floor(q);
  *fraction = q - *floor_part;
  return true;
}

struct Sites {
  TableView table;
  const int32_t* corners;  // [M, 8]: row of site r + step_j, or -1
  int64_t n_sites;

  PE_HD int32_t find(int32_t batch, const double* cell) const {
    for (int d = 0; d < 3; ++d)
      if (!(cell[d] >= kCoordMin && cell[d] <= kCoordMax)) return -1;  // never cast an outside double
    return table.find_bounded(pack_key(batch, int32_t(cell[0]), int32_t(cell[1]), int32_t(cell[2])));
  }
};

// Fills one point's 8 (row, weight) entries; false when the row is not a valid point or the table
// names a row past the corner table. The base cell floor(q) is hashed once and its corners read
// from the corner table; only when it is missing are the other corners hashed one by one. A corner
// of zero weight (the point lies on a grid plane) is not looked up and reads as missing: either way
// it adds nothing.
template <typename scalar_t>
PE_HD bool point_corners(const scalar_t* row, const int64_t* stride, const Sites& sites, bool nearest, int32_t* idx,
                         scalar_t* weights) {
  const int32_t batch = point_batch(row);
  double base[3] = {0, 0, 0}, frac[3] = {0, 0, 0};
  bool valid = batch >= 0;
  for (int d = 0; d < 3; ++d) valid &= split_coordinate(row[1 + d], stride[d], &base[d], &frac[d]);
  const int32_t base_row = valid ? sites.find(batch, base) : -1;
  if (!valid || base_row >= sites.n_sites) {
    for (int j = 0; j < kCorners; ++j) {
      idx[j] = -1;
      weights[j] = scalar_t(0);
    }
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

}  // namespace pointengine
