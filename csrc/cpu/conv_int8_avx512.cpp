// AVX-512 VNNI kernel of the int8 convolution: vpdpbusd multiplies the 4 input bytes of a group
// (unsigned, broadcast as one int32) with the 4 weight bytes of each of 16 columns (signed) and adds
// the 4 products to the column's int32 sum, one instruction per 16 columns and 4 input channels.
// Compiled for those instructions with function attributes, called only when cpu_has_avx512_vnni().
//
// Register blocking as in conv_tile_avx512.cpp: MR pair rows x NV 16-column vectors of accumulators
// (at most 6 x 4 = 24 of the 32 zmm; the NV weight vectors and a broadcast take the rest), loaded
// from the tile once per offset, updated over every input group, stored back.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "block_table.h"
#include "conv_int8_tile.h"

#define PE_VNNI __attribute__((target("avx2,avx512f,avx512bw,avx512vnni")))

namespace pointengine {
namespace {

constexpr int kPanelVectors = 4;  // 64 columns per panel
constexpr int kMaxBlockRows = 12;

constexpr int block_rows(int vectors) { return vectors == 4 ? 6 : vectors == 3 ? 8 : 12; }

inline int32_t four_bytes(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

template <int MR, int NV>
PE_VNNI void dot_block(const uint8_t* const* x, const int8_t* w, int64_t w_stride, int64_t groups,
                       const int32_t* zero, int32_t* const* acc) {
  __m512i c[MR][NV];
#pragma GCC unroll 12
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v)
      c[r][v] = _mm512_sub_epi32(_mm512_loadu_si512(acc[r] + 16 * v), _mm512_loadu_si512(zero + 16 * v));
  for (int64_t g = 0; g < groups; ++g) {
    __m512i wv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) wv[v] = _mm512_loadu_si512(w + g * w_stride + 64 * v);
#pragma GCC unroll 12
    for (int r = 0; r < MR; ++r) {
      const __m512i xb = _mm512_set1_epi32(four_bytes(x[r] + 4 * g));
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) c[r][v] = _mm512_dpbusd_epi32(c[r][v], xb, wv[v]);
    }
  }
#pragma GCC unroll 12
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) _mm512_storeu_si512(acc[r] + 16 * v, c[r][v]);
}

using BlockFn = void (*)(const uint8_t* const*, const int8_t*, int64_t, int64_t, const int32_t*, int32_t* const*);

const auto kBlocks = block_table<BlockFn, kMaxBlockRows, block_rows(1), block_rows(2), block_rows(3), block_rows(4)>(
    [](auto m, auto nv) -> BlockFn { return &dot_block<decltype(m)::value, decltype(nv)::value>; });

}  // namespace

bool cpu_has_avx512_vnni() {
  return cpu_has_avx512f() && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vnni");
}

void conv_int8_tile_avx512_vnni(const uint8_t* q, int64_t q_stride, const int8_t* packed, const int32_t* zero_terms,
                                int64_t kvol, int64_t groups, int64_t c_pad, TilePairs pairs, int32_t* acc,
                                OutputBytes out) {
  const uint8_t* x[kMaxBlockRows];
  int32_t* a[kMaxBlockRows];
  const int64_t w_stride = c_pad * 4;
  // Panel outermost: one panel of every offset's weight is reused by all the tile's rows.
  for (int64_t col = 0; col < c_pad; col += 16 * kPanelVectors) {
    const int nv = int(std::min<int64_t>(kPanelVectors, (c_pad - col) / 16)), mr = block_rows(nv);
    for (int64_t k = 0; k < kvol; ++k) {
      if (col == 0) prefetch_share(out, k, kvol);
      const int32_t* rows = pairs.rows + pairs.start[k];
      const int32_t* inputs = pairs.inputs + pairs.start[k];
      const int8_t* w = packed + k * groups * w_stride + col * 4;
      for (int64_t p = 0; p < pairs.count[k]; p += mr) {
        const int m = int(std::min<int64_t>(mr, pairs.count[k] - p));
        for (int r = 0; r < m; ++r) {
          x[r] = q + int64_t(inputs[p + r]) * q_stride;
          a[r] = acc + int64_t(rows[p + r]) * c_pad + col;
        }
        prefetch_block_inputs(q, q_stride, inputs, p, mr, pairs.count[k]);
        kBlocks[nv][m - 1](x, w, w_stride, groups, zero_terms + k * c_pad + col, a);
      }
    }
  }
}

}  // namespace pointengine
