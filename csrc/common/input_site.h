// The input site that an output site reads through one kernel offset, for each kind of convolution:
//   regular    (conv, stride s):          input site = o * s + off
//   transposed (generative or not):       input site = (o - off) / s, where that divides exactly
// Sites are computed in 64 bits: |o| < 2^31, |off| < 2^31 and s <= kMaxGeometry cannot overflow.
#pragma once
#include <cstdint>

#include "keys.h"

namespace pointengine {

// a / s rounded down (s >= 1), and whether it divides exactly.
PE_HD inline int64_t floor_div_exact(int64_t a, int64_t s, bool* exact) {
  int64_t q = a / s, r = a % s;
  if (r < 0) --q, r += s;
  *exact = (r == 0);
  return q;
}

// The key of the input site that output row o = (batch, x, y, z) reads through offset off (x, y, z);
// false when there is none (outside the coordinate range, or not on the transposed grid).
PE_HD inline bool input_site_key(const int32_t* o, const int32_t* off, const int64_t* stride, bool transposed,
                                 int64_t* key) {
  int64_t site[3];
  for (int d = 0; d < 3; ++d) {
    if (transposed) {
      bool exact;
      site[d] = floor_div_exact(int64_t(o[1 + d]) - off[d], stride[d], &exact);
      if (!exact) return false;
    } else {
      site[d] = int64_t(o[1 + d]) * stride[d] + off[d];
    }
    if (!axis_in_range(site[d])) return false;
  }
  *key = pack_key(o[0], int32_t(site[0]), int32_t(site[1]), int32_t(site[2]));
  return true;
}

}  // namespace pointengine
