// AVX2 + FMA float kernel of the convolution's weight gradient over one offset's pairs, in chunks
// copied in order or read in place (conv_weight_grad_cpu.h), compiled for those instructions with
// function attributes and called only when cpu_has_avx2_fma() (conv_tile.h).
//
// Register blocking: an MR x (8 * NV) block of the gradient (input channels x output columns, at
// most 12 accumulators) held in registers while the chunk's pairs stream past: per pair, NV vectors
// of its grad_out row and MR broadcasts from its feats row.
#include <immintrin.h>

#include <algorithm>

#include "block_table.h"
#include "conv_weight_grad_cpu.h"

#define PE_AVX2 __attribute__((target("avx2,fma")))

namespace pointengine {
namespace {

static_assert(kGradPanel == 32, "the block table below covers 1 to 4 vectors of 8 columns");
constexpr int kMaxBlockRows = 12;

// 12 accumulators for every width: 16 registers hold them, and either the NV grad_out vectors of a
// pair and one broadcast (NV <= 3), or three broadcasts and one vector at a time (NV = 4).
constexpr int block_rows(int vectors) { return 12 / vectors; }

template <int MR, int NV, typename Rows>
PE_AVX2 void fma_block(Rows rows, int64_t n, float* acc, int64_t width) {
  __m256 c[MR][NV];
#pragma GCC unroll 12
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) c[r][v] = _mm256_loadu_ps(acc + r * width + 8 * v);
  for (int64_t p = 0; p < n; ++p) {
    const float* xp = rows.x(p);
    const float* gp = rows.g(p);
    if constexpr (NV < 4) {
      // Holding the MR broadcasts as well spilled accumulators to the stack (6 x 2, 4 x 3): 1.3-2x slower.
      __m256 gv[NV];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) gv[v] = _mm256_loadu_ps(gp + 8 * v);
#pragma GCC unroll 12
      for (int r = 0; r < MR; ++r) {
        const __m256 xb = _mm256_broadcast_ss(xp + r);
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) c[r][v] = _mm256_fmadd_ps(xb, gv[v], c[r][v]);
      }
    } else {
      // 12 accumulators, the 3 broadcasts and 1 vector at a time fill the 16 registers (holding all 4
      // vectors spilled an accumulator).
      __m256 xb[MR];
#pragma GCC unroll 12
      for (int r = 0; r < MR; ++r) xb[r] = _mm256_broadcast_ss(xp + r);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) {
        const __m256 gv = _mm256_loadu_ps(gp + 8 * v);
#pragma GCC unroll 12
        for (int r = 0; r < MR; ++r) c[r][v] = _mm256_fmadd_ps(xb[r], gv, c[r][v]);
      }
    }
  }
#pragma GCC unroll 12
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) _mm256_storeu_ps(acc + r * width + 8 * v, c[r][v]);
}

template <typename Rows>
using BlockFn = void (*)(Rows, int64_t, float*, int64_t);

template <typename Rows>
const auto kBlocks =
    block_table<BlockFn<Rows>, kMaxBlockRows, block_rows(1), block_rows(2), block_rows(3), block_rows(4)>(
        [](auto m, auto nv) -> BlockFn<Rows> { return &fma_block<decltype(m)::value, decltype(nv)::value, Rows>; });

// A mask of the first `count` of 8 lanes (none for count <= 0), for maskload and maskstore.
PE_AVX2 __m256i first_lanes(int64_t count) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(int(count)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// Copies pairs [0, n) as weight_grad_offset_avx2 describes (conv_weight_grad_cpu.h).
PE_AVX2 void pack_chunk(const float* feats, int64_t c_in, const float* grad, int64_t c_out, const int32_t* in_rows,
                        const int32_t* out_rows, int64_t n, int64_t available, float* xs, float* g) {
  const int64_t panels = (c_out + kGradPanel - 1) / kGradPanel, x_stride = grad_packed_row_stride(c_in);
  const __m256i x_tail = first_lanes(c_in % 8);
  for (int64_t p = 0; p < n; ++p) {
    prefetch_pair_rows(feats, c_in, grad, c_out, in_rows, out_rows, p, available);
    const float* x = feats + int64_t(in_rows[p]) * c_in;
    float* xd = xs + p * x_stride;
    int64_t ci = 0;
    for (; ci + 8 <= c_in; ci += 8) _mm256_storeu_ps(xd + ci, _mm256_loadu_ps(x + ci));
    if (ci < c_in) _mm256_maskstore_ps(xd + ci, x_tail, _mm256_maskload_ps(x + ci, x_tail));
    const float* row = grad + int64_t(out_rows[p]) * c_out;
    for (int64_t q = 0; q < panels; ++q)
#pragma GCC unroll 4
      for (int64_t j = 0; j < kGradPanel; j += 8) {
        const int64_t col = q * kGradPanel + j;
        const __m256 v =
            col + 8 <= c_out ? _mm256_loadu_ps(row + col) : _mm256_maskload_ps(row + col, first_lanes(c_out - col));
        _mm256_storeu_ps(g + (q * n + p) * kGradPanel + j, v);
      }
  }
}

}  // namespace

void weight_grad_offset_avx2(const float* feats, int64_t c_in, const float* grad, int64_t c_out,
                             const int32_t* in_rows, const int32_t* out_rows, int64_t n_pairs, bool in_place,
                             float* acc, float* xs, float* g) {
  const auto block = [](int nv, int m, auto rows, int64_t n, float* a, int64_t width) {
    kBlocks<decltype(rows)>[nv][m - 1](rows, n, a, width);
  };
  weight_grad_offset_loop<8>(
      feats, c_in, grad, c_out, in_rows, out_rows, n_pairs, in_place, acc, xs, g,
      [&](int64_t p0, int64_t n) {
        pack_chunk(feats, c_in, grad, c_out, in_rows + p0, out_rows + p0, n, n_pairs - p0, xs, g);
      },
      block, block_rows);
}

}  // namespace pointengine
