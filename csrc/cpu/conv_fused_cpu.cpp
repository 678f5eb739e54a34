// Output-stationary fused sparse convolution: out[o] = sum_k feats[nbr[o, k]] @ weight[k].
// Outputs are processed in blocks of rows whose accumulators stay in cache; for each offset the
// block's present neighbours are compacted, multiplied and added back. Every output row sums its
// terms in the same order (offset, then input channel) whatever the thread count: no atomics,
// bitwise reproducible.
#include <ATen/Dispatch.h>
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

namespace pointengine {
namespace {

constexpr int64_t kBlockRows = 64;

template <typename scalar_t>
void conv_block(const scalar_t* feats, const scalar_t* weight, const int32_t* nbr, int64_t kvol, int64_t c_in,
                int64_t c_out, int64_t row_begin, int64_t row_end, scalar_t* acc, int32_t* rows,
                int32_t* inputs, scalar_t* out) {
  const int64_t n_rows = row_end - row_begin;
  std::fill(acc, acc + n_rows * c_out, scalar_t(0));
  for (int64_t k = 0; k < kvol; ++k) {
    int64_t present = 0;
    for (int64_t r = 0; r < n_rows; ++r) {
      const int32_t i = nbr[(row_begin + r) * kvol + k];
      if (i >= 0) rows[present] = int32_t(r), inputs[present++] = i;
    }
    const scalar_t* w = weight + k * c_in * c_out;
    for (int64_t p = 0; p < present; ++p) {
      const scalar_t* x = feats + int64_t(inputs[p]) * c_in;
      scalar_t* a = acc + int64_t(rows[p]) * c_out;
      for (int64_t ci = 0; ci < c_in; ++ci) {
        const scalar_t xv = x[ci];
        const scalar_t* wr = w + ci * c_out;
        for (int64_t co = 0; co < c_out; ++co) a[co] += xv * wr[co];
      }
    }
  }
  std::copy(acc, acc + n_rows * c_out, out + row_begin * c_out);
}

at::Tensor conv_fused_cpu(const at::Tensor& feats_in, const at::Tensor& weight_in, const at::Tensor& nbr_in) {
  const at::Tensor feats = feats_in.contiguous(), weight = weight_in.contiguous(), nbr = nbr_in.contiguous();
  const int64_t n_out = nbr.size(0), kvol = nbr.size(1), c_in = weight.size(1), c_out = weight.size(2);
  at::Tensor out = at::empty({n_out, c_out}, feats.options());
  AT_DISPATCH_FLOATING_TYPES(feats.scalar_type(), "conv_fused_cpu", [&] {
    const int64_t n_blocks = (n_out + kBlockRows - 1) / kBlockRows;
    at::parallel_for(0, n_blocks, 1, [&](int64_t b_begin, int64_t b_end) {
      std::vector<scalar_t> acc(kBlockRows * c_out);
      std::vector<int32_t> rows(kBlockRows), inputs(kBlockRows);
      for (int64_t b = b_begin; b < b_end; ++b)
        conv_block<scalar_t>(feats.data_ptr<scalar_t>(), weight.data_ptr<scalar_t>(), nbr.data_ptr<int32_t>(),
                             kvol, c_in, c_out, b * kBlockRows, std::min(n_out, (b + 1) * kBlockRows),
                             acc.data(), rows.data(), inputs.data(), out.data_ptr<scalar_t>());
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(pointengine, CPU, m) { m.impl("conv_fused", &conv_fused_cpu); }

}  // namespace pointengine
