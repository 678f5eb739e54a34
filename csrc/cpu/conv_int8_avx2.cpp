// AVX2 kernel of the int8 convolution, compiled for AVX2 with function attributes and called only
// when cpu_has_avx2_fma(). Per 8 columns and 4 input channels: vpmaddubsw multiplies the broadcast
// input bytes (unsigned) with the weight bytes (signed) and adds adjacent pairs into int16, which
// cannot saturate because inputs are at most 127 (2 x 127 x 127 < 2^15); vpmaddwd with ones adds
// the two int16 of each column into int32; vpaddd adds that to the column's sum.
// With narrow weights (all in [-64, 64], what quantize's weight_bits=7 writes) two groups' int16
// pairs are added before vpmaddwd (4 x 127 x 64 < 2^15): 8 input channels per vpmaddwd and vpaddd
// instead of 4, a third fewer multiplies. The same integers, so the same bits as the other paths.
//
// Register blocking as in conv_tile_avx2.cpp: MR pair rows x NV 8-column vectors of accumulators
// (at most 12 of the 16 ymm; the ones, a broadcast and a product take the rest, the weight vectors
// are read as memory operands).
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "block_table.h"
#include "conv_int8_tile.h"

#define PE_AVX2 __attribute__((target("avx2")))

namespace pointengine {
namespace {

constexpr int kPanelVectors = 4;  // 32 columns per panel
constexpr int kMaxBlockRows = 12;

constexpr int block_rows(int vectors) { return vectors == 4 ? 3 : 12 / vectors; }
// With narrow weights a second broadcast and a second product take two more registers: 3 x 4
// accumulators then spill one (still 10 % faster than 2 x 4 at 256 channels, the same at 64).
constexpr int narrow_block_rows(int vectors) { return vectors == 4 ? 3 : 10 / vectors; }

inline int32_t four_bytes(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

template <int MR, int NV, bool Narrow>
PE_AVX2 void dot_block(const uint8_t* const* x, const int8_t* w, int64_t w_stride, int64_t groups,
                       const int32_t* zero, int32_t* const* acc) {
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i c[MR][NV];
#pragma GCC unroll 12
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v)
      c[r][v] = _mm256_sub_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(acc[r] + 8 * v)),
                                 _mm256_loadu_si256(reinterpret_cast<const __m256i*>(zero + 8 * v)));
  if constexpr (Narrow)
    for (int64_t g = 0; g < groups; g += 2) {
      const int8_t* wg = w + g * w_stride;
#pragma GCC unroll 10
      for (int r = 0; r < MR; ++r) {
        const __m256i xb = _mm256_set1_epi32(four_bytes(x[r] + 4 * g));
        const __m256i xb_next = _mm256_set1_epi32(four_bytes(x[r] + 4 * g + 4));
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) {
          const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wg + 32 * v));
          const __m256i wv_next = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wg + w_stride + 32 * v));
          const __m256i pairs16 =
              _mm256_add_epi16(_mm256_maddubs_epi16(xb, wv), _mm256_maddubs_epi16(xb_next, wv_next));
          c[r][v] = _mm256_add_epi32(c[r][v], _mm256_madd_epi16(pairs16, ones));
        }
      }
    }
  else
    for (int64_t g = 0; g < groups; ++g) {
      const int8_t* wg = w + g * w_stride;
#pragma GCC unroll 12
      for (int r = 0; r < MR; ++r) {
        const __m256i xb = _mm256_set1_epi32(four_bytes(x[r] + 4 * g));
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) {
          const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wg + 32 * v));
          const __m256i pairs16 = _mm256_maddubs_epi16(xb, wv);
          c[r][v] = _mm256_add_epi32(c[r][v], _mm256_madd_epi16(pairs16, ones));
        }
      }
    }
#pragma GCC unroll 12
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc[r] + 8 * v), c[r][v]);
}

using BlockFn = void (*)(const uint8_t* const*, const int8_t*, int64_t, int64_t, const int32_t*, int32_t* const*);

const auto kBlocks = block_table<BlockFn, kMaxBlockRows, block_rows(1), block_rows(2), block_rows(3), block_rows(4)>(
    [](auto m, auto nv) -> BlockFn { return &dot_block<decltype(m)::value, decltype(nv)::value, false>; });
const auto kNarrowBlocks = block_table<BlockFn, kMaxBlockRows, narrow_block_rows(1), narrow_block_rows(2),
                                       narrow_block_rows(3), narrow_block_rows(4)>(
    [](auto m, auto nv) -> BlockFn { return &dot_block<decltype(m)::value, decltype(nv)::value, true>; });

}  // namespace

void conv_int8_tile_avx2(const uint8_t* q, int64_t q_stride, const int8_t* packed, const int32_t* zero_terms,
                         int64_t kvol, int64_t groups, int64_t c_pad, TilePairs pairs, int32_t* acc,
                         OutputBytes out, bool narrow_weights) {
  const auto& blocks = narrow_weights ? kNarrowBlocks : kBlocks;
  const uint8_t* x[kMaxBlockRows];
  int32_t* a[kMaxBlockRows];
  const int64_t w_stride = c_pad * 4;
  for (int64_t col = 0; col < c_pad; col += 8 * kPanelVectors) {
    const int nv = int(std::min<int64_t>(kPanelVectors, (c_pad - col) / 8));
    const int mr = narrow_weights ? narrow_block_rows(nv) : block_rows(nv);
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
        blocks[nv][m - 1](x, w, w_stride, groups, zero_terms + k * c_pad + col, a);
      }
    }
  }
}

}  // namespace pointengine
