// Output-stationary fused sparse convolution: out[o] = sum_k feats[nbr[o, k]] @ weight[k].
// Output rows are cut into fixed tiles of kTileRows; for each tile the present neighbours of every
// offset are compacted (conv_tile.h) and accumulated into the tile's rows, which stay in cache.
// Every output element sums its terms in one order (offset, then input channel) whatever the tile
// or thread that computes it: no atomics, bitwise reproducible for any thread count. float32 runs
// the AVX2 + FMA kernel when the CPU has it, any other case the portable loop below; the two paths
// round differently (fused multiply-add), each is deterministic.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <vector>

#include "../common/checks.h"
#include "conv_fused_cpu.h"
#include "conv_tile.h"
#include "tile_loop.h"

namespace pointengine {
namespace {

struct Shape {
  int64_t n_in, n_out, kvol, c_in, c_out;
};

// Each returns false when the table names a row past the inputs.
template <typename scalar_t>
bool conv_portable(const scalar_t* feats, const scalar_t* weight, const int32_t* nbr, const Shape& shape,
                   scalar_t* out) {
  const int64_t kvol = shape.kvol, c_in = shape.c_in, c_out = shape.c_out;
  return for_each_tile(shape.n_out, kvol, [&](int64_t row_begin, int64_t n_rows, TileWorkspace& ws) {
    const TilePairs pairs = ws.pairs();
    const bool valid = compact_tile(nbr, kvol, shape.n_in, row_begin, n_rows, pairs);
    scalar_t* acc = out + row_begin * c_out;
    std::fill(acc, acc + n_rows * c_out, scalar_t(0));
    for (int64_t k = 0; k < kvol; ++k)
      for (int64_t j = k * pairs.slots; j < k * pairs.slots + pairs.count[k]; ++j) {
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

bool conv_avx2(const float* feats, const float* weight, const int32_t* nbr, const Shape& shape, float* out) {
  const int64_t kvol = shape.kvol, c_in = shape.c_in, c_out = shape.c_out;
  std::vector<float> packed(packed_weight_numel(kvol, c_in, c_out));
  pack_weight_avx2(weight, kvol, c_in, c_out, packed.data());
  // The kernel writes whole 8-column vectors: with C_out a multiple of 8 it accumulates in the
  // output itself, otherwise in a padded tile copied out.
  const int64_t c_out_pad = (c_out + 7) / 8 * 8;
  const bool in_place = c_out_pad == c_out;
  return for_each_tile(shape.n_out, kvol, [&](int64_t row_begin, int64_t n_rows, TileWorkspace& ws) {
    const TilePairs pairs = ws.pairs();
    const bool valid = compact_tile_avx2(nbr, kvol, shape.n_in, row_begin, n_rows, pairs);
    float* acc = in_place ? out + row_begin * c_out : ws.padded_tile(c_out_pad);
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
  constexpr const char* op = "conv_fused";
  check_float_matrix(feats_in, op, "feats", "[N_in, C_in]");
  check_kernel_tensor(weight_in, op, "weight", feats_in.scalar_type());
  check_matrix(nbr_in, op, "nbr", at::kInt, -1, "[N_out, K]");
  check_row_count(feats_in.size(0), op, "feats");
  TORCH_CHECK(weight_in.dim() == 3 && weight_in.size(1) == feats_in.size(1) && weight_in.size(0) == nbr_in.size(1),
              "conv_fused: weight must have shape [K, C_in, C_out] = [", nbr_in.size(1), ", ", feats_in.size(1),
              ", C_out] (nbr columns, feats columns), got ", weight_in.sizes());
  const at::Tensor feats = feats_in.contiguous(), weight = weight_in.contiguous(), nbr = nbr_in.contiguous();
  const Shape shape{feats.size(0), nbr.size(0), nbr.size(1), weight.size(1), weight.size(2)};
  at::Tensor out = at::empty({shape.n_out, shape.c_out}, feats.options());
  bool valid;
  if (allow_avx2 && feats.scalar_type() == at::kFloat && cpu_has_avx2_fma()) {
    valid = conv_avx2(feats.data_ptr<float>(), weight.data_ptr<float>(), nbr.data_ptr<int32_t>(), shape,
                      out.data_ptr<float>());
  } else {
    AT_DISPATCH_FLOATING_TYPES(feats.scalar_type(), "conv_fused_cpu", [&] {
      valid = conv_portable<scalar_t>(feats.data_ptr<scalar_t>(), weight.data_ptr<scalar_t>(),
                                      nbr.data_ptr<int32_t>(), shape, out.data_ptr<scalar_t>());
    });
  }
  TORCH_CHECK(valid, "conv_fused: nbr holds a row index >= the number of feats rows (", shape.n_in, ")");
  return out;
}

const char* conv_fused_isa() { return cpu_has_avx2_fma() ? "avx2+fma" : "portable"; }

namespace {

at::Tensor conv_fused_cpu(const at::Tensor& feats, const at::Tensor& weight, const at::Tensor& nbr) {
  return conv_fused_path(feats, weight, nbr, /*allow_avx2=*/true);
}

// conv_implicit_gemm is the GPU's tensor-core kernel; its row order only arranges the GPU's tiles,
// so on the CPU it is conv_fused.
at::Tensor conv_implicit_gemm_cpu(const at::Tensor& feats, const at::Tensor& weight, const at::Tensor& nbr,
                                  const c10::optional<at::Tensor>& order) {
  if (order.has_value()) {
    check_kernel_tensor(*order, "conv_implicit_gemm", "order", at::kInt);
    TORCH_CHECK(order->dim() == 1 && order->size(0) == nbr.size(0), "conv_implicit_gemm: order must have one entry "
                "per nbr row (", nbr.size(0), "), got ", order->sizes());
  }
  return conv_fused_cpu(feats, weight, nbr);
}

}  // namespace

TORCH_LIBRARY_IMPL(pointengine, CPU, m) {
  m.impl("conv_fused", &conv_fused_cpu);
  m.impl("conv_implicit_gemm", &conv_implicit_gemm_cpu);
}

}  // namespace pointengine
