// Output-stationary fused sparse convolution: out[o] = sum_k feats[nbr[o, k]] @ weight[k], and
// conv_fused_epilogue, which adds a bias and a residual and applies a ReLU in the same tile pass
// (the folded Conv-BN-ReLU and residual blocks of pointengine.optimize).
// Output rows are cut into fixed tiles of kTileRows; for each tile the present neighbours of every
// offset are compacted (conv_tile.h), or read from the map's lists made once (tile_pairs_cpu.h), and
// accumulated into the tile's rows, which stay in cache.
// Every output element sums its terms in one order (offset, then input channel) whatever the tile
// or thread that computes it: no atomics, bitwise reproducible for any thread count. float32 runs
// the AVX2 + FMA kernel when the CPU has it, any other case the portable loop below; the two paths
// round differently (fused multiply-add), each is deterministic.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <vector>

#include "../common/checks.h"
#include "conv_epilogue.h"
#include "conv_fused_cpu.h"
#include "conv_tile.h"
#include "tile_loop.h"
#include "tile_pairs_cpu.h"

namespace pointengine {
namespace {

struct Shape {
  int64_t n_in, n_out, kvol, c_in, c_out;
};

// Each returns false when the table names a row past the inputs.
template <typename scalar_t>
bool conv_portable(const scalar_t* feats, const scalar_t* weight, const PairSource& source, const Shape& shape,
                   const Epilogue<scalar_t>& epilogue, scalar_t* out) {
  const int64_t kvol = shape.kvol, c_in = shape.c_in, c_out = shape.c_out;
  return for_each_tile(shape.n_out, kvol, [&](int64_t row_begin, int64_t n_rows, TileWorkspace& ws) {
    TilePairs pairs;
    const bool valid = source.tile(row_begin, n_rows, ws, false, pairs);
    scalar_t* acc = out + row_begin * c_out;
    std::fill(acc, acc + n_rows * c_out, scalar_t(0));
    for (int64_t k = 0; k < kvol; ++k)
      for (int64_t j = pairs.start[k]; j < pairs.start[k] + pairs.count[k]; ++j) {
        const scalar_t* x = feats + int64_t(pairs.inputs[j]) * c_in;
        scalar_t* a = acc + int64_t(pairs.rows[j]) * c_out;
        for (int64_t ci = 0; ci < c_in; ++ci) {
          const scalar_t xv = x[ci];
          const scalar_t* w = weight + (k * c_in + ci) * c_out;
          for (int64_t co = 0; co < c_out; ++co) a[co] += xv * w[co];
        }
      }
    epilogue.apply(acc, c_out, row_begin, n_rows, c_out, out);
    return valid;
  });
}

bool conv_avx2(const float* feats, const float* weight, const PairSource& source, const Shape& shape,
               const Epilogue<float>& epilogue, float* out) {
  const int64_t kvol = shape.kvol, c_in = shape.c_in, c_out = shape.c_out;
  std::vector<float> packed(packed_weight_numel(kvol, c_in, c_out));
  pack_weight_avx2(weight, kvol, c_in, c_out, packed.data());
  // The kernel writes whole 8-column vectors: with C_out a multiple of 8 it accumulates in the
  // output itself, otherwise in a padded tile copied out.
  const int64_t c_out_pad = (c_out + 7) / 8 * 8;
  const bool in_place = c_out_pad == c_out;
  return for_each_tile(shape.n_out, kvol, [&](int64_t row_begin, int64_t n_rows, TileWorkspace& ws) {
    TilePairs pairs;
    const bool valid = source.tile(row_begin, n_rows, ws, true, pairs);
    float* acc = in_place ? out + row_begin * c_out : ws.padded_tile(c_out_pad);
    std::fill(acc, acc + n_rows * c_out_pad, 0.f);
    conv_tile_avx2(feats, packed.data(), kvol, c_in, c_out, pairs, acc, c_out_pad);
    apply_epilogue_avx2(epilogue, acc, c_out_pad, row_begin, n_rows, c_out, out);
    return valid;
  });
}

// The AVX-512 kernel masks each row's last vector: it accumulates in the output rows themselves.
bool conv_avx512(const float* feats, const float* weight, const PairSource& source, const Shape& shape,
                 const Epilogue<float>& epilogue, float* out) {
  const int64_t kvol = shape.kvol, c_in = shape.c_in, c_out = shape.c_out;
  std::vector<float> packed(packed_weight_numel_avx512(kvol, c_in, c_out));
  pack_weight_avx512(weight, kvol, c_in, c_out, packed.data());
  return for_each_tile(shape.n_out, kvol, [&](int64_t row_begin, int64_t n_rows, TileWorkspace& ws) {
    TilePairs pairs;
    const bool valid = source.tile(row_begin, n_rows, ws, true, pairs);
    float* acc = out + row_begin * c_out;
    std::fill(acc, acc + n_rows * c_out, 0.f);
    conv_tile_avx512(feats, packed.data(), kvol, c_in, c_out, pairs, acc, c_out);
    apply_epilogue_avx2(epilogue, acc, c_out, row_begin, n_rows, c_out, out);
    return valid;
  });
}

}  // namespace

CpuPath best_cpu_path() {
  // AVX-512 machines all have AVX2 (the AVX-512 path compacts its tiles with the AVX2 code).
  if (cpu_has_avx512f() && cpu_has_avx2_fma()) return CpuPath::kAvx512;
  return cpu_has_avx2_fma() ? CpuPath::kAvx2 : CpuPath::kPortable;
}

const char* cpu_path_name(CpuPath path) {
  switch (path) {
    case CpuPath::kAvx512: return "avx512";
    case CpuPath::kAvx2: return "avx2";
    default: return "portable";
  }
}

// AVX-512 at 8 or fewer output columns would leave half of each 16-wide vector padding: on the
// real scan (3x3x3, 8 -> 8) the AVX2 kernel took 2.4-2.6 ms against 2.7-3.1; at 16 the two tie
// (0.97-1.04x), from 32 columns up AVX-512 is 1.3-1.56x faster (benchmarks/bench_cpu_paths.py).
CpuPath preferred_cpu_path(int64_t c_out) {
  const CpuPath best = best_cpu_path();
  return best == CpuPath::kAvx512 && c_out <= 8 ? CpuPath::kAvx2 : best;
}

CpuPath cpu_path_named(const std::string& name) {
  for (CpuPath path : {CpuPath::kPortable, CpuPath::kAvx2, CpuPath::kAvx512}) {
    if (name != cpu_path_name(path)) continue;
    TORCH_CHECK(path <= best_cpu_path(), "this CPU has no ", name, " path (its best is ",
                cpu_path_name(best_cpu_path()), ")");
    return path;
  }
  TORCH_CHECK(false, "unknown CPU path '", name, "'; expected portable, avx2 or avx512");
}

namespace {

template <typename scalar_t>
bool run_conv(const scalar_t* feats, const scalar_t* weight, const PairSource& source, const Shape& shape,
              const Epilogue<scalar_t>& epilogue, scalar_t* out, CpuPath /*path*/) {
  return conv_portable(feats, weight, source, shape, epilogue, out);
}

bool run_conv(const float* feats, const float* weight, const PairSource& source, const Shape& shape,
              const Epilogue<float>& epilogue, float* out, CpuPath path) {
  switch (path) {
    case CpuPath::kAvx512: return conv_avx512(feats, weight, source, shape, epilogue, out);
    case CpuPath::kAvx2: return conv_avx2(feats, weight, source, shape, epilogue, out);
    default: return conv_portable(feats, weight, source, shape, epilogue, out);
  }
}

at::Tensor conv_with_epilogue(const at::Tensor& feats_in, const at::Tensor& weight_in, const at::Tensor& nbr_in,
                              const c10::optional<at::Tensor>& bias_in, const c10::optional<at::Tensor>& residual_in,
                              bool relu, const TileListArgs& tiles, CpuPath path, const char* op) {
  check_float_matrix(feats_in, op, "feats", "[N_in, C_in]");
  check_conv_operands(feats_in, weight_in, nbr_in, op);
  const at::Tensor feats = feats_in.contiguous(), weight = weight_in.contiguous(), nbr = nbr_in.contiguous();
  const Shape shape{feats.size(0), nbr.size(0), nbr.size(1), weight.size(1), weight.size(2)};
  const at::Tensor bias = checked_bias(bias_in, op, feats.scalar_type(), shape.c_out);
  const at::Tensor residual = checked_residual(residual_in, op, feats.scalar_type(), shape.n_out, shape.c_out);
  TileLists lists;
  const PairSource source{nbr.data_ptr<int32_t>(), shape.kvol, shape.n_in,
                          given_tile_lists(tiles, nbr, shape.n_in, op, lists)};
  at::Tensor out = at::empty({shape.n_out, shape.c_out}, feats.options());
  bool valid;
  AT_DISPATCH_FLOATING_TYPES(feats.scalar_type(), "conv_fused_cpu", [&] {
    const Epilogue<scalar_t> epilogue{bias.defined() ? bias.data_ptr<scalar_t>() : nullptr,
                                      residual.defined() ? residual.data_ptr<scalar_t>() : nullptr, relu};
    valid = run_conv(feats.data_ptr<scalar_t>(), weight.data_ptr<scalar_t>(), source, shape, epilogue,
                     out.data_ptr<scalar_t>(), path);
  });
  TORCH_CHECK(valid, op, ": nbr holds a row index >= the number of feats rows (", shape.n_in, ")");
  return out;
}

}  // namespace

at::Tensor conv_fused_path(const at::Tensor& feats, const at::Tensor& weight, const at::Tensor& nbr, CpuPath path,
                           const TileListArgs& tiles) {
  return conv_with_epilogue(feats, weight, nbr, c10::nullopt, c10::nullopt, false, tiles, path, "conv_fused");
}

at::Tensor conv_fused_epilogue_path(const at::Tensor& feats, const at::Tensor& weight, const at::Tensor& nbr,
                                    const c10::optional<at::Tensor>& bias, const c10::optional<at::Tensor>& residual,
                                    bool relu, CpuPath path, const TileListArgs& tiles) {
  return conv_with_epilogue(feats, weight, nbr, bias, residual, relu, tiles, path, "conv_fused_epilogue");
}

const char* conv_fused_isa() { return cpu_path_name(best_cpu_path()); }

namespace {

at::Tensor conv_fused_cpu(const at::Tensor& feats, const at::Tensor& weight, const at::Tensor& nbr,
                          const c10::optional<at::Tensor>& tile_pairs, const c10::optional<at::Tensor>& tile_ptr) {
  return conv_fused_path(feats, weight, nbr, preferred_cpu_path(weight.dim() == 3 ? weight.size(2) : 0),
                         {tile_pairs, tile_ptr});
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
  return conv_fused_cpu(feats, weight, nbr, c10::nullopt, c10::nullopt);
}

at::Tensor conv_fused_epilogue_cpu(const at::Tensor& feats, const at::Tensor& weight, const at::Tensor& nbr,
                                   const c10::optional<at::Tensor>& bias, const c10::optional<at::Tensor>& residual,
                                   bool relu, const c10::optional<at::Tensor>& tile_pairs,
                                   const c10::optional<at::Tensor>& tile_ptr) {
  return conv_fused_epilogue_path(feats, weight, nbr, bias, residual, relu,
                                  preferred_cpu_path(weight.dim() == 3 ? weight.size(2) : 0), {tile_pairs, tile_ptr});
}

}  // namespace

TORCH_LIBRARY_IMPL(pointengine, CPU, m) {
  m.impl("conv_fused", &conv_fused_cpu);
  m.impl("conv_implicit_gemm", &conv_implicit_gemm_cpu);
  m.impl("conv_fused_epilogue", &conv_fused_epilogue_cpu);
}

}  // namespace pointengine
