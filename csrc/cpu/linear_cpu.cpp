// Dense product out = input @ weight^T + bias (torch.nn.functional.linear) whose bits do not depend
// on the thread count. torch's BLAS splits the reduction over input channels differently for
// different thread counts, so its float results change with them; here every output element starts
// from its bias and adds the input channels in ascending order, whichever tile or thread computes
// it. It is the conv_fused tile kernel with one offset and each tile row reading its own input row.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "../common/checks.h"
#include "conv_tile.h"
#include "linear_cpu.h"
#include "tile_loop.h"

namespace pointengine {
namespace {

// Rows of acc (stride columns) set to the bias, or to zero without one.
template <typename scalar_t>
void start_rows(scalar_t* acc, int64_t n_rows, int64_t stride, const scalar_t* bias, int64_t c_out) {
  for (int64_t r = 0; r < n_rows; ++r) {
    scalar_t* a = acc + r * stride;
    std::fill(a, a + stride, scalar_t(0));
    if (bias) std::copy(bias, bias + c_out, a);
  }
}

// weight_t is [C_in, C_out] contiguous. Rows are independent: any split gives the same bits.
template <typename scalar_t>
void linear_portable(const scalar_t* input, const scalar_t* weight_t, const scalar_t* bias, int64_t n, int64_t c_in,
                     int64_t c_out, scalar_t* out) {
  at::parallel_for(0, n, 256, [&](int64_t begin, int64_t end) {
    start_rows(out + begin * c_out, end - begin, c_out, bias, c_out);
    for (int64_t r = begin; r < end; ++r) {
      const scalar_t* x = input + r * c_in;
      scalar_t* a = out + r * c_out;
      for (int64_t ci = 0; ci < c_in; ++ci) {
        const scalar_t xv = x[ci];
        const scalar_t* w = weight_t + ci * c_out;
        for (int64_t co = 0; co < c_out; ++co) a[co] += xv * w[co];
      }
    }
  });
}

void linear_avx2(const float* input, const float* weight_t, const float* bias, int64_t n, int64_t c_in, int64_t c_out,
                 float* out) {
  std::vector<float> packed(packed_weight_numel(1, c_in, c_out));
  pack_weight_avx2(weight_t, 1, c_in, c_out, packed.data());
  const int64_t c_out_pad = (c_out + 7) / 8 * 8;
  const bool in_place = c_out_pad == c_out;
  for_each_tile(n, 1, [&](int64_t row_begin, int64_t n_rows, TileWorkspace& ws) {
    TilePairs pairs = ws.pairs();
    pairs.count[0] = int32_t(n_rows);
    for (int64_t r = 0; r < n_rows; ++r) pairs.rows[r] = int32_t(r), pairs.inputs[r] = int32_t(row_begin + r);
    float* acc = in_place ? out + row_begin * c_out : ws.padded_tile(c_out_pad);
    start_rows(acc, n_rows, c_out_pad, bias, c_out);
    conv_tile_avx2(input, packed.data(), 1, c_in, c_out, pairs, acc, c_out_pad);
    if (!in_place)
      for (int64_t r = 0; r < n_rows; ++r)
        std::copy(acc + r * c_out_pad, acc + r * c_out_pad + c_out, out + (row_begin + r) * c_out);
    return true;
  });
}

}  // namespace

at::Tensor linear_path(const at::Tensor& input_in, const at::Tensor& weight_in, const c10::optional<at::Tensor>& bias_in,
                       bool allow_avx2) {
  constexpr const char* op = "linear";
  check_float_matrix(input_in, op, "input", "[N, in_features]");
  check_row_count(input_in.size(0), op, "input");
  check_matrix(weight_in, op, "weight", input_in.scalar_type(), -1, "[out_features, in_features]");
  TORCH_CHECK(weight_in.size(1) == input_in.size(1), "linear: weight must have shape [out_features, ",
              input_in.size(1), "] (in_features of input ", input_in.sizes(), "), got ", weight_in.sizes());
  const int64_t n = input_in.size(0), c_in = input_in.size(1), c_out = weight_in.size(0);
  const bool has_bias = bias_in.has_value() && bias_in->defined();
  if (has_bias) {
    check_kernel_tensor(*bias_in, op, "bias", input_in.scalar_type());
    TORCH_CHECK(bias_in->dim() == 1 && bias_in->size(0) == c_out, "linear: bias must have shape [", c_out,
                "] (out_features), got ", bias_in->sizes());
  }
  const at::Tensor input = input_in.contiguous(), weight_t = weight_in.t().contiguous();
  const at::Tensor bias = has_bias ? bias_in->contiguous() : at::Tensor();
  at::Tensor out = at::empty({n, c_out}, input.options());
  if (allow_avx2 && input.scalar_type() == at::kFloat && cpu_has_avx2_fma()) {
    linear_avx2(input.data_ptr<float>(), weight_t.data_ptr<float>(), has_bias ? bias.data_ptr<float>() : nullptr, n,
                c_in, c_out, out.data_ptr<float>());
    return out;
  }
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "linear_cpu", [&] {
    linear_portable<scalar_t>(input.data_ptr<scalar_t>(), weight_t.data_ptr<scalar_t>(),
                              has_bias ? bias.data_ptr<scalar_t>() : nullptr, n, c_in, c_out,
                              out.data_ptr<scalar_t>());
  });
  return out;
}

namespace {

at::Tensor linear_cpu(const at::Tensor& input, const at::Tensor& weight, const c10::optional<at::Tensor>& bias) {
  return linear_path(input, weight, bias, /*allow_avx2=*/true);
}

}  // namespace

TORCH_LIBRARY_IMPL(pointengine, CPU, m) { m.impl("linear", &linear_cpu); }

}  // namespace pointengine
