// The bfloat16 convolution's arithmetic, which its portable and AVX512_BF16 paths follow: each output element is a
// float32 accumulator updated once per (offset, pair of input channels), in ascending order, as
// vdpbf16ps (AVX512_BF16) updates it; and the entry points of the AVX512_BF16 tile kernel
// (conv_tile_avx512_bf16.cpp). bfloat16 values are their uint16_t bit patterns. Plain C++, no ATen.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#include "conv_tile.h"

namespace pointengine {

// Intel's definition of VDPBF16PS (SDM vol. 2, "Dot Product of BF16 Pairs Accumulated into Packed
// Single Precision"): per float32 lane, acc += hi(x) * hi(w), then acc += lo(x) * lo(w), where lo is
// the pair's first (even) channel; each step is a fused multiply-add rounded to nearest even;
// denormal inputs are read as zero and denormal results are flushed to zero, whatever MXCSR says.
// A bfloat16 product is exact in float32 only while it is normal, so fmaf (one rounding), not
// x * w + acc, gives the instruction's bits, denormals included: nothing differs between the paths
// but NaN payloads (the instruction ranks which NaN propagates; NaN stays NaN either way). Checked
// on a Xeon (family 6 model 207) on 12.8 M random lanes (normal, full-range, cancelling and
// underflowing values), and by tests/test_conv_bf16.py through the op.
inline float flush_denormal(float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, 4);
  if ((bits & 0x7f800000u) == 0) bits &= 0x80000000u;  // zero exponent: keep only the sign
  std::memcpy(&v, &bits, 4);
  return v;
}

inline float bf16_value(uint16_t b) {
  const uint32_t bits = uint32_t(b) << 16;
  float v;
  std::memcpy(&v, &bits, 4);
  return flush_denormal(v);
}

// One vdpbf16ps lane; x_hi and w_hi are 0 for the zero channel that pads an odd C_in.
inline float dot_pair(float acc, float x_lo, float x_hi, float w_lo, float w_hi) {
  acc = flush_denormal(std::fmaf(x_hi, w_hi, acc));
  return flush_denormal(std::fmaf(x_lo, w_lo, acc));
}

// Whether this CPU (and its OS) runs AVX-512F with AVX512_BF16.
bool cpu_has_avx512_bf16();

// The weight [K, C_in, C_out] in pairs of input channels (an odd C_in padded with a zero channel) and
// column panels of at most 64 (C_out padded with zeros to a multiple of 16), each panel
// [K][ceil(C_in / 2)][width][2]: one vdpbf16ps multiplies 16 columns by a pair of channels.
int64_t packed_weight_numel_bf16(int64_t kvol, int64_t c_in, int64_t c_out);
void pack_weight_bf16(const uint16_t* weight, int64_t kvol, int64_t c_in, int64_t c_out, uint16_t* packed);

// acc[r, :] = dot_pair(acc[r, :], ...) over offsets k (ascending), pairs j of k, channel pairs
// (ascending) of feats[inputs[j]] and weight[k] for r = rows[j]; acc rows have C_out columns at a
// stride of acc_stride floats (the last vector of a row is masked).
void conv_tile_avx512_bf16(const uint16_t* feats, const uint16_t* packed, int64_t kvol, int64_t c_in, int64_t c_out,
                           TilePairs pairs, float* acc, int64_t acc_stride);

// The same sums with AMX tiles (conv_tile_amx_bf16.cpp; TDPBF16PS rounds its own way, so not the same
// bits), on its own weight layout: pairs of input channels padded with zero pairs to a multiple of 16,
// columns padded to a multiple of 16: [K][pairs][c_pad][2].
bool cpu_has_amx_bf16();
int64_t packed_weight_numel_amx_bf16(int64_t kvol, int64_t c_in, int64_t c_out);
void pack_weight_amx_bf16(const uint16_t* weight, int64_t kvol, int64_t c_in, int64_t c_out, uint16_t* packed);
void conv_tile_amx_bf16(const uint16_t* feats, const uint16_t* packed, int64_t kvol, int64_t c_in, int64_t c_out,
                        TilePairs pairs, float* acc, int64_t acc_stride);

}  // namespace pointengine
