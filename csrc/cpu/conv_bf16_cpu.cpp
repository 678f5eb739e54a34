// bfloat16 fused sparse convolution for inference: out = relu?(sum_k feats[nbr[:, k]] @ weight[k] + bias
// + residual), the products summed in float32 exactly as vdpbf16ps sums them (conv_tile_bf16.h; the AMX
// path as tdpbf16ps does), the epilogue in float32, the result float32 or rounded to bfloat16 (nearest even).
// The tile structure of conv_fused_cpu.cpp: fixed tiles of output rows, each summing its terms in
// one order (offset, then input-channel pair) whatever thread computes it, so the result is bitwise
// the same for any thread count, and the same on the portable and AVX512_BF16 paths (AMX rounds its
// own way).
#include <ATen/ATen.h>
#include <torch/library.h>

#include <vector>

#include "../common/checks.h"
#include "conv_bf16_cpu.h"
#include "conv_epilogue.h"
#include "conv_tile_bf16.h"
#include "tile_loop.h"

namespace pointengine {
namespace {

struct Shape {
  int64_t n_in, n_out, kvol, c_in, c_out;
};

// Where a tile's float32 sums go: the float32 output rows themselves, or (bf16_out) the workspace
// tile, C_out columns a row, then rounded into the bfloat16 output by the epilogue.
struct Output {
  float* f32 = nullptr;
  c10::BFloat16* bf16 = nullptr;
  int64_t c_out;

