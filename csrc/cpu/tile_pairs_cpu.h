// A kernel map's pairs compacted tile by tile once, in the order the tile kernels read them, for the
// layers that share the map (every submanifold layer of a level): each of them otherwise compacts
// the neighbour table again, a pass that took 17-53 % of a 3x3x3 layer's time at 48 down to 4
// channels on the SemanticKITTI scan (benchmarks/README.md, "Pair lists made once per kernel map").
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <tuple>

namespace pointengine {

// Offset k's pairs of tile t (output rows t * kTileRows on) are tile rows rows[p] (ascending) and input
// rows inputs[p] for p in [ptr[t * K + k], ptr[t * K + k + 1]): compact_tile's lists, back to back.
struct TileLists {
  int32_t* rows;
  int32_t* inputs;
  const int64_t* ptr;
};

// The lists an op is given beside its table (tile_pairs and tile_ptr), or neither: the kernel then
// compacts the table tile by tile.
struct TileListArgs {
  c10::optional<at::Tensor> pairs, ptr;
};

// The lists of the table nbr [N_out, K] (-1: no pair) on n_in input rows: pairs int32 [2, P] (tile
// rows, then input rows) and ptr int64 [T * K + 1], T = ceil(N_out / kTileRows).
std::tuple<at::Tensor, at::Tensor> tile_pairs_cpu(const at::Tensor& nbr, int64_t n_in);

// The lists given to a convolution op with its table nbr and n_in input rows, checked (dtypes, shapes,
// every row in range, rows ascending in each list: nothing a kernel reads can lie outside a buffer).
TileLists checked_tile_lists(const at::Tensor& pairs, const at::Tensor& ptr, const at::Tensor& nbr, int64_t n_in,
                             const char* op);

// The view of `args` (checked as above) for a PairSource, or nullptr when the op was given no lists;
// `lists` holds it.
const TileLists* given_tile_lists(const TileListArgs& args, const at::Tensor& nbr, int64_t n_in, const char* op,
                                  TileLists& lists);

}  // namespace pointengine
