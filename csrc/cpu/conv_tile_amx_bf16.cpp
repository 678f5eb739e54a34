// AMX tile kernel of the bfloat16 convolution (Intel Sapphire Rapids and later): tdpbf16ps multiplies
// a 16 x 32 tile of input values (16 pairs of one offset, 16 channel pairs) with a 16 x 32 tile of
// weights (16 channel pairs x 16 columns) into a 16 x 16 float32 tile, 8,192 multiply-adds in one
// instruction where vdpbf16ps does 32. Compiled with function attributes, called only when
// cpu_has_amx_bf16().
//
// Its own bits: TDPBF16PS does not round as vdpbf16ps does (not one fused multiply-add per channel:
// measured on a Xeon, family 6 model 167, on random sums of 2 to 64 channels, no order of per-step,
// per-pair or per-tile roundings reproduced it), so this path is not bitwise the portable one. It
// stays deterministic: each accumulator takes its offsets and channel chunks in one fixed order, the
// float32 tile starting from the accumulator rows themselves (gathered, multiplied, scattered back),
// for any thread count; tests hold it to the float32 summation bound of a float64 reference.
#include <immintrin.h>

#include <algorithm>
#include <vector>

#include "amx_tiles.h"
#include "conv_tile_bf16.h"

#define PE_AMX_BF16 __attribute__((target("avx2,avx512f,avx512bw,amx-tile,amx-bf16")))

