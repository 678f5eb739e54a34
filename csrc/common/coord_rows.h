// Rows of int32 [N, 4] (batch, x, y, z) coordinates: their packed key, the range check, and the
// backstop checks the coordinate ops share.
#pragma once
#include <ATen/ATen.h>

#include "keys.h"

namespace pointengine {

inline int64_t key_of_row(const int32_t* c) { return pack_key(c[0], c[1], c[2], c[3]); }

inline bool row_in_range(const int32_t* c) {
  return c[0] >= 0 && c[0] <= kBatchMax && axis_in_range(c[1]) && axis_in_range(c[2]) && axis_in_range(c[3]);
}

inline void check_rows_of_four(const at::Tensor& coords, const char* op) {
  TORCH_CHECK(coords.dim() == 2 && coords.size(1) == 4, op,
              ": expected coords int32 [N, 4] (batch, x, y, z), got shape ", coords.sizes());
}

inline void check_in_range(int64_t outside, const char* op) {
  TORCH_CHECK(outside == 0, op, ": ", outside, " coords rows lie outside the packable range (batch in [0, ",
              kBatchMax, "], x, y, z in [", kCoordMin, ", ", kCoordMax, "])");
}

}  // namespace pointengine
