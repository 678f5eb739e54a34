// The epilogue of conv_int8, shared by every path: int32 sums -> float32, scaled, bias, residual,
// ReLU, and the optional requantization to 7-bit uint8.
//
// Each step is one float32 operation with one rounding, in a fixed order. This file is compiled
// for the baseline x86-64 target, which has no fused multiply-add, so the compiler cannot contract
// float(acc) * scale + bias into one FMA (which would round once instead of twice): whichever kernel
// computed the sums, the outputs are the same bits. The steps run as separate loops over a short
// stretch of a row in a stack buffer, each of which vectorizes.
#include <algorithm>
#include <cstring>

#include "conv_int8_tile.h"
#include "quantize_u7.h"

namespace pointengine {

void apply_int8_epilogue(const Int8Epilogue& e, const int32_t* acc, int64_t acc_stride, int64_t row_begin,
                         int64_t n_rows, int64_t c_out, float* out_float, uint8_t* out_u7) {
  constexpr int64_t kChunk = 256;
  float v[kChunk];
  for (int64_t r = 0; r < n_rows; ++r) {
    const int64_t row = row_begin + r;
    for (int64_t c0 = 0; c0 < c_out; c0 += kChunk) {
      const int64_t n = std::min(kChunk, c_out - c0);
      const int32_t* a = acc + r * acc_stride + c0;
      const float* scale = e.scale + c0;
      for (int64_t c = 0; c < n; ++c) v[c] = float(a[c]) * scale[c];
      if (e.bias)
        for (int64_t c = 0; c < n; ++c) v[c] += e.bias[c0 + c];
      if (e.residual) {
        const float* res = e.residual + row * c_out + c0;
        for (int64_t c = 0; c < n; ++c) v[c] += res[c];
      }
      if (e.relu)
        for (int64_t c = 0; c < n; ++c) v[c] = v[c] < 0.f ? 0.f : v[c];
      if (e.out_scale > 0.f) {
        uint8_t* o = out_u7 + row * c_out + c0;
        for (int64_t c = 0; c < n; ++c) o[c] = quantize_u7_value(v[c] / e.out_scale, e.out_zero);
      } else {
        std::memcpy(out_float + row * c_out + c0, v, n * sizeof(float));
      }
    }
  }
}

}  // namespace pointengine