namespace pointengine {
namespace {

constexpr int kBlockPairs = kAmxRows;  // pairs of an offset per block
constexpr int64_t kChunkPairs = kAmxRowBytes / 4;  // channel pairs per tile row
constexpr int64_t kPanelColumns = 32;  // two float32 tiles

// Tiles 0-1: the panel's accumulators; 2: inputs and 3-4: weights of a whole chunk of 16 channel
// pairs; 5: inputs and 6-7: weights of the last chunk, `last` pairs.
PE_AMX_BF16 void configure_tiles(int64_t last) {
  AmxTileConfig config;
  for (int t = 0; t < 8; ++t) {
    config.rows[t] = kBlockPairs;
    config.bytes_per_row[t] = 64;
  }
  config.bytes_per_row[5] = uint16_t(4 * last);
  config.rows[6] = config.rows[7] = uint8_t(last);
  _tile_loadconfig(&config);
}

PE_AMX_BF16 void multiply_panel(const uint16_t* block, const uint16_t* w, int64_t w_stride_bytes, int64_t chunks,
                                bool two) {
  for (int64_t c = 0; c + 1 < chunks; ++c) {
    const uint16_t* wc = w + c * kChunkPairs * w_stride_bytes / 2;
    _tile_loadd(2, block + c * kBlockPairs * 2 * kChunkPairs, 64);
    _tile_loadd(3, wc, w_stride_bytes);
    _tile_dpbf16ps(0, 2, 3);
    if (two) {
      _tile_loadd(4, wc + 32, w_stride_bytes);
      _tile_dpbf16ps(1, 2, 4);
    }
  }
  const uint16_t* wl = w + (chunks - 1) * kChunkPairs * w_stride_bytes / 2;
  _tile_loadd(5, block + (chunks - 1) * kBlockPairs * 2 * kChunkPairs, 64);
  _tile_loadd(6, wl, w_stride_bytes);
  _tile_dpbf16ps(0, 5, 6);
  if (two) {
    _tile_loadd(7, wl + 32, w_stride_bytes);
    _tile_dpbf16ps(1, 5, 7);
  }
}

// Chunks of 16 channel pairs that hold C_in channels; columns padded to whole float32 tiles.
int64_t chunk_count(int64_t c_in) { return ((c_in + 1) / 2 + kChunkPairs - 1) / kChunkPairs; }
int64_t padded_columns(int64_t c_out) { return (c_out + 15) / 16 * 16; }

}  // namespace

bool cpu_has_amx_bf16() {
  static const bool has =
      isa_cap() >= 3 && cpu_has_avx512_bf16() && __builtin_cpu_supports("avx512bw") && cpu_runs_amx(22);
  return has;
}

int64_t packed_weight_numel_amx_bf16(int64_t kvol, int64_t c_in, int64_t c_out) {
  return kvol * chunk_count(c_in) * kChunkPairs * padded_columns(c_out) * 2;
}

void pack_weight_amx_bf16(const uint16_t* weight, int64_t kvol, int64_t c_in, int64_t c_out, uint16_t* packed) {
  const int64_t pair_rows = chunk_count(c_in) * kChunkPairs, c_pad = padded_columns(c_out);
  std::fill(packed, packed + kvol * pair_rows * c_pad * 2, uint16_t(0));
  for (int64_t k = 0; k < kvol; ++k)
    for (int64_t ci = 0; ci < c_in; ++ci)
      for (int64_t c = 0; c < c_out; ++c)
        packed[((k * pair_rows + ci / 2) * c_pad + c) * 2 + ci % 2] = weight[(k * c_in + ci) * c_out + c];
}

PE_AMX_BF16 void conv_tile_amx_bf16(const uint16_t* feats, const uint16_t* packed, int64_t kvol, int64_t c_in,
                                    int64_t c_out, TilePairs pairs, float* acc, int64_t acc_stride) {
  const int64_t n_pairs = (c_in + 1) / 2, chunks = chunk_count(c_in);
  const int64_t c_pad = padded_columns(c_out), w_stride_bytes = c_pad * 4;
  if (chunks == 0) return;  // no input channels: nothing to add
  // Rows past a short block's pairs are multiplied and never stored; zeroed once so the tiles read set bytes.
  std::vector<uint16_t> block(chunks * kBlockPairs * 2 * kChunkPairs, 0);
  alignas(64) float sums[2][kBlockPairs][16] = {};
  configure_tiles(n_pairs - (chunks - 1) * kChunkPairs);
  for (int64_t k = 0; k < kvol; ++k) {
    const int32_t* rows = pairs.rows + pairs.start[k];
    const int32_t* inputs = pairs.inputs + pairs.start[k];
    for (int64_t p = 0; p < pairs.count[k]; p += kBlockPairs) {
      const int m = int(std::min<int64_t>(kBlockPairs, pairs.count[k] - p));
      gather_tile_rows(reinterpret_cast<const uint8_t*>(feats), c_in * 2, inputs + p, m, chunks,
                       reinterpret_cast<uint8_t*>(block.data()));
      for (int64_t col = 0; col < c_pad; col += kPanelColumns) {
        const int tiles = int(std::min<int64_t>(2, (c_pad - col) / 16));
        __mmask16 masks[2];
        for (int t = 0; t < tiles; ++t) {
          const int64_t left = c_out - col - 16 * t;
          masks[t] = left >= 16 ? __mmask16(0xffff) : __mmask16((1u << left) - 1);
          for (int r = 0; r < m; ++r)
            _mm512_storeu_ps(sums[t][r], _mm512_maskz_loadu_ps(masks[t], acc + int64_t(rows[p + r]) * acc_stride + col + 16 * t));
        }
        _tile_loadd(0, sums[0], 64);
        if (tiles > 1) _tile_loadd(1, sums[1], 64);
        multiply_panel(block.data(), packed + (k * chunks * kChunkPairs * c_pad + col) * 2, w_stride_bytes, chunks,
                       tiles > 1);
        _tile_stored(0, sums[0], 64);
        if (tiles > 1) _tile_stored(1, sums[1], 64);
        for (int t = 0; t < tiles; ++t)
          for (int r = 0; r < m; ++r)
            _mm512_mask_storeu_ps(acc + int64_t(rows[p + r]) * acc_stride + col + 16 * t, masks[t],
                                  _mm512_loadu_ps(sums[t][r]));
      }
    }
  }
  _tile_release();
}

}  // namespace pointengine
