// AVX-512 float kernel of the convolution's weight gradient: conv_weight_grad_avx2.cpp's blocking on
// 16-wide vectors, compiled for AVX-512F with function attributes and called only when
// cpu_has_avx512f(). Each accumulator element sums the pairs in ascending order with one fused
// multiply-add each, as on the AVX2 path: the two give the same bits.
#include <immintrin.h>

#include <algorithm>

#include "block_table.h"
#include "conv_weight_grad_cpu.h"

#define PE_AVX512 __attribute__((target("avx512f")))

namespace pointengine {
namespace {

static_assert(kGradPanel == 32, "the block table below covers 1 or 2 vectors of 16 columns");
constexpr int kMaxBlockRows = 12;
constexpr int64_t kChunkPairs = 128;

// 32 zmm registers: 12 x NV accumulators, NV grad_out vectors and one broadcast (27 at most).
constexpr int block_rows(int /*vectors*/) { return 12; }

template <int MR, int NV>
PE_AVX512 void fma_block(const float* const* x, int64_t ci, const float* const* g, int64_t n, float* acc,
                         int64_t width, const __mmask16* masks) {
  __m512 c[MR][NV];
#pragma GCC unroll 12
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) c[r][v] = _mm512_maskz_loadu_ps(masks[v], acc + r * width + 16 * v);
  for (int64_t p = 0; p < n; ++p) {
    __m512 gv[NV];
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) gv[v] = _mm512_maskz_loadu_ps(masks[v], g[p] + 16 * v);
    const float* xp = x[p] + ci;
#pragma GCC unroll 12
    for (int r = 0; r < MR; ++r) {
      const __m512 xb = _mm512_set1_ps(xp[r]);
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) c[r][v] = _mm512_fmadd_ps(xb, gv[v], c[r][v]);
    }
  }
#pragma GCC unroll 12
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) _mm512_mask_storeu_ps(acc + r * width + 16 * v, masks[v], c[r][v]);
}

using BlockFn = void (*)(const float* const*, int64_t, const float* const*, int64_t, float*, int64_t,
                         const __mmask16*);

const auto kBlocks = block_table<BlockFn, kMaxBlockRows, block_rows(1), block_rows(2)>(
    [](auto m, auto nv) -> BlockFn { return &fma_block<decltype(m)::value, decltype(nv)::value>; });

}  // namespace

void weight_grad_panel_avx512(const float* feats, int64_t c_in, const float* grad, int64_t grad_stride,
                              const int32_t* in_rows, const int32_t* out_rows, int64_t n_pairs, int64_t col,
                              int64_t width, float* acc) {
  const int nv = int((width + 15) / 16), mr = block_rows(nv);
  __mmask16 masks[2];
  for (int v = 0; v < nv; ++v) masks[v] = __mmask16((uint32_t(1) << std::min<int64_t>(16, width - 16 * v)) - 1);
  const float* x[kChunkPairs];
  const float* g[kChunkPairs];
  for (int64_t p0 = 0; p0 < n_pairs; p0 += kChunkPairs) {
    const int64_t n = std::min(kChunkPairs, n_pairs - p0);
    for (int64_t p = 0; p < n; ++p) {
      x[p] = feats + int64_t(in_rows[p0 + p]) * c_in;
      g[p] = grad + int64_t(out_rows[p0 + p]) * grad_stride + col;
    }
    for (int64_t ci = 0; ci < c_in; ci += mr) {
      const int m = int(std::min<int64_t>(mr, c_in - ci));
      kBlocks[nv][m - 1](x, ci, g, n, acc + ci * width, width, masks);
    }
  }
}

}  // namespace pointengine
