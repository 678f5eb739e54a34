// The backstop checks the coordinate ops share on int32 [N, 4] (batch, x, y, z) rows.
#pragma once
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <atomic>

#include "checks.h"
#include "keys.h"

namespace pointengine {

// An int32 [N, 4] tensor whose row count fits int32 row indices.
inline void check_coord_rows(const at::Tensor& coords, const char* op, const char* arg,
                             c10::DeviceType device = at::kCPU) {
  check_matrix(coords, op, arg, at::kInt, 4, "[N, 4] (batch, x, y, z)", device);
  check_row_count(coords.size(0), op, arg);
}

// The argument checks of neighbor_table on either device: a table, out_coords rows, int32 offsets
// [K, 3], strides; a submanifold table reads the table of out_coords itself, with an odd K.
inline void check_neighbor_table_args(const at::Tensor& keys, const at::Tensor& vals, const at::Tensor& out_coords,
                                      const at::Tensor& offsets, at::IntArrayRef stride, bool submanifold,
                                      c10::DeviceType device) {
  constexpr const char* op = "neighbor_table";
  check_table(keys, vals, op, device);
  check_coord_rows(out_coords, op, "out_coords", device);
  check_matrix(offsets, op, "offsets", at::kInt, 3, "[K, 3]", device);
  check_strides(stride, op);
  const int64_t m = out_coords.size(0), kvol = offsets.size(0);
  if (submanifold) {
    TORCH_CHECK(kvol % 2 == 1, "neighbor_table: a submanifold table needs an odd number of offsets, got ", kvol);
    TORCH_CHECK(keys.size(0) == table_capacity(m), "neighbor_table: a submanifold table needs the table of "
                "out_coords itself, of length ", table_capacity(m), " for ", m, " rows, got ", keys.size(0));
  }
}

inline int64_t count_outside(const int32_t* c, int64_t n) {
  std::atomic<int64_t> outside{0};
  at::parallel_for(0, n, 16384, [&](int64_t begin, int64_t end) {
    int64_t local = 0;
    for (int64_t i = begin; i < end; ++i) local += !row_in_range(c + 4 * i);
    outside += local;
  });
  return outside.load();
}

inline void check_in_range(int64_t outside, const char* op, const char* arg) {
  TORCH_CHECK(outside == 0, op, ": ", outside, " rows of ", arg, " lie outside the packable range (batch in [0, ",
              kBatchMax, "], x, y, z in [", kCoordMin, ", ", kCoordMax, "])");
}

}  // namespace pointengine
