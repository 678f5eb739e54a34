// tile_pairs: the pair lists of a neighbour table tile by tile (tile_pairs_cpu.h), and the checks of
// lists handed to a convolution.
#include "tile_pairs_cpu.h"

#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <vector>

#include "../common/checks.h"
#include "conv_tile.h"
#include "tile_loop.h"

namespace pointengine {

namespace {

// Tiles compacted by one task of the build, into lists of its own (their final order).
constexpr int64_t kTilesPerChunk = 16;

// The largest of v[0, n) read as unsigned (a negative entry wraps above every limit), 0 for none: a
// single reduction that the compiler vectorizes, with vpmaxud in the AVX2 copy.
inline uint32_t largest_unsigned(const int32_t* v, int64_t n) {
  uint32_t largest = 0;
  for (int64_t i = 0; i < n; ++i) largest = std::max(largest, uint32_t(v[i]));
  return largest;
}

__attribute__((target("avx2"))) uint32_t largest_unsigned_avx2(const int32_t* v, int64_t n) {
  return largest_unsigned(v, n);
}

// Whether every entry of v[0, n) lies in [0, limit).
bool all_below(const int32_t* v, int64_t n, int64_t limit) {
  if (n == 0) return true;
  const uint32_t largest = cpu_has_avx2_fma() ? largest_unsigned_avx2(v, n) : largest_unsigned(v, n);
  return int64_t(largest) < limit;
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> tile_pairs_cpu(const at::Tensor& nbr_in, int64_t n_in) {
  constexpr const char* op = "tile_pairs";
  check_matrix(nbr_in, op, "nbr", at::kInt, -1, "[N_out, K]");
  TORCH_CHECK(n_in >= 0, op, ": n_in must be >= 0, got ", n_in);
  check_row_count(nbr_in.size(0), op, "nbr");
  check_row_count(n_in, op, "n_in");
  const at::Tensor nbr = nbr_in.contiguous();
  const int64_t n_out = nbr.size(0), kvol = nbr.size(1), n_tiles = (n_out + kTileRows - 1) / kTileRows;
  const int64_t n_chunks = (n_tiles + kTilesPerChunk - 1) / kTilesPerChunk;
  at::Tensor ptr = at::empty({n_tiles * kvol + 1}, nbr.options().dtype(at::kLong));
  int64_t* bounds = ptr.data_ptr<int64_t>();
  // Each chunk of tiles compacted into lists of its own (bounds[1 + t * K + k]: each list's length).
  std::vector<std::vector<int32_t>> chunk_rows(n_chunks), chunk_inputs(n_chunks);
  std::atomic<bool> valid{true};
  const bool vector = cpu_has_avx2_fma();
  at::parallel_for(0, n_chunks, 1, [&](int64_t c_begin, int64_t c_end) {
    TileWorkspace ws(kvol, std::min(kTileRows, n_out));
    const PairSource source{nbr.data_ptr<int32_t>(), kvol, n_in};
    for (int64_t c = c_begin; c < c_end; ++c)
      for (int64_t t = c * kTilesPerChunk; t < std::min(n_tiles, (c + 1) * kTilesPerChunk); ++t) {
        TilePairs tile;
        const int64_t row_begin = t * kTileRows;
        if (!source.tile(row_begin, std::min(kTileRows, n_out - row_begin), ws, vector, tile)) valid = false;
        for (int64_t k = 0; k < kvol; ++k) {
          const int32_t *rows = tile.rows + tile.start[k], *inputs = tile.inputs + tile.start[k];
          chunk_rows[c].insert(chunk_rows[c].end(), rows, rows + tile.count[k]);
          chunk_inputs[c].insert(chunk_inputs[c].end(), inputs, inputs + tile.count[k]);
          bounds[1 + t * kvol + k] = tile.count[k];
        }
      }
  });
  TORCH_CHECK(valid.load(), op, ": nbr holds a row index >= n_in (", n_in, ")");
  bounds[0] = 0;
  for (int64_t i = 1; i <= n_tiles * kvol; ++i) bounds[i] += bounds[i - 1];
  // The chunks' lists, back to back: a chunk's tiles are consecutive, so its lists are one range.
  at::Tensor pairs = at::empty({2, bounds[n_tiles * kvol]}, nbr.options());
  int32_t* rows = pairs.data_ptr<int32_t>();
  int32_t* inputs = rows + pairs.size(1);
  at::parallel_for(0, n_chunks, 1, [&](int64_t c_begin, int64_t c_end) {
    for (int64_t c = c_begin; c < c_end; ++c) {
      const int64_t at = bounds[c * kTilesPerChunk * kvol];
      std::copy(chunk_rows[c].begin(), chunk_rows[c].end(), rows + at);
      std::copy(chunk_inputs[c].begin(), chunk_inputs[c].end(), inputs + at);
    }
  });
  return {pairs, ptr};
}

TileLists checked_tile_lists(const at::Tensor& pairs, const at::Tensor& ptr, const at::Tensor& nbr, int64_t n_in,
                             const char* op) {
  check_kernel_tensor(pairs, op, "tile_pairs", at::kInt);
  check_kernel_tensor(ptr, op, "tile_ptr", at::kLong);
  const int64_t n_out = nbr.size(0), kvol = nbr.size(1), n_tiles = (n_out + kTileRows - 1) / kTileRows;
  TORCH_CHECK(pairs.dim() == 2 && pairs.size(0) == 2 && pairs.is_contiguous(), op,
              ": tile_pairs must be a contiguous [2, P] tensor (tile_pairs of the table), got ", pairs.sizes());
  TORCH_CHECK(ptr.dim() == 1 && ptr.size(0) == n_tiles * kvol + 1 && ptr.is_contiguous(), op,
              ": tile_ptr must be a contiguous vector of ", n_tiles * kvol + 1,
              " entries (tiles x offsets + 1, tile_pairs of the table), got ", ptr.sizes());
  const int64_t* bounds = ptr.data_ptr<int64_t>();
  const int64_t n_pairs = pairs.size(1);
  bool ordered = bounds[0] == 0 && bounds[n_tiles * kvol] == n_pairs;
  for (int64_t i = 0; i < n_tiles * kvol; ++i) ordered &= bounds[i] <= bounds[i + 1];
  TORCH_CHECK(ordered, op, ": tile_ptr must rise from 0 to ", n_pairs, " (the pairs of tile_pairs)");
  const int32_t* rows = pairs.data_ptr<int32_t>();
  const int32_t* inputs = rows + n_pairs;
  // Every row within its tile and every input row in range: the kernels read nothing else. The last
  // tile may hold fewer rows than kTileRows.
  const int64_t last_begin = n_tiles > 0 ? bounds[(n_tiles - 1) * kvol] : 0;
  std::atomic<bool> valid{all_below(rows + last_begin, n_pairs - last_begin, n_out - (n_tiles - 1) * kTileRows)};
  at::parallel_for(0, n_pairs, 1 << 16, [&](int64_t begin, int64_t end) {
    if (!all_below(rows + begin, end - begin, kTileRows) || !all_below(inputs + begin, end - begin, n_in)) valid = false;
  });
  TORCH_CHECK(valid.load(), op, ": tile_pairs holds a tile row outside its tile or an input row outside [0, ", n_in,
              ") (tile_pairs of the table expected)");
  return {const_cast<int32_t*>(rows), const_cast<int32_t*>(inputs), bounds};
}

const TileLists* given_tile_lists(const TileListArgs& args, const at::Tensor& nbr, int64_t n_in, const char* op,
                                  TileLists& lists) {
  TORCH_CHECK(args.pairs.has_value() == args.ptr.has_value(), op, ": tile_pairs and tile_ptr come together");
  if (!args.pairs.has_value()) return nullptr;
  lists = checked_tile_lists(*args.pairs, *args.ptr, nbr, n_in, op);
  return &lists;
}

TORCH_LIBRARY_IMPL(pointengine, CPU, m) { m.impl("tile_pairs", &tile_pairs_cpu); }

}  // namespace pointengine
