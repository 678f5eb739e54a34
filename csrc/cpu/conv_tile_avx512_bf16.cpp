// AVX512_BF16 tile kernel of the bfloat16 convolution: conv_tile_avx512.cpp's register blocking with
// vdpbf16ps, which multiplies 16 columns by a pair of input channels per instruction (the pair's two
// feature values broadcast as one 32-bit word). Compiled with function attributes and called only
// when cpu_has_avx512_bf16(). Each accumulator element takes its pairs in the order of the portable
// path (offset, then channel pair), so the two paths give the same bits (conv_tile_bf16.h).
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "block_table.h"
#include "conv_tile_bf16.h"

#define PE_AVX512_BF16 __attribute__((target("avx512f,avx512bf16")))

namespace pointengine {
namespace {

constexpr int kPanelVectors = 4;  // 64 columns per panel
constexpr int kMaxBlockRows = 12;

// 32 zmm registers: MR x NV accumulators, NV weight vectors and one broadcast.
constexpr int block_rows(int vectors) { return vectors == 4 ? 6 : vectors == 3 ? 8 : 12; }

// Channel pair p of every row of the block into its accumulators; `last_odd`: p holds only the last
// channel of an odd C_in (the word's high half, the padding channel, is zero).
template <int MR, int NV>
PE_AVX512_BF16 __attribute__((always_inline)) inline void dot_step(__m512 (&c)[MR][NV], const uint16_t* const* x,
                                                                   const uint16_t* w, int64_t p, bool last_odd) {
  __m512bh wv[NV];
#pragma GCC unroll 4
  for (int v = 0; v < NV; ++v) wv[v] = (__m512bh)_mm512_loadu_si512(w + (p * NV + v) * 32);
#pragma GCC unroll 12
  for (int r = 0; r < MR; ++r) {
    uint32_t word = x[r][2 * p];
    if (!last_odd) std::memcpy(&word, x[r] + 2 * p, 4);
    const __m512bh xb = (__m512bh)_mm512_set1_epi32(int(word));
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) c[r][v] = _mm512_dpbf16_ps(c[r][v], xb, wv[v]);
  }
}

template <int MR, int NV>
PE_AVX512_BF16 void dot_block(const uint16_t* const* x, const uint16_t* w, int64_t c_in, float* const* acc,
                              const __mmask16* masks) {
  __m512 c[MR][NV];
#pragma GCC unroll 12
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) c[r][v] = _mm512_maskz_loadu_ps(masks[v], acc[r] + 16 * v);
  const int64_t whole_pairs = c_in / 2;
  for (int64_t p = 0; p < whole_pairs; ++p) dot_step<MR, NV>(c, x, w, p, false);
  if (c_in % 2) dot_step<MR, NV>(c, x, w, whole_pairs, true);
#pragma GCC unroll 12
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) _mm512_mask_storeu_ps(acc[r] + 16 * v, masks[v], c[r][v]);
}

using BlockFn = void (*)(const uint16_t* const*, const uint16_t*, int64_t, float* const*, const __mmask16*);

const auto kBlocks = block_table<BlockFn, kMaxBlockRows, block_rows(1), block_rows(2), block_rows(3), block_rows(4)>(
    [](auto m, auto nv) -> BlockFn { return &dot_block<decltype(m)::value, decltype(nv)::value>; });

int64_t padded(int64_t c_out) { return (c_out + 15) / 16 * 16; }

int64_t channel_pairs(int64_t c_in) { return (c_in + 1) / 2; }

int panel_vectors(int64_t c_out_pad, int64_t col) {
  return int(std::min<int64_t>(kPanelVectors, (c_out_pad - col) / 16));
}

}  // namespace

bool cpu_has_avx512_bf16() { return cpu_has_avx512f() && __builtin_cpu_supports("avx512bf16"); }

int64_t packed_weight_numel_bf16(int64_t kvol, int64_t c_in, int64_t c_out) {
  return kvol * channel_pairs(c_in) * padded(c_out) * 2;
}

void pack_weight_bf16(const uint16_t* weight, int64_t kvol, int64_t c_in, int64_t c_out, uint16_t* packed) {
  const int64_t c_out_pad = padded(c_out), n_pairs = channel_pairs(c_in);
  for (int64_t col = 0; col < c_out_pad; col += 16 * panel_vectors(c_out_pad, col)) {
    const int64_t width = 16 * panel_vectors(c_out_pad, col);
    uint16_t* panel = packed + kvol * n_pairs * col * 2;
    for (int64_t k = 0; k < kvol; ++k)
      for (int64_t p = 0; p < n_pairs; ++p)
        for (int64_t j = 0; j < width; ++j)
          for (int64_t half = 0; half < 2; ++half) {
            const int64_t ci = 2 * p + half, co = col + j;
            panel[((k * n_pairs + p) * width + j) * 2 + half] =
                ci < c_in && co < c_out ? weight[(k * c_in + ci) * c_out + co] : uint16_t(0);
          }
  }
}

void conv_tile_avx512_bf16(const uint16_t* feats, const uint16_t* packed, int64_t kvol, int64_t c_in, int64_t c_out,
                           TilePairs pairs, float* acc, int64_t acc_stride) {
  const int64_t c_out_pad = padded(c_out), n_pairs = channel_pairs(c_in);
  const uint16_t* x[kMaxBlockRows];
  float* a[kMaxBlockRows];
  __mmask16 masks[kPanelVectors];
  for (int64_t col = 0; col < c_out_pad; col += 16 * panel_vectors(c_out_pad, col)) {
    const int nv = panel_vectors(c_out_pad, col), mr = block_rows(nv);
    for (int v = 0; v < nv; ++v) {
      const int64_t live = std::clamp<int64_t>(c_out - col - 16 * v, 0, 16);
      masks[v] = __mmask16((uint32_t(1) << live) - 1);
    }
    const uint16_t* panel = packed + kvol * n_pairs * col * 2;
    for (int64_t k = 0; k < kvol; ++k) {
      const int32_t* rows = pairs.rows + pairs.start[k];
      const int32_t* inputs = pairs.inputs + pairs.start[k];
      const uint16_t* w = panel + k * n_pairs * 32 * nv;
      for (int64_t g = 0; g < pairs.count[k]; g += mr) {
        const int m = int(std::min<int64_t>(mr, pairs.count[k] - g));
        for (int r = 0; r < m; ++r) {
          x[r] = feats + int64_t(inputs[g + r]) * c_in;
          a[r] = acc + int64_t(rows[g + r]) * acc_stride + col;
        }
        prefetch_block_inputs(feats, c_in * 2, inputs, g, mr, pairs.count[k]);
        kBlocks[nv][m - 1](x, w, c_in, a, masks);
      }
    }
  }
}

}  // namespace pointengine
