// AMX kernel of the int8 convolution (Intel Sapphire Rapids and later): tdpbusd multiplies a 16 x 64
// tile of input bytes (16 pairs of one offset, 64 input channels; unsigned) with a 16 x 64 tile of
// weight bytes (16 groups of 4 input channels x 16 columns; signed) into a 16 x 16 tile of int32 sums,
// 16,384 multiply-adds in one instruction where vpdpbusd does 64. Compiled for those instructions with
// function attributes, called only when cpu_has_amx_int8().
//
// Per offset, 16 pairs at a time: their input rows are gathered into a buffer (the tiles load rows at
// one stride), multiplied with up to 4 weight tiles (64 columns) per 64 input channels, and the 16 x 16
// sums of each column tile are added into the accumulator rows the pairs name.
#include <immintrin.h>

#include <algorithm>
#include <vector>

#include "amx_tiles.h"
#include "conv_int8_tile.h"

#define PE_AMX __attribute__((target("avx2,avx512f,avx512bw,amx-tile,amx-int8")))

namespace pointengine {
namespace {

constexpr int kTileRowsAmx = kAmxRows;  // pairs per block
constexpr int64_t kChunkBytes = kAmxRowBytes;  // input channels per tile row
constexpr int64_t kChunkGroups = kChunkBytes / 4;

// Tiles 0-3 hold the sums of up to 4 column tiles, 4 the input rows, 5-7 weights.
PE_AMX void configure_tiles() {
  AmxTileConfig config;
  for (int t = 0; t < 8; ++t) {
    config.rows[t] = kTileRowsAmx;
    config.bytes_per_row[t] = kChunkBytes;
  }
  _tile_loadconfig(&config);
}

// The block's sums of `tiles` column tiles (panel of 64 columns at w, weight rows w_stride apart)
// into sums[t][16 rows][16 columns].
PE_AMX void multiply_block(const uint8_t* block, const int8_t* w, int64_t w_stride, int64_t chunks, int tiles,
                           int32_t (*sums)[kTileRowsAmx][16]) {
  _tile_zero(0);
  if (tiles > 1) _tile_zero(1);
  if (tiles > 2) _tile_zero(2);
  if (tiles > 3) _tile_zero(3);
  for (int64_t c = 0; c < chunks; ++c) {
    const int8_t* wc = w + c * kChunkGroups * w_stride;
    _tile_loadd(4, block + c * kTileRowsAmx * kChunkBytes, kChunkBytes);
    _tile_loadd(5, wc, w_stride);
    _tile_dpbusd(0, 4, 5);
    if (tiles > 1) {
      _tile_loadd(6, wc + 64, w_stride);
      _tile_dpbusd(1, 4, 6);
    }
    if (tiles > 2) {
      _tile_loadd(7, wc + 128, w_stride);
      _tile_dpbusd(2, 4, 7);
    }
    if (tiles > 3) {
      _tile_loadd(5, wc + 192, w_stride);
      _tile_dpbusd(3, 4, 5);
    }
  }
  _tile_stored(0, sums[0], 64);
  if (tiles > 1) _tile_stored(1, sums[1], 64);
  if (tiles > 2) _tile_stored(2, sums[2], 64);
  if (tiles > 3) _tile_stored(3, sums[3], 64);
}

// acc[rows[r], 16 t ...] += sums[t][r] - zero[16 t ...] for the block's m pairs.
PE_AMX void add_block(const int32_t (*sums)[kTileRowsAmx][16], const int32_t* rows, int m, int tiles,
                      const int32_t* zero, int32_t* acc, int64_t c_pad) {
  for (int t = 0; t < tiles; ++t) {
    const __m512i z = _mm512_loadu_si512(zero + 16 * t);
    for (int r = 0; r < m; ++r) {
      int32_t* a = acc + int64_t(rows[r]) * c_pad + 16 * t;
      _mm512_storeu_si512(a, _mm512_add_epi32(_mm512_loadu_si512(a), _mm512_sub_epi32(_mm512_loadu_si512(sums[t][r]), z)));
    }
  }
}

}  // namespace

bool cpu_has_amx_int8() {
  static const bool has = isa_cap() >= 3 && cpu_has_avx512_vnni() && cpu_runs_amx(25);
  return has;
}

PE_AMX void conv_int8_tile_amx(const uint8_t* q, int64_t q_stride, const int8_t* packed, const int32_t* zero_terms,
                               int64_t kvol, int64_t groups, int64_t c_pad, TilePairs pairs, int32_t* acc,
                               OutputBytes out) {
  const int64_t chunks = groups / kChunkGroups, w_stride = c_pad * 4;
  // Rows past a short block's pairs are never added anywhere; zeroed once so the tiles read set bytes.
  std::vector<uint8_t> block(chunks * kTileRowsAmx * kChunkBytes, 0);
  alignas(64) int32_t sums[4][kTileRowsAmx][16];
  configure_tiles();
  for (int64_t k = 0; k < kvol; ++k) {
    prefetch_share(out, k, kvol);
    const int32_t* rows = pairs.rows + pairs.start[k];
    const int32_t* inputs = pairs.inputs + pairs.start[k];
    for (int64_t p = 0; p < pairs.count[k]; p += kTileRowsAmx) {
      const int m = int(std::min<int64_t>(kTileRowsAmx, pairs.count[k] - p));
      gather_tile_rows(q, q_stride, inputs + p, m, chunks, block.data());
      for (int64_t col = 0; col < c_pad; col += 64) {
        const int tiles = int(std::min<int64_t>(4, (c_pad - col) / 16));
        multiply_block(block.data(), packed + (k * groups * c_pad + col) * 4, w_stride, chunks, tiles, sums);
        add_block(sums, rows + p, m, tiles, zero_terms + k * c_pad + col, acc + col, c_pad);
      }
    }
  }
  _tile_release();
}

}  // namespace pointengine
