// Output-stationary fused sparse convolution: out[o] = sum_k feats[nbr[o, k]] @ weight[k].
// Output rows are cut into fixed tiles of kTileRows; for each tile the present neighbours of every
// offset are compacted (conv_tile.h) and accumulated into the tile's rows, which stay in cache.
// Every output element sums its terms in one order (offset, then input channel) whatever the tile
// or thread that computes it: no atomics, bitwise reproducible for any thread count. float32 runs
// the AVX2 + FMA kernel when the CPU has it, any other case the portable loop below; the two paths
// round differently (fused multiply-add), each is deterministic.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <atomic>
#include <vector>

#include "conv_fused_cpu.h"
#include "conv_tile.h"

namespace pointengine {
namespace {

// Per-thread buffers: one tile's pairs, and the padded accumulator tile of the AVX2 path.
struct Workspace {
  std::vector<int32_t> rows, inputs, count;
  std::vector<float> tile;
  explicit Workspace(int64_t kvol) : rows(kvol * kTileRows), inputs(kvol * kTileRows), count(kvol) {}
  TilePairs pairs() { return {rows.data(), inputs.data(), count.data()}; }
};

// Tiles are handed out one at a time from a shared counter: rows differ in neighbour counts, so a
// static split can leave a thread idle. Which thread computes a tile does not affect its values.
// tile_fn returns false when the tile's table names a row past the inputs; the check then fails
// once all threads are done.
template <typename TileFn>
void for_each_tile(int64_t n_rows, int64_t kvol, const TileFn& tile_fn) {
  const int64_t n_tiles = (n_rows + kTileRows - 1) / kTileRows;
  std::atomic<int64_t> next{0};
  std::atomic<bool> valid{true};
  at::parallel_for(0, std::min<int64_t>(n_tiles, at::get_num_threads()), 1, [&](int64_t, int64_t) {
    Workspace ws(kvol);
    for (int64_t t; (t = next.fetch_add(1)) < n_tiles;) {
      const int64_t row_begin = t * kTileRows;
      if (!tile_fn(row_begin, std::min(kTileRows, n_rows - row_begin), ws)) valid = false;
    }
  });
  TORCH_CHECK(valid.load(), "conv_fused: nbr holds a row index >= the number of feats rows");
}

struct Shape {
  int64_t n_in, n_out, kvol, c_in, c_out;
};

template <typename scalar_t>
void conv_portable(const scalar_t* feats, const scalar_t* weight, const int32_t* nbr, const Shape& shape,
                   scalar_t* out) {
  const int64_t kvol = shape.kvol, c_in = shape.c_in, c_out = shape.c_out;
  for_each_tile(shape.n_out, kvol, [&](int64_t row_begin, int64_t n_rows, Workspace& ws) {
    const TilePairs pairs = ws.pairs();
    const bool valid = compact_tile(nbr, kvol, shape.n_in, row_begin, n_rows, pairs);
    scalar_t* acc = out + row_begin * c_out;
    std::fill(acc, acc + n_rows * c_out, scalar_t(0));
    for (int64_t k = 0; k < kvol; ++k)
      for (int64_t j = k * kTileRows; j < k * kTileRows + pairs.count[k]; ++j) {
        const scalar_t* x = feats + int64_t(pairs.inputs[j]) * c_in;
        scalar_t* a = acc + int64_t(pairs.rows[j]) * c_out;
        for (int64_t ci = 0; ci < c_in; ++ci) {
          const scalar_t xv = x[ci];
          const scalar_t* w = weight + (k * c_in + ci) * c_out;
          for (int64_t co = 0; co < c_out; ++co) a[co] += xv * w[co];
        }
      }
    return valid;
  });
}

void conv_avx2(const float* feats, const float* weight, const int32_t* nbr, const Shape& shape, float* out) {
  const int64_t kvol = shape.kvol, c_in = shape.c_in, c_out = shape.c_out;
  std::vector<float> packed(packed_weight_numel(kvol, c_in, c_out));
  pack_weight_avx2(weight, kvol, c_in, c_out, packed.data());
  // The kernel writes whole 8-column vectors: with C_out a multiple of 8 it accumulates in the
  // output itself, otherwise in a padded tile copied out.
  const int64_t c_out_pad = (c_out + 7) / 8 * 8;
  const bool in_place = c_out_pad == c_out;
  for_each_tile(shape.n_out, kvol, [&](int64_t row_begin, int64_t n_rows, Workspace& ws) {
    const TilePairs pairs = ws.pairs();
    const bool valid = compact_tile_avx2(nbr, kvol, shape.n_in, row_begin, n_rows, pairs);
    if (!in_place) ws.tile.resize(kTileRows * c_out_pad);
    float* acc = in_place ? out + row_begin * c_out : ws.tile.data();
    std::fill(acc, acc + n_rows * c_out_pad, 0.f);
    conv_tile_avx2(feats, packed.data(), kvol, c_in, c_out, pairs, acc, c_out_pad);
    if (!in_place)
      for (int64_t r = 0; r < n_rows; ++r)
        std::copy(acc + r * c_out_pad, acc + r * c_out_pad + c_out, out + (row_begin + r) * c_out);
    return valid;
  });
}

}  // namespace

at::Tensor conv_fused_path(const at::Tensor& feats_in, const at::Tensor& weight_in, const at::Tensor& nbr_in,
                           bool allow_avx2) {
  TORCH_CHECK(feats_in.dim() == 2 && weight_in.dim() == 3 && nbr_in.dim() == 2,
              "conv_fused: expected feats [N_in, C_in], weight [K, C_in, C_out] and nbr [N_out, K], got ",
              feats_in.dim(), ", ", weight_in.dim(), " and ", nbr_in.dim(), " dimensions");
  TORCH_CHECK(weight_in.scalar_type() == feats_in.scalar_type() && nbr_in.scalar_type() == at::kInt,
              "conv_fused: expected scalar type ", feats_in.scalar_type(), " for weight and Int for nbr, found ",
              weight_in.scalar_type(), " and ", nbr_in.scalar_type());
  TORCH_CHECK(weight_in.size(1) == feats_in.size(1) && weight_in.size(0) == nbr_in.size(1),
              "conv_fused: weight ", weight_in.sizes(), " does not match feats ", feats_in.sizes(), " and nbr ",
              nbr_in.sizes(), " (expected weight [nbr columns, feats columns, C_out])");
  const at::Tensor feats = feats_in.contiguous(), weight = weight_in.contiguous(), nbr = nbr_in.contiguous();
  const Shape shape{feats.size(0), nbr.size(0), nbr.size(1), weight.size(1), weight.size(2)};
  at::Tensor out = at::empty({shape.n_out, shape.c_out}, feats.options());
  if (allow_avx2 && feats.scalar_type() == at::kFloat && cpu_has_avx2_fma()) {
    conv_avx2(feats.data_ptr<float>(), weight.data_ptr<float>(), nbr.data_ptr<int32_t>(), shape, out.data_ptr<float>());
    return out;
  }
  AT_DISPATCH_FLOATING_TYPES(feats.scalar_type(), "conv_fused_cpu", [&] {
    conv_portable<scalar_t>(feats.data_ptr<scalar_t>(), weight.data_ptr<scalar_t>(), nbr.data_ptr<int32_t>(), shape,
                            out.data_ptr<scalar_t>());
  });
  return out;
}

const char* conv_fused_isa() { return cpu_has_avx2_fma() ? "avx2+fma" : "portable"; }

namespace {

at::Tensor conv_fused_cpu(const at::Tensor& feats, const at::Tensor& weight, const at::Tensor& nbr) {
  return conv_fused_path(feats, weight, nbr, /*allow_avx2=*/true);
}

}  // namespace

TORCH_LIBRARY_IMPL(pointengine, CPU, m) { m.impl("conv_fused", &conv_fused_cpu); }

}  // namespace pointengine
