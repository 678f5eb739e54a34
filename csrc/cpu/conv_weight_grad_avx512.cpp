// AVX-512 float kernel of the convolution's weight gradient over one offset's pairs, in chunks copied
// in order or read in place (conv_weight_grad_cpu.h): conv_weight_grad_avx2.cpp's blocking on 16-wide
// vectors, compiled for AVX-512F with function attributes and called only when cpu_has_avx512f(). Each
// accumulator element adds the pairs in ascending order with one fused multiply-add each, as on the
// AVX2 path: the two give the same bits.
#include <immintrin.h>

#include <algorithm>

#include "block_table.h"
#include "conv_weight_grad_cpu.h"

#define PE_AVX512 __attribute__((target("avx512f")))

namespace pointengine {
namespace {

static_assert(kGradPanel == 32, "the block table below covers 1 or 2 vectors of 16 columns");
constexpr int kMaxBlockRows = 12;

// 32 zmm registers: 12 x NV accumulators, NV grad_out vectors and one broadcast (27 at most).
constexpr int block_rows(int /*vectors*/) { return 12; }

template <int MR, int NV, typename Rows>
PE_AVX512 void fma_block(Rows rows, int64_t n, float* acc, int64_t width) {
  __m512 c[MR][NV];
#pragma GCC unroll 12
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) c[r][v] = _mm512_loadu_ps(acc + r * width + 16 * v);
  for (int64_t p = 0; p < n; ++p) {
    const float* xp = rows.x(p);
    const float* gp = rows.g(p);
    __m512 gv[NV];
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) gv[v] = _mm512_loadu_ps(gp + 16 * v);
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
    for (int v = 0; v < NV; ++v) _mm512_storeu_ps(acc + r * width + 16 * v, c[r][v]);
}

template <typename Rows>
using BlockFn = void (*)(Rows, int64_t, float*, int64_t);

template <typename Rows>
const auto kBlocks = block_table<BlockFn<Rows>, kMaxBlockRows, block_rows(1), block_rows(2)>(
    [](auto m, auto nv) -> BlockFn<Rows> { return &fma_block<decltype(m)::value, decltype(nv)::value, Rows>; });

// Copies pairs [0, n) as weight_grad_offset_avx512 describes (conv_weight_grad_cpu.h).
PE_AVX512 void pack_chunk(const float* feats, int64_t c_in, const float* grad, int64_t c_out, const int32_t* in_rows,
                          const int32_t* out_rows, int64_t n, int64_t available, float* xs, float* g) {
  const int64_t panels = (c_out + kGradPanel - 1) / kGradPanel, x_stride = grad_packed_row_stride(c_in);
  const auto first = [](int64_t count) { return __mmask16((uint32_t(1) << std::min<int64_t>(count, 16)) - 1); };
  const __mmask16 x_tail = first(c_in % 16);
  for (int64_t p = 0; p < n; ++p) {
    prefetch_pair_rows(feats, c_in, grad, c_out, in_rows, out_rows, p, available);
    const float* x = feats + int64_t(in_rows[p]) * c_in;
    float* xd = xs + p * x_stride;
    int64_t ci = 0;
    for (; ci + 16 <= c_in; ci += 16) _mm512_storeu_ps(xd + ci, _mm512_loadu_ps(x + ci));
    if (ci < c_in) _mm512_mask_storeu_ps(xd + ci, x_tail, _mm512_maskz_loadu_ps(x_tail, x + ci));
    const float* row = grad + int64_t(out_rows[p]) * c_out;
    for (int64_t q = 0; q < panels; ++q)
#pragma GCC unroll 2
      for (int64_t j = 0; j < kGradPanel; j += 16) {
        const int64_t col = q * kGradPanel + j;
        const __m512 v = _mm512_maskz_loadu_ps(first(std::max<int64_t>(c_out - col, 0)), row + col);
        _mm512_storeu_ps(g + (q * n + p) * kGradPanel + j, v);
      }
  }
}

}  // namespace

void weight_grad_offset_avx512(const float* feats, int64_t c_in, const float* grad, int64_t c_out,
                               const int32_t* in_rows, const int32_t* out_rows, int64_t n_pairs, bool in_place,
                               float* acc, float* xs, float* g) {
  const auto block = [](int nv, int m, auto rows, int64_t n, float* a, int64_t width) {
    kBlocks<decltype(rows)>[nv][m - 1](rows, n, a, width);
  };
  weight_grad_offset_loop<16>(
      feats, c_in, grad, c_out, in_rows, out_rows, n_pairs, in_place, acc, xs, g,
      [&](int64_t p0, int64_t n) {
        pack_chunk(feats, c_in, grad, c_out, in_rows + p0, out_rows + p0, n, n_pairs - p0, xs, g);
      },
      block, block_rows);
}

}  // namespace pointengine
