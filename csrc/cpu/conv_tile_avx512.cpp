// AVX-512 float kernel of the fused convolution: conv_tile_avx2.cpp's register blocking on 16-wide
// vectors, compiled for AVX-512F with function attributes and called only when cpu_has_avx512f().
//
// Each accumulator element sums the same products in the same order (offset, then input channel,
// one fused multiply-add each) as on the AVX2 path, so the two paths give the same bits. The last
// vector of a row is masked, so the accumulators are the output rows themselves, whatever C_out.
#include <immintrin.h>

#include <algorithm>

#include "block_table.h"
#include "conv_tile.h"

#define PE_AVX512 __attribute__((target("avx512f")))

namespace pointengine {
namespace {

constexpr int kPanelVectors = 4;  // 64 columns per panel
constexpr int kMaxBlockRows = 12;

// 32 zmm registers: MR x NV accumulators, NV weight vectors and one broadcast.
constexpr int block_rows(int vectors) { return vectors == 4 ? 6 : vectors == 3 ? 8 : 12; }

template <int MR, int NV>
PE_AVX512 void fma_block(const float* const* x, const float* w, int64_t c_in, float* const* acc,
                         const __mmask16* masks) {
  __m512 c[MR][NV];
#pragma GCC unroll 12
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) c[r][v] = _mm512_maskz_loadu_ps(masks[v], acc[r] + 16 * v);
  for (int64_t ci = 0; ci < c_in; ++ci) {
    __m512 wv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) wv[v] = _mm512_loadu_ps(w + (ci * NV + v) * 16);
#pragma GCC unroll 12
    for (int r = 0; r < MR; ++r) {
      const __m512 xb = _mm512_set1_ps(x[r][ci]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) c[r][v] = _mm512_fmadd_ps(xb, wv[v], c[r][v]);
    }
  }
#pragma GCC unroll 12
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) _mm512_mask_storeu_ps(acc[r] + 16 * v, masks[v], c[r][v]);
}

using BlockFn = void (*)(const float* const*, const float*, int64_t, float* const*, const __mmask16*);

const auto kBlocks = block_table<BlockFn, kMaxBlockRows, block_rows(1), block_rows(2), block_rows(3), block_rows(4)>(
    [](auto m, auto nv) -> BlockFn { return &fma_block<decltype(m)::value, decltype(nv)::value>; });

int64_t padded(int64_t c_out) { return (c_out + 15) / 16 * 16; }

int panel_vectors(int64_t c_out_pad, int64_t col) {
  return int(std::min<int64_t>(kPanelVectors, (c_out_pad - col) / 16));
}

}  // namespace

bool cpu_has_avx512f() { return isa_cap() >= 2 && __builtin_cpu_supports("avx512f"); }

int64_t packed_weight_numel_avx512(int64_t kvol, int64_t c_in, int64_t c_out) { return kvol * c_in * padded(c_out); }

void pack_weight_avx512(const float* weight, int64_t kvol, int64_t c_in, int64_t c_out, float* packed) {
  const int64_t c_out_pad = padded(c_out);
  for (int64_t col = 0; col < c_out_pad; col += 16 * panel_vectors(c_out_pad, col)) {
    const int64_t width = 16 * panel_vectors(c_out_pad, col);
    float* panel = packed + kvol * c_in * col;
    for (int64_t kc = 0; kc < kvol * c_in; ++kc)
      for (int64_t j = 0; j < width; ++j)
        panel[kc * width + j] = col + j < c_out ? weight[kc * c_out + col + j] : 0.f;
  }
}

void conv_tile_avx512(const float* feats, const float* packed, int64_t kvol, int64_t c_in, int64_t c_out,
                      TilePairs pairs, float* acc, int64_t acc_stride) {
  const int64_t c_out_pad = padded(c_out);
  const float* x[kMaxBlockRows];
  float* a[kMaxBlockRows];
  __mmask16 masks[kPanelVectors];
  for (int64_t col = 0; col < c_out_pad; col += 16 * panel_vectors(c_out_pad, col)) {
    const int nv = panel_vectors(c_out_pad, col), mr = block_rows(nv);
    for (int v = 0; v < nv; ++v) {
      const int64_t live = std::clamp<int64_t>(c_out - col - 16 * v, 0, 16);
      masks[v] = __mmask16((uint32_t(1) << live) - 1);
    }
    const float* panel = packed + kvol * c_in * col;
    for (int64_t k = 0; k < kvol; ++k) {
      const int32_t* rows = pairs.rows + pairs.start[k];
      const int32_t* inputs = pairs.inputs + pairs.start[k];
      const float* w = panel + k * c_in * 16 * nv;
      for (int64_t g = 0; g < pairs.count[k]; g += mr) {
        const int m = int(std::min<int64_t>(mr, pairs.count[k] - g));
        for (int r = 0; r < m; ++r) {
          x[r] = feats + int64_t(inputs[g + r]) * c_in;
          a[r] = acc + int64_t(rows[g + r]) * acc_stride + col;
        }
        prefetch_block_inputs(feats, c_in * 4, inputs, g, mr, pairs.count[k]);
        kBlocks[nv][m - 1](x, w, c_in, a, masks);
      }
    }
  }
}

}  // namespace pointengine
