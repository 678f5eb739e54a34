// The parallel loop over tiles of output rows that the tile kernels (conv_fused, linear) share,
// with each thread's workspace: one tile's pairs per offset.
#pragma once
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <memory>

#include "conv_tile.h"
#include "tile_pairs_cpu.h"

namespace pointengine {

// Per-thread buffers, sized by the call: each offset has one slot per row of a tile, and a tile
// holds min(kTileRows, rows) rows. Left uninitialised (compaction writes before reading), so the
// pages of a large kernel on few rows are never touched: kernel_size 101 on 3 sites once zero-filled
// 2 x 1.03 M x 128 int32 per thread.
struct TileWorkspace {
  int64_t slots;
  std::unique_ptr<int32_t[]> rows, inputs, count;
  std::unique_ptr<int64_t[]> start;  // k * slots
  std::unique_ptr<float[]> tile;  // the padded accumulator tile of the AVX2 float path, when needed
  std::unique_ptr<int32_t[]> int_tile;  // the int32 accumulator tile of conv_int8

  TileWorkspace(int64_t kvol, int64_t slots)
      : slots(slots), rows(new int32_t[kvol * slots]), inputs(new int32_t[kvol * slots]), count(new int32_t[kvol]),
        start(new int64_t[kvol]) {
    for (int64_t k = 0; k < kvol; ++k) start[k] = k * slots;
  }
  TilePairs pairs() { return {rows.get(), inputs.get(), count.get(), slots, start.get()}; }
  float* padded_tile(int64_t columns) {
    if (!tile) tile.reset(new float[slots * columns]);
    return tile.get();
  }
  int32_t* int32_tile(int64_t columns) {
    if (!int_tile) int_tile.reset(new int32_t[slots * columns]);
    return int_tile.get();
  }
};

// Tiles are handed out one at a time from a shared counter: rows differ in neighbour counts, so a
// static split can leave a thread idle. Which thread computes a tile does not affect its values.
// tile_fn(row_begin, n_rows, workspace) returns false for an invalid tile; the result is whether
// every tile was valid (all are computed).
template <typename TileFn>
bool for_each_tile(int64_t n_rows, int64_t kvol, const TileFn& tile_fn) {
  const int64_t n_tiles = (n_rows + kTileRows - 1) / kTileRows;
  const int64_t slots = std::min(kTileRows, n_rows);
  std::atomic<int64_t> next{0};
  std::atomic<bool> valid{true};
  at::parallel_for(0, std::min<int64_t>(n_tiles, at::get_num_threads()), 1, [&](int64_t, int64_t) {
    TileWorkspace ws(kvol, slots);
    for (int64_t t; (t = next.fetch_add(1)) < n_tiles;) {
      const int64_t row_begin = t * kTileRows;
      if (!tile_fn(row_begin, std::min(kTileRows, n_rows - row_begin), ws)) valid = false;
    }
  });
  return valid.load();
}

// Where the tiles of a convolution find their pairs: compacted from the neighbour table nbr [N_out, K]
// tile by tile, or, when `lists` is set, in lists made beforehand by tile_pairs (tile_pairs_cpu.h: one
// set per kernel map, shared by the layers that read it), which the op checked.
struct PairSource {
  const int32_t* nbr;
  int64_t kvol, n_in;
  const TileLists* lists = nullptr;

  // The pairs of the tile of n_rows rows at row_begin (a multiple of kTileRows), in ws when compacted
  // (with compact_tile_avx2 when `vector`, else compact_tile); false when the table names a row past
  // the inputs (those entries are left out).
  bool tile(int64_t row_begin, int64_t n_rows, TileWorkspace& ws, bool vector, TilePairs& pairs) const {
    pairs = ws.pairs();
    if (lists == nullptr)
      return vector ? compact_tile_avx2(nbr, kvol, n_in, row_begin, n_rows, pairs)
                    : compact_tile(nbr, kvol, n_in, row_begin, n_rows, pairs);
    const int64_t* ptr = lists->ptr + row_begin / kTileRows * kvol;
    for (int64_t k = 0; k < kvol; ++k) pairs.count[k] = int32_t(ptr[k + 1] - ptr[k]);
    pairs.rows = lists->rows;
    pairs.inputs = lists->inputs;
    pairs.start = ptr;
    return true;
  }
};

}  // namespace pointengine
