// AVX2 + FMA float kernel of the convolution's weight gradient, compiled for those instructions with
// function attributes and called only when cpu_has_avx2_fma() (conv_tile.h).
//
// Register blocking: an MR x (8 * NV) block of the gradient (input channels x output columns, at
// most 12 accumulators) held in registers while the pairs stream past: per pair, NV vectors of the
// grad_out row and MR broadcasts of the feats row. Pairs go in chunks whose row pointers are looked
// up once and whose rows stay in cache for every channel block; each accumulator element still sums
// the pairs in ascending order, so the result does not depend on the chunking.
#include <immintrin.h>

#include <algorithm>
#include <utility>

#include "block_table.h"
#include "conv_weight_grad_cpu.h"

#define PE_AVX2 __attribute__((target("avx2,fma")))

namespace pointengine {
namespace {

static_assert(kGradPanel == 32, "the block table below covers 1 to 4 vectors of 8 columns");
constexpr int kMaxBlockRows = 12;
constexpr int64_t kChunkPairs = 128;

// 12 accumulators for 4, 3 or 2 vectors; 6 for 1 (6 broadcasts + 1 vector + 6 = 13 registers).
constexpr int block_rows(int vectors) { return vectors == 1 ? 6 : 12 / vectors; }

template <int MR, int NV>
PE_AVX2 void fma_block(const float* const* x, int64_t ci, const float* const* g, int64_t n, float* acc,
                       int64_t width) {
  __m256 c[MR][NV];
#pragma GCC unroll 12
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) c[r][v] = _mm256_loadu_ps(acc + r * width + 8 * v);
  // The MR broadcasts are held and the grad_out vectors loaded one at a time: 12 accumulators, 3
  // broadcasts and 1 vector fill the 16 registers (holding all 4 vectors spilled an accumulator).
  for (int64_t p = 0; p < n; ++p) {
    __m256 xb[MR];
    const float* xp = x[p] + ci;
#pragma GCC unroll 12
    for (int r = 0; r < MR; ++r) xb[r] = _mm256_broadcast_ss(xp + r);
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      const __m256 gv = _mm256_loadu_ps(g[p] + 8 * v);
#pragma GCC unroll 12
      for (int r = 0; r < MR; ++r) c[r][v] = _mm256_fmadd_ps(xb[r], gv, c[r][v]);
    }
  }
#pragma GCC unroll 12
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) _mm256_storeu_ps(acc + r * width + 8 * v, c[r][v]);
}

using BlockFn = void (*)(const float* const*, int64_t, const float* const*, int64_t, float*, int64_t);

const auto kBlocks = block_table<BlockFn, kMaxBlockRows, block_rows(1), block_rows(2), block_rows(3), block_rows(4)>(
    [](auto m, auto nv) -> BlockFn { return &fma_block<decltype(m)::value, decltype(nv)::value>; });

}  // namespace

void weight_grad_panel_avx2(const float* feats, int64_t c_in, const float* grad, int64_t grad_stride,
                            const int32_t* in_rows, const int32_t* out_rows, int64_t n_pairs, int64_t col,
                            int64_t width, float* acc) {
  const int nv = int(width / 8), mr = block_rows(nv);
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
      kBlocks[nv][m - 1](x, ci, g, n, acc + ci * width, width);
    }
  }
}

}  // namespace pointengine
