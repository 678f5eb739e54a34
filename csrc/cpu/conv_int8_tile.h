// The pieces of the int8 convolution (conv_int8_cpu.cpp) that the ISA-specific files share: the packed
// weight layout of the vector kernels, their entry points, and the one float32 epilogue every path
// ends in. Plain C++, no ATen.
#pragma once
#include <algorithm>
#include <cstdint>

#include "conv_tile.h"

namespace pointengine {

// The int8 kernels, in the order the op prefers them.
enum class Int8Path { kPortable, kAvx2, kAvx512Vnni, kAmx };

// The vector kernels read the weight [K, C_in, C_out] as [K][groups][c_pad][4] int8: the 4 input
// channels 4g..4g+3 of one output column side by side (what vpmaddubsw and vpdpbusd multiply with 4
// broadcast input bytes), groups >= ceil(C_in / 4) (int8_groups; the AMX kernel takes a multiple of
// 16), C_out padded to c_pad; the padding is zero.
int64_t int8_groups(int64_t c_in);
void pack_weight_int8(const int8_t* weight, int64_t kvol, int64_t c_in, int64_t c_out, int64_t groups,
                      int64_t c_pad, int8_t* packed);

// The bytes of a tile's output rows. The kernels ask for them a share per offset while their first
// panel computes, so that the epilogue's stores find their lines in cache instead of each waiting
// for memory: 6-10% of the op at 64 -> 64 on the real scan, with float32 output.
struct OutputBytes {
  char* begin;
  int64_t size;
};

inline void prefetch_share(OutputBytes out, int64_t k, int64_t kvol) {
  const int64_t share = (out.size / kvol + 64) / 64 * 64;
  for (int64_t b = k * share; b < std::min(out.size, (k + 1) * share); b += 64) __builtin_prefetch(out.begin + b, 1);
}

// acc[r, :c_pad] += sum over offsets k, pairs j of k (r = rows[j]) of
//   sum_g dot(q[inputs[j], 4g..4g+3], packed[k, g, :, 0..3]) - zero_terms[k, :]
// with q rows of groups * 4 bytes at a stride of q_stride, every byte in [0, 127], and acc rows of
// c_pad int32 (c_pad a multiple of 8 for AVX2, 16 for AVX-512). Exact integer sums: any order of
// the terms gives the same result. narrow_weights (AVX2 only): every weight is in [-64, 64], which lets
// it add two groups' products in int16; groups is then even (q rows and weight padded with zeros).
void conv_int8_tile_avx2(const uint8_t* q, int64_t q_stride, const int8_t* packed, const int32_t* zero_terms,
                         int64_t kvol, int64_t groups, int64_t c_pad, TilePairs pairs, int32_t* acc, OutputBytes out,
                         bool narrow_weights);
void conv_int8_tile_avx512_vnni(const uint8_t* q, int64_t q_stride, const int8_t* packed, const int32_t* zero_terms,
                                int64_t kvol, int64_t groups, int64_t c_pad, TilePairs pairs, int32_t* acc,
                                OutputBytes out);

// The same sums with AMX tiles (conv_int8_amx.cpp): groups a multiple of 16, c_pad of 16; q rows may be
// shorter than groups * 4 bytes (the rest counts as zero).
void conv_int8_tile_amx(const uint8_t* q, int64_t q_stride, const int8_t* packed, const int32_t* zero_terms,
                        int64_t kvol, int64_t groups, int64_t c_pad, TilePairs pairs, int32_t* acc, OutputBytes out);

// Whether this CPU (and its OS) runs AVX-512F, BW and VNNI; and AMX-INT8 as well (asking Linux for the
// tile state once).
bool cpu_has_avx512_vnni();
bool cpu_has_amx_int8();

// What turns a tile's int32 sums into output rows (conv_int8_epilogue.cpp).
struct Int8Epilogue {
  const float* scale = nullptr;     // [C_out]: in_scale * weight_scale, rounded to float32
  const float* bias = nullptr;      // [C_out]
  const float* residual = nullptr;  // [N_out, C_out]
  bool relu = false;
  float out_scale = 0.f;  // > 0: requantize to uint8 with out_zero; 0: float32 output
  int32_t out_zero = 0;
};

// Output rows [row_begin, row_begin + n_rows), from acc (row stride acc_stride) into out_float or, when
// requantizing, out_u7 ([N_out, c_out] each), with the vectors of the path that computed the sums: 4
// columns at a time on the portable one (SSE2, every x86-64 CPU), 8 on AVX2, 16 on AVX-512 VNNI and AMX;
// the same bits.
void apply_int8_epilogue(const Int8Epilogue& epilogue, const int32_t* acc, int64_t acc_stride, int64_t row_begin,
                         int64_t n_rows, int64_t c_out, float* out_float, uint8_t* out_u7, Int8Path path);

}  // namespace pointengine
