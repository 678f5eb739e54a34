// int8 x int8 -> int32 sparse convolution for inference, on the tiles of the float32 fused kernel:
//   acc[o, c] = sum over k with nbr[o, k] >= 0, over ci, of (q[nbr[o, k], ci] - in_zero) * w[k, ci, c]
// exact in int32, then one float32 epilogue (conv_int8_epilogue.cpp) into float32 or requantized
// 7-bit uint8 rows. Activations are 7-bit ([0, 127]) and weights in [-127, 127], so AVX2's
// vpmaddubsw never saturates and every path computes the same integers, hence the same bits.
// The vector paths sum q * w and subtract in_zero * (the weight's column sums of each present
// offset); the portable loop multiplies (q - in_zero) directly. Any thread count, same bits.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <cfloat>
#include <cmath>
#include <vector>

#include "../common/checks.h"
#include "conv_int8_cpu.h"
#include "conv_int8_tile.h"
#include "tile_loop.h"

namespace pointengine {
namespace {

constexpr const char* kOp = "conv_int8";

struct Int8Conv {
  const uint8_t* q;     // [n_in, c_in]
  const int8_t* weight;  // [kvol, c_in, c_out]
  PairSource pairs;      // of the table [n_out, kvol]
  int64_t n_in, n_out, kvol, c_in, c_out;
  int32_t in_zero;
  bool narrow_weights;  // every weight in [-64, 64]: the AVX2 kernel adds two groups in int16
};

bool conv_int8_portable(const Int8Conv& conv, const Int8Epilogue& epilogue, float* out_float, uint8_t* out_u7) {
  const int64_t kvol = conv.kvol, c_in = conv.c_in, c_out = conv.c_out;
  return for_each_tile(conv.n_out, kvol, [&](int64_t row_begin, int64_t n_rows, TileWorkspace& ws) {
    TilePairs pairs;
    const bool valid = conv.pairs.tile(row_begin, n_rows, ws, false, pairs);
    int32_t* acc = ws.int32_tile(c_out);
    std::fill(acc, acc + n_rows * c_out, 0);
    for (int64_t k = 0; k < kvol; ++k)
      for (int64_t j = pairs.start[k]; j < pairs.start[k] + pairs.count[k]; ++j) {
        const uint8_t* x = conv.q + int64_t(pairs.inputs[j]) * c_in;
        int32_t* a = acc + int64_t(pairs.rows[j]) * c_out;
        for (int64_t ci = 0; ci < c_in; ++ci) {
          const int32_t xv = int32_t(x[ci]) - conv.in_zero;
          const int8_t* w = conv.weight + (k * c_in + ci) * c_out;
          for (int64_t co = 0; co < c_out; ++co) a[co] += xv * int32_t(w[co]);
        }
      }
    apply_int8_epilogue(epilogue, acc, c_out, row_begin, n_rows, c_out, out_float, out_u7, Int8Path::kPortable);
    return valid;
  });
}

// in_zero * sum_ci w[k, ci, c] per offset and column ([kvol][c_pad], zero padding), what the vector
// kernels subtract once per present offset; all zero when in_zero is.
std::vector<int32_t> zero_terms(const Int8Conv& conv, int64_t c_pad) {
  std::vector<int32_t> terms(conv.kvol * c_pad, 0);
  if (conv.in_zero == 0) return terms;
  for (int64_t k = 0; k < conv.kvol; ++k)
    for (int64_t ci = 0; ci < conv.c_in; ++ci)
      for (int64_t c = 0; c < conv.c_out; ++c)
        terms[k * c_pad + c] += conv.in_zero * int32_t(conv.weight[(k * conv.c_in + ci) * conv.c_out + c]);
  return terms;
}

bool conv_int8_vector(const Int8Conv& conv, const Int8Epilogue& epilogue, Int8Path path, float* out_float,
                      uint8_t* out_u7) {
  const bool avx2 = path == Int8Path::kAvx2, amx = path == Int8Path::kAmx;
  const int64_t lanes = avx2 ? 8 : 16, kvol = conv.kvol;
  const int64_t c_pad = (conv.c_out + lanes - 1) / lanes * lanes;
  const bool narrow = avx2 && conv.narrow_weights;
  // AMX multiplies 16 groups (64 input channels) at a time: its weight has zero groups up to a multiple;
  // AVX2 with narrow weights 2 groups, and its input rows are padded alike.
  const int64_t groups = narrow ? (int8_groups(conv.c_in) + 1) / 2 * 2 : int8_groups(conv.c_in);
  const int64_t w_groups = amx ? (groups + 15) / 16 * 16 : groups;
  std::vector<int8_t> packed(kvol * w_groups * c_pad * 4);
  pack_weight_int8(conv.weight, kvol, conv.c_in, conv.c_out, w_groups, c_pad, packed.data());
  const std::vector<int32_t> zeros = zero_terms(conv, c_pad);
  // The kernels read whole groups of 4 bytes: rows of other lengths are copied with zero padding.
  at::Tensor padded;
  const uint8_t* q = conv.q;
  if (groups * 4 != conv.c_in) {
    padded = at::zeros({conv.n_in, groups * 4}, at::kByte);
    padded.narrow(1, 0, conv.c_in).copy_(at::from_blob(const_cast<uint8_t*>(q), {conv.n_in, conv.c_in}, at::kByte));
    q = padded.data_ptr<uint8_t>();
  }
  const auto kernel = amx ? conv_int8_tile_amx : conv_int8_tile_avx512_vnni;
  return for_each_tile(conv.n_out, kvol, [&](int64_t row_begin, int64_t n_rows, TileWorkspace& ws) {
    TilePairs pairs;
    const bool valid = conv.pairs.tile(row_begin, n_rows, ws, true, pairs);
    int32_t* acc = ws.int32_tile(c_pad);
    std::fill(acc, acc + n_rows * c_pad, 0);
    const OutputBytes out = out_float ? OutputBytes{reinterpret_cast<char*>(out_float + row_begin * conv.c_out),
                                                    n_rows * conv.c_out * 4}
                                      : OutputBytes{reinterpret_cast<char*>(out_u7 + row_begin * conv.c_out),
                                                    n_rows * conv.c_out};
    if (avx2)
      conv_int8_tile_avx2(q, groups * 4, packed.data(), zeros.data(), kvol, w_groups, c_pad, pairs, acc, out, narrow);
    else
      kernel(q, groups * 4, packed.data(), zeros.data(), kvol, w_groups, c_pad, pairs, acc, out);
    apply_int8_epilogue(epilogue, acc, c_pad, row_begin, n_rows, conv.c_out, out_float, out_u7, path);
    return valid;
  });
}

Int8Path best_int8_path() {
  // The AVX-512 paths compact their tiles with the AVX2 code, as the float32 one does.
  if (!cpu_has_avx2_fma()) return Int8Path::kPortable;
  if (cpu_has_amx_int8()) return Int8Path::kAmx;
  if (cpu_has_avx512_vnni()) return Int8Path::kAvx512Vnni;
  return Int8Path::kAvx2;
}

// A scale argument as the float32 the epilogue computes with: finite and > 0 after the rounding.
float check_scale(double value, const char* arg) {
  TORCH_CHECK(std::isfinite(value) && value > 0 && value <= FLT_MAX && float(value) > 0.f, kOp, ": ", arg,
              " must be a finite float32 > 0, got ", value);
  return float(value);
}

int32_t check_zero(int64_t value, const char* arg) {
  TORCH_CHECK(value >= 0 && value <= 127, kOp, ": ", arg, " must be in [0, 127] (7-bit activations), got ", value);
  return int32_t(value);
}

at::Tensor optional_float(const c10::optional<at::Tensor>& t, const char* arg, at::IntArrayRef shape,
                          const char* layout) {
  if (!t.has_value()) return {};
  check_kernel_tensor(*t, kOp, arg, at::kFloat);
  TORCH_CHECK(t->sizes() == shape, kOp, ": ", arg, " must have shape ", layout, " = ", shape, ", got ", t->sizes());
  return t->contiguous();
}

}  // namespace

int64_t int8_groups(int64_t c_in) { return (c_in + 3) / 4; }

void pack_weight_int8(const int8_t* weight, int64_t kvol, int64_t c_in, int64_t c_out, int64_t groups,
                      int64_t c_pad, int8_t* packed) {
  std::fill(packed, packed + kvol * groups * c_pad * 4, int8_t(0));
  for (int64_t k = 0; k < kvol; ++k)
    for (int64_t ci = 0; ci < c_in; ++ci)
      for (int64_t c = 0; c < c_out; ++c)
        packed[((k * groups + ci / 4) * c_pad + c) * 4 + ci % 4] = weight[(k * c_in + ci) * c_out + c];
}

std::vector<Int8Path> int8_paths() {
  std::vector<Int8Path> paths;
  for (int p = 0; p <= int(best_int8_path()); ++p) paths.push_back(Int8Path(p));
  return paths;
}

const char* int8_path_name(Int8Path path) {
  switch (path) {
    case Int8Path::kAmx: return "amx";
    case Int8Path::kAvx512Vnni: return "avx512_vnni";
    case Int8Path::kAvx2: return "avx2";
    default: return "portable";
  }
}

Int8Path int8_path_named(const std::string& name) {
  for (Int8Path path : {Int8Path::kPortable, Int8Path::kAvx2, Int8Path::kAvx512Vnni, Int8Path::kAmx}) {
    if (name != int8_path_name(path)) continue;
    TORCH_CHECK(path <= best_int8_path(), "this CPU has no ", name, " int8 path (its best is ",
                int8_path_name(best_int8_path()), ")");
    return path;
  }
  TORCH_CHECK(false, "unknown int8 path '", name, "'; expected portable, avx2, avx512_vnni or amx");
}

at::Tensor conv_int8_path(const at::Tensor& q_feats, double in_scale, int64_t in_zero, const at::Tensor& weight,
                          const at::Tensor& weight_scale, const at::Tensor& nbr, const c10::optional<at::Tensor>& bias,
                          const c10::optional<at::Tensor>& residual, bool relu, c10::optional<double> out_scale,
                          int64_t out_zero, Int8Path path, const TileListArgs& tiles) {
  check_matrix(q_feats, kOp, "q_feats", at::kByte, -1, "[N_in, C_in]");
  check_kernel_tensor(weight, kOp, "weight", at::kChar);
  check_matrix(nbr, kOp, "nbr", at::kInt, -1, "[N_out, K]");
  check_row_count(q_feats.size(0), kOp, "q_feats");
  TORCH_CHECK(weight.dim() == 3 && weight.size(0) == nbr.size(1) && weight.size(1) == q_feats.size(1), kOp,
              ": weight must have shape [K, C_in, C_out] = [", nbr.size(1), ", ", q_feats.size(1),
              ", C_out] (nbr columns, q_feats columns), got ", weight.sizes());
  const int64_t kvol = weight.size(0), c_in = weight.size(1), c_out = weight.size(2), n_out = nbr.size(0);
  TORCH_CHECK(kvol * c_in * 127 * 127 < (int64_t(1) << 31), kOp, ": K * C_in * 127 * 127 = ", kvol * c_in * 127 * 127,
              " reaches 2^31 (K = ", kvol, ", C_in = ", c_in, "): the int32 sums could overflow");
  check_kernel_tensor(weight_scale, kOp, "weight_scale", at::kFloat);
  TORCH_CHECK(weight_scale.dim() == 1 && weight_scale.size(0) == c_out, kOp, ": weight_scale must have shape [",
              c_out, "] (C_out), got ", weight_scale.sizes());
  const int32_t zero = check_zero(in_zero, "in_zero");
  const float input_scale = check_scale(in_scale, "in_scale");
  const bool requantize = out_scale.has_value();
  Int8Epilogue epilogue;
  epilogue.out_scale = requantize ? check_scale(*out_scale, "out_scale") : 0.f;
  epilogue.out_zero = check_zero(out_zero, "out_zero");
  epilogue.relu = relu;
  const at::Tensor b = optional_float(bias, "bias", {c_out}, "[C_out]");
  const at::Tensor res = optional_float(residual, "residual", {n_out, c_out}, "[N_out, C_out]");
  epilogue.bias = b.defined() ? b.data_ptr<float>() : nullptr;
  epilogue.residual = res.defined() ? res.data_ptr<float>() : nullptr;
  const at::Tensor q = q_feats.contiguous(), w = weight.contiguous(), table = nbr.contiguous();
  if (q.numel() > 0) {
    const int64_t top = q.max().item<uint8_t>();
    TORCH_CHECK(top <= 127, kOp, ": q_feats holds ", top, ", above 127: activations are 7-bit, in [0, 127]");
  }
  bool narrow = true;  // one pass over the weights for both
  if (w.numel() > 0) {
    const auto [lowest, highest] = at::aminmax(w);
    const int lo = lowest.item<int8_t>(), hi = highest.item<int8_t>();
    TORCH_CHECK(lo > -128, kOp, ": weight holds -128: weights must be in [-127, 127]");
    narrow = lo >= -64 && hi <= 64;
  }
  const at::Tensor ws = weight_scale.contiguous();
  std::vector<float> scale(c_out);
  for (int64_t c = 0; c < c_out; ++c) {
    const float s = ws.data_ptr<float>()[c];
    TORCH_CHECK(std::isfinite(s) && s > 0.f, kOp, ": weight_scale must be finite and > 0, got ", s, " at column ", c);
    scale[c] = input_scale * s;
  }
  epilogue.scale = scale.data();

  TileLists lists;
  const PairSource pairs{table.data_ptr<int32_t>(), kvol, q.size(0), given_tile_lists(tiles, table, q.size(0), kOp, lists)};
  const Int8Conv conv{q.data_ptr<uint8_t>(), w.data_ptr<int8_t>(), pairs, q.size(0), n_out, kvol, c_in, c_out, zero,
                          narrow};
  at::Tensor out = at::empty({n_out, c_out}, requantize ? at::kByte : at::kFloat);
  float* out_float = requantize ? nullptr : out.data_ptr<float>();
  uint8_t* out_u7 = requantize ? out.data_ptr<uint8_t>() : nullptr;
  const bool valid = path == Int8Path::kPortable ? conv_int8_portable(conv, epilogue, out_float, out_u7)
                                                 : conv_int8_vector(conv, epilogue, path, out_float, out_u7);
  TORCH_CHECK(valid, kOp, ": nbr holds a row index >= the number of q_feats rows (", conv.n_in, ")");
  return out;
}

namespace {

at::Tensor conv_int8_cpu(const at::Tensor& q_feats, double in_scale, int64_t in_zero, const at::Tensor& weight,
                         const at::Tensor& weight_scale, const at::Tensor& nbr, const c10::optional<at::Tensor>& bias,
                         const c10::optional<at::Tensor>& residual, bool relu, c10::optional<double> out_scale,
                         int64_t out_zero, const c10::optional<at::Tensor>& tile_pairs,
                         const c10::optional<at::Tensor>& tile_ptr) {
  // The best path at every width: unlike the float32 op's AVX-512 path, VNNI does not lose to AVX2 at 8
  // or fewer columns (on the real scan, 3x3x3, 4 -> 4 up to 32 -> 8 the two tie within 2%, both bound
  // by compacting the tiles; at 16 columns VNNI is 10-20% faster).
  return conv_int8_path(q_feats, in_scale, in_zero, weight, weight_scale, nbr, bias, residual, relu, out_scale,
                        out_zero, best_int8_path(), {tile_pairs, tile_ptr});
}

}  // namespace

TORCH_LIBRARY_IMPL(pointengine, CPU, m) { m.impl("conv_int8", &conv_int8_cpu); }

}  // namespace pointengine
