// AVX2 + FMA float kernel of the fused convolution, compiled for those instructions with function
// attributes and called only when cpu_has_avx2_fma(), so the extension still runs on other CPUs.
//
// Register blocking: an MR x (8 * NV) block of accumulators (at most 3 x 32: 12 of the 16 ymm
// registers, the rest hold the weight row and the broadcast input) loaded from the tile, updated
// over every input channel, stored back. Each accumulator element sums ci in ascending order
// whatever block or tile its row falls in, so results do not depend on the grouping.
#include <immintrin.h>

#include <cstdlib>
#include <cstring>
#include <utility>

#include "block_table.h"
#include "conv_tile.h"

#define PE_AVX2 __attribute__((target("avx2,fma")))

namespace pointengine {
namespace {

constexpr int kPanelVectors = 4;  // 32 columns per panel: 4 x 3 rows measured fastest (vs 3 x 4, 2 x 6)
constexpr int kMaxBlockRows = 12;

constexpr int block_rows(int vectors) { return vectors == 4 ? 3 : 12 / vectors; }

template <int MR, int NV>
PE_AVX2 void fma_block(const float* const* x, const float* w, int64_t c_in, float* const* acc) {
  __m256 c[MR][NV];
#pragma GCC unroll 12
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) c[r][v] = _mm256_loadu_ps(acc[r] + 8 * v);
  for (int64_t ci = 0; ci < c_in; ++ci) {
    __m256 wv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) wv[v] = _mm256_loadu_ps(w + (ci * NV + v) * 8);
#pragma GCC unroll 12
    for (int r = 0; r < MR; ++r) {
      const __m256 xb = _mm256_broadcast_ss(x[r] + ci);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) c[r][v] = _mm256_fmadd_ps(xb, wv[v], c[r][v]);
    }
  }
#pragma GCC unroll 12
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) _mm256_storeu_ps(acc[r] + 8 * v, c[r][v]);
}

using BlockFn = void (*)(const float* const*, const float*, int64_t, float* const*);

const auto kBlocks = block_table<BlockFn, kMaxBlockRows, block_rows(1), block_rows(2), block_rows(3), block_rows(4)>(
    [](auto m, auto nv) -> BlockFn { return &fma_block<decltype(m)::value, decltype(nv)::value>; });

int64_t padded(int64_t c_out) { return (c_out + 7) / 8 * 8; }

int panel_vectors(int64_t c_out_pad, int64_t col) {
  return int(std::min<int64_t>(kPanelVectors, (c_out_pad - col) / 8));
}

}  // namespace

int isa_cap() {
  static const int cap = [] {
    const char* value = std::getenv("POINTENGINE_CPU_PATH_MAX");
    if (value == nullptr) return 3;
    if (std::strcmp(value, "portable") == 0) return 0;
    if (std::strcmp(value, "avx2") == 0) return 1;
    return std::strcmp(value, "avx512") == 0 ? 2 : 3;
  }();
  return cap;
}

bool cpu_has_avx2_fma() { return isa_cap() >= 1 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }

// Rows ahead whose entries are asked for: without, half the compaction's time went to waiting for the
// table's lines (perf, real scan); 8 rows did better than 16.
constexpr int64_t kPrefetchRows = 8;

// Per row: the sign bits of its entries (-1 = absent) as one mask, then one step per present
// entry; scanning entry by entry with a branch each costs twice as much on a real scan.
PE_AVX2 bool compact_tile_avx2(const int32_t* nbr, int64_t kvol, int64_t n_in, int64_t row_begin, int64_t n_rows,
                               TilePairs pairs) {
  bool valid = true;
  std::fill(pairs.count, pairs.count + kvol, 0);
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  for (int64_t r = 0; r < n_rows; ++r) {
    const int32_t* t = nbr + (row_begin + r) * kvol;
    if (r + kPrefetchRows < n_rows) {
      const char* ahead = reinterpret_cast<const char*>(t + kPrefetchRows * kvol);
      for (int64_t b = 0; b < kvol * 4; b += 64) __builtin_prefetch(ahead + b);
    }
    for (int64_t k0 = 0; k0 < kvol; k0 += 64) {
      const int64_t k_end = std::min<int64_t>(kvol, k0 + 64);
      uint64_t present = 0;
      for (int64_t k = k0; k < k_end; k += 8) {
        // The last group of a row may be short: masked lanes are neither read nor counted.
        const __m256i live = _mm256_cmpgt_epi32(_mm256_set1_epi32(int(std::min<int64_t>(8, k_end - k))), lanes);
        const __m256i v = _mm256_maskload_epi32(t + k, live);
        const __m256i hit = _mm256_andnot_si256(_mm256_srai_epi32(v, 31), live);
        present |= uint64_t(uint32_t(_mm256_movemask_ps(_mm256_castsi256_ps(hit)))) << (k - k0);
      }
      while (present) {
        const int64_t k = k0 + __builtin_ctzll(present);
        present &= present - 1;
        valid &= add_tile_pair(pairs, k, r, t[k], n_in);
      }
    }
  }
  return valid;
}

int64_t packed_weight_numel(int64_t kvol, int64_t c_in, int64_t c_out) { return kvol * c_in * padded(c_out); }

void pack_weight_avx2(const float* weight, int64_t kvol, int64_t c_in, int64_t c_out, float* packed) {
  const int64_t c_out_pad = padded(c_out);
  for (int64_t col = 0; col < c_out_pad; col += 8 * panel_vectors(c_out_pad, col)) {
    const int64_t width = 8 * panel_vectors(c_out_pad, col);
    float* panel = packed + kvol * c_in * col;
    for (int64_t kc = 0; kc < kvol * c_in; ++kc)
      for (int64_t j = 0; j < width; ++j)
        panel[kc * width + j] = col + j < c_out ? weight[kc * c_out + col + j] : 0.f;
  }
}

void conv_tile_avx2(const float* feats, const float* packed, int64_t kvol, int64_t c_in, int64_t c_out,
                    TilePairs pairs, float* acc, int64_t acc_stride) {
  const int64_t c_out_pad = padded(c_out);
  const float* x[kMaxBlockRows];
  float* a[kMaxBlockRows];
  // Panel outermost: one panel of every offset's weight (K x C_in x 32 floats) is reused by all
  // the tile's rows before the next panel is read.
  for (int64_t col = 0; col < c_out_pad; col += 8 * panel_vectors(c_out_pad, col)) {
    const int nv = panel_vectors(c_out_pad, col), mr = block_rows(nv);
    const float* panel = packed + kvol * c_in * col;
    for (int64_t k = 0; k < kvol; ++k) {
      const int32_t* rows = pairs.rows + pairs.start[k];
      const int32_t* inputs = pairs.inputs + pairs.start[k];
      const float* w = panel + k * c_in * 8 * nv;
      for (int64_t g = 0; g < pairs.count[k]; g += mr) {
        const int m = int(std::min<int64_t>(mr, pairs.count[k] - g));
        for (int r = 0; r < m; ++r) {
          x[r] = feats + int64_t(inputs[g + r]) * c_in;
          a[r] = acc + int64_t(rows[g + r]) * acc_stride + col;
        }
        prefetch_block_inputs(feats, c_in * 4, inputs, g, mr, pairs.count[k]);
        kBlocks[nv][m - 1](x, w, c_in, a);
      }
    }
  }
}

}  // namespace pointengine
