// The parallel loop over tiles of output rows that the tile kernels (conv_fused, linear) share,
// with each thread's workspace: one tile's pairs per offset.
#pragma once
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <memory>

#include "conv_tile.h"

namespace pointengine {

// Per-thread buffers, sized by the call: each offset has one slot per row of a tile, and a tile
// holds min(kTileRows, rows) rows. Left uninitialised (compaction writes before reading), so the
// pages of a large kernel on few rows are never touched: kernel_size 101 on 3 sites once zero-filled
// 2 x 1.03 M x 128 int32 per thread.
struct TileWorkspace {
  int64_t slots;
  std::unique_ptr<int32_t[]> rows, inputs, count;
  std::unique_ptr<float[]> tile;  // the padded accumulator tile of the AVX2 float path, when needed
  std::unique_ptr<int32_t[]> int_tile;  // the int32 accumulator tile of conv_int8

  TileWorkspace(int64_t kvol, int64_t slots)
      : slots(slots), rows(new int32_t[kvol * slots]), inputs(new int32_t[kvol * slots]), count(new int32_t[kvol]) {}
  TilePairs pairs() { return {rows.get(), inputs.get(), count.get(), slots}; }
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

}  // namespace pointengine