  float* accumulators(int64_t row_begin, TileWorkspace& ws) const {
    return f32 ? f32 + row_begin * c_out : ws.padded_tile(c_out);
  }
  void finish(const Epilogue<float>& epilogue, const float* acc, int64_t row_begin, int64_t n_rows) const {
    if (f32) epilogue.apply(acc, c_out, row_begin, n_rows, c_out, f32);
    else epilogue.apply(acc, c_out, row_begin, n_rows, c_out, bf16);
  }
  void finish_avx2(const Epilogue<float>& epilogue, const float* acc, int64_t row_begin, int64_t n_rows) const {
    if (f32) apply_epilogue_avx2(epilogue, acc, c_out, row_begin, n_rows, c_out, f32);
    else apply_epilogue_avx2(epilogue, acc, c_out, row_begin, n_rows, c_out, bf16);
  }
};

// Each returns false when the table names a row past the inputs.
bool conv_portable(const uint16_t* feats, const uint16_t* weight, const PairSource& source, const Shape& shape,
                   const Epilogue<float>& epilogue, const Output& out) {
  const int64_t kvol = shape.kvol, c_in = shape.c_in, c_out = shape.c_out, n_pairs = (c_in + 1) / 2;
  // The weight as float32 (denormals read as zero), with the zero channel that pads an odd C_in.
  std::vector<float> w(kvol * n_pairs * 2 * c_out, 0.f);
  for (int64_t k = 0; k < kvol; ++k)
    for (int64_t i = 0; i < c_in * c_out; ++i)
      w[k * n_pairs * 2 * c_out + i] = bf16_value(weight[k * c_in * c_out + i]);
  return for_each_tile(shape.n_out, kvol, [&](int64_t row_begin, int64_t n_rows, TileWorkspace& ws) {
    TilePairs pairs;
    const bool valid = source.tile(row_begin, n_rows, ws, false, pairs);
    float* acc = out.accumulators(row_begin, ws);
    std::fill(acc, acc + n_rows * c_out, 0.f);
    for (int64_t k = 0; k < kvol; ++k)
      for (int64_t j = pairs.start[k]; j < pairs.start[k] + pairs.count[k]; ++j) {
        const uint16_t* x = feats + int64_t(pairs.inputs[j]) * c_in;
        float* a = acc + int64_t(pairs.rows[j]) * c_out;
        for (int64_t p = 0; p < n_pairs; ++p) {
          const float x_lo = bf16_value(x[2 * p]), x_hi = 2 * p + 1 < c_in ? bf16_value(x[2 * p + 1]) : 0.f;
          const float* w_lo = w.data() + (k * n_pairs + p) * 2 * c_out;
          const float* w_hi = w_lo + c_out;
          for (int64_t co = 0; co < c_out; ++co) a[co] = dot_pair(a[co], x_lo, x_hi, w_lo[co], w_hi[co]);
        }
      }
    out.finish(epilogue, acc, row_begin, n_rows);
    return valid;
  });
}

bool conv_vector(const uint16_t* feats, const uint16_t* weight, const PairSource& source, const Shape& shape,
                 const Epilogue<float>& epilogue, const Output& out, bool amx) {
  const int64_t kvol = shape.kvol, c_in = shape.c_in, c_out = shape.c_out;
  std::vector<uint16_t> packed(amx ? packed_weight_numel_amx_bf16(kvol, c_in, c_out)
                                   : packed_weight_numel_bf16(kvol, c_in, c_out));
  (amx ? pack_weight_amx_bf16 : pack_weight_bf16)(weight, kvol, c_in, c_out, packed.data());
  const auto tile_kernel = amx ? conv_tile_amx_bf16 : conv_tile_avx512_bf16;
  return for_each_tile(shape.n_out, kvol, [&](int64_t row_begin, int64_t n_rows, TileWorkspace& ws) {
    TilePairs pairs;
    const bool valid = source.tile(row_begin, n_rows, ws, true, pairs);
    float* acc = out.accumulators(row_begin, ws);
    std::fill(acc, acc + n_rows * c_out, 0.f);
    tile_kernel(feats, packed.data(), kvol, c_in, c_out, pairs, acc, c_out);
    out.finish_avx2(epilogue, acc, row_begin, n_rows);
    return valid;
  });
}

const char* path_name(Bf16Path path) {
  return path == Bf16Path::kAmx ? "amx" : path == Bf16Path::kAvx512Bf16 ? "avx512_bf16" : "portable";
}

// The vector paths compact their tiles with the AVX2 code (every AVX-512 CPU has AVX2).
Bf16Path best_path() {
  if (!cpu_has_avx512_bf16() || !cpu_has_avx2_fma()) return Bf16Path::kPortable;
  return cpu_has_amx_bf16() ? Bf16Path::kAmx : Bf16Path::kAvx512Bf16;
}

constexpr Bf16Path kPaths[] = {Bf16Path::kPortable, Bf16Path::kAvx512Bf16, Bf16Path::kAmx};

}  // namespace

std::vector<std::string> bf16_paths() {
  std::vector<std::string> names;
  for (Bf16Path path : kPaths)
    if (path <= best_path()) names.push_back(path_name(path));
  return names;
}

Bf16Path bf16_path_named(const std::string& name) {
  for (Bf16Path path : kPaths) {
    if (name != path_name(path)) continue;
    TORCH_CHECK(path <= best_path(), "this CPU has no ", name, " path for conv_bf16 (its best is ",
                path_name(best_path()), ")");
    return path;
  }
  TORCH_CHECK(false, "unknown conv_bf16 path '", name, "'; expected portable, avx512_bf16 or amx");
}

at::Tensor conv_bf16_path(const at::Tensor& feats_in, const at::Tensor& weight_in, const at::Tensor& nbr_in,
                          const c10::optional<at::Tensor>& bias_in, const c10::optional<at::Tensor>& residual_in,
                          bool relu, bool bf16_out, Bf16Path path, const TileListArgs& tiles) {
  const char* op = "conv_bf16";
  check_matrix(feats_in, op, "feats", at::kBFloat16, -1, "[N_in, C_in]");
  check_conv_operands(feats_in, weight_in, nbr_in, op);
  const at::Tensor feats = feats_in.contiguous(), weight = weight_in.contiguous(), nbr = nbr_in.contiguous();
  const Shape shape{feats.size(0), nbr.size(0), nbr.size(1), weight.size(1), weight.size(2)};
  const at::Tensor bias = checked_bias(bias_in, op, at::kFloat, shape.c_out);
  const at::Tensor residual = checked_residual(residual_in, op, at::kFloat, shape.n_out, shape.c_out);
  Epilogue<float> epilogue;
  epilogue.bias = bias.defined() ? bias.data_ptr<float>() : nullptr;
  epilogue.residual = residual.defined() ? residual.data_ptr<float>() : nullptr;
  epilogue.relu = relu;
  at::Tensor out = at::empty({shape.n_out, shape.c_out}, feats.options().dtype(bf16_out ? at::kBFloat16 : at::kFloat));
  Output output;
  output.c_out = shape.c_out;
  if (bf16_out) output.bf16 = out.data_ptr<c10::BFloat16>();
  else output.f32 = out.data_ptr<float>();
  const auto* x = reinterpret_cast<const uint16_t*>(feats.data_ptr<c10::BFloat16>());
  const auto* w = reinterpret_cast<const uint16_t*>(weight.data_ptr<c10::BFloat16>());
  TileLists lists;
  const PairSource source{nbr.data_ptr<int32_t>(), shape.kvol, shape.n_in,
                          given_tile_lists(tiles, nbr, shape.n_in, op, lists)};
  const bool valid = path == Bf16Path::kPortable ? conv_portable(x, w, source, shape, epilogue, output)
                                                : conv_vector(x, w, source, shape, epilogue, output, path == Bf16Path::kAmx);
  TORCH_CHECK(valid, op, ": nbr holds a row index >= the number of feats rows (", shape.n_in, ")");
  return out;
}

namespace {

at::Tensor conv_bf16_cpu(const at::Tensor& feats, const at::Tensor& weight, const at::Tensor& nbr,
                         const c10::optional<at::Tensor>& bias, const c10::optional<at::Tensor>& residual, bool relu,
                         bool bf16_out, const c10::optional<at::Tensor>& tile_pairs,
                         const c10::optional<at::Tensor>& tile_ptr) {
  return conv_bf16_path(feats, weight, nbr, bias, residual, relu, bf16_out, best_path(), {tile_pairs, tile_ptr});
}

}  // namespace

TORCH_LIBRARY_IMPL(pointengine, CPU, m) { m.impl("conv_bf16", &conv_bf16_cpu); }

}  // namespace pointengine
