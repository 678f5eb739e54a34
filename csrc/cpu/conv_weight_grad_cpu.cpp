// Weight gradient of the fused convolution: grad_weight[k] = sum over the pairs (i, o) of offset k
// (i = nbr[o, k] >= 0) of feats[i]^T grad_out[o], a [C_in, C_out] block per offset.
// The work is split into tasks of one offset and one panel of kGradPanel output columns; a task owns
// its block of the result and sums the offset's pairs in ascending output row, so every element is
// summed by one thread in one order: no atomics, the same bits for any thread count. float32 runs
// the AVX-512 or AVX2 + FMA kernel (the same bits) when the CPU has one, any other case the portable
// loop below; the vector and portable paths round differently (fused multiply-add), each is deterministic.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <numeric>
#include <vector>

#include "../common/checks.h"
#include "conv_tile.h"
#include "conv_weight_grad_cpu.h"
#include "kernel_pairs_cpu.h"

namespace pointengine {
namespace {

struct Pairs {
  const int32_t* in_rows;
  const int32_t* out_rows;
  const int64_t* ptr;
};

struct Shape {
  int64_t kvol, c_in, c_out;
};

// fn(k, col) for every offset k and panel start col, in parallel: the tasks largest first (by their
// offset's pairs), each thread taking the next one not yet taken. A static split of the offsets in
// order gave one of two threads the centre offset (a pair for every output row, a quarter of all the
// pairs of a 3x3x3 map) and half of the others besides. Which thread runs a task does not change its
// result.
template <typename TaskFn>
void for_each_panel(const Shape& shape, const int64_t* ptr, const TaskFn& fn) {
  const int64_t panels = (shape.c_out + kGradPanel - 1) / kGradPanel, n_tasks = shape.kvol * panels;
  std::vector<int64_t> order(n_tasks);
  std::iota(order.begin(), order.end(), int64_t(0));
  const auto pairs_of = [&](int64_t t) { return ptr[t / panels + 1] - ptr[t / panels]; };
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return pairs_of(a) > pairs_of(b); });
  std::atomic<int64_t> next{0};
  at::parallel_for(0, at::get_num_threads(), 1, [&](int64_t, int64_t) {
    for (int64_t i = next++; i < n_tasks; i = next++) fn(order[i] / panels, order[i] % panels * kGradPanel);
  });
}

template <typename scalar_t>
void weight_grad_portable(const scalar_t* feats, const scalar_t* grad, Pairs pairs, const Shape& shape,
                          scalar_t* out) {
  const int64_t c_in = shape.c_in, c_out = shape.c_out;
  for_each_panel(shape, pairs.ptr, [&](int64_t k, int64_t col) {
    const int64_t col_end = std::min(c_out, col + kGradPanel);
    scalar_t* acc = out + k * c_in * c_out;
    for (int64_t ci = 0; ci < c_in; ++ci) std::fill(acc + ci * c_out + col, acc + ci * c_out + col_end, scalar_t(0));
    for (int64_t p = pairs.ptr[k]; p < pairs.ptr[k + 1]; ++p) {
      const scalar_t* x = feats + int64_t(pairs.in_rows[p]) * c_in;
      const scalar_t* g = grad + int64_t(pairs.out_rows[p]) * c_out;
      for (int64_t ci = 0; ci < c_in; ++ci) {
        const scalar_t xv = x[ci];
        scalar_t* a = acc + ci * c_out;
        for (int64_t co = col; co < col_end; ++co) a[co] += xv * g[co];
      }
    }
  });
}

using PanelFn = void (*)(const float*, int64_t, const float*, int64_t, const int32_t*, const int32_t*, int64_t,
                        int64_t, int64_t, float*);

// panel: weight_grad_panel_avx2 or weight_grad_panel_avx512.
void weight_grad_vector(const float* feats, const at::Tensor& grad_in, Pairs pairs, const Shape& shape, float* out,
                        PanelFn panel) {
  const int64_t c_in = shape.c_in, c_out = shape.c_out;
  // The kernel reads whole 8-column vectors: with C_out not a multiple of 8 it reads a zero-padded copy.
  const int64_t c_out_pad = (c_out + 7) / 8 * 8;
  const at::Tensor grad =
      c_out_pad == c_out ? grad_in : at::constant_pad_nd(grad_in, {0, c_out_pad - c_out}).contiguous();
  const float* g = grad.data_ptr<float>();
  for_each_panel(shape, pairs.ptr, [&](int64_t k, int64_t col) {
    const int64_t width = std::min(kGradPanel, c_out_pad - col), real = std::min(width, c_out - col);
    std::vector<float> acc(c_in * width, 0.f);
    panel(feats, c_in, g, c_out_pad, pairs.in_rows + pairs.ptr[k], pairs.out_rows + pairs.ptr[k],
                           pairs.ptr[k + 1] - pairs.ptr[k], col, width, acc.data());
    for (int64_t ci = 0; ci < c_in; ++ci)
      std::copy(acc.data() + ci * width, acc.data() + ci * width + real, out + (k * c_in + ci) * c_out + col);
  });
}

int64_t count_rows_past(const int32_t* rows, int64_t n, int64_t limit) {
  return at::parallel_reduce(0, n, 1 << 16, int64_t(0), [&](int64_t b, int64_t e, int64_t bad) {
    for (int64_t p = b; p < e; ++p) bad += rows[p] >= limit;
    return bad;
  }, std::plus<int64_t>());
}

}  // namespace

at::Tensor conv_weight_grad_path(const at::Tensor& feats_in, const at::Tensor& grad_in, const at::Tensor& nbr_in,
                                 CpuPath path) {
  constexpr const char* op = "conv_weight_grad";
  check_float_matrix(feats_in, op, "feats", "[N_in, C_in]");
  check_matrix(grad_in, op, "grad_out", feats_in.scalar_type(), -1, "[N_out, C_out]");
  check_matrix(nbr_in, op, "nbr", at::kInt, -1, "[N_out, K]");
  check_row_count(feats_in.size(0), op, "feats");
  TORCH_CHECK(grad_in.size(0) == nbr_in.size(0), op, ": grad_out must have one row per nbr row (", nbr_in.size(0),
              "), got ", grad_in.sizes());
  const at::Tensor feats = feats_in.contiguous(), grad = grad_in.contiguous();
  const auto [in_rows, out_rows, ptr] = kernel_pairs_cpu(nbr_in);
  const Pairs pairs{in_rows.data_ptr<int32_t>(), out_rows.data_ptr<int32_t>(), ptr.data_ptr<int64_t>()};
  TORCH_CHECK(count_rows_past(pairs.in_rows, in_rows.numel(), feats.size(0)) == 0, op,
              ": nbr holds a row index >= the number of feats rows (", feats.size(0), ")");
  const Shape shape{nbr_in.size(1), feats.size(1), grad.size(1)};
  at::Tensor out = at::empty({shape.kvol, shape.c_in, shape.c_out}, feats.options());
  if (feats.scalar_type() == at::kFloat && path != CpuPath::kPortable) {
    weight_grad_vector(feats.data_ptr<float>(), grad, pairs, shape, out.data_ptr<float>(),
                       path == CpuPath::kAvx512 ? &weight_grad_panel_avx512 : &weight_grad_panel_avx2);
  } else {
    AT_DISPATCH_FLOATING_TYPES(feats.scalar_type(), "conv_weight_grad_cpu", [&] {
      weight_grad_portable<scalar_t>(feats.data_ptr<scalar_t>(), grad.data_ptr<scalar_t>(), pairs, shape,
                                     out.data_ptr<scalar_t>());
    });
  }
  return out;
}

namespace {

at::Tensor conv_weight_grad_cpu(const at::Tensor& feats, const at::Tensor& grad_out, const at::Tensor& nbr) {
  return conv_weight_grad_path(feats, grad_out, nbr, preferred_cpu_path(grad_out.dim() == 2 ? grad_out.size(1) : 0));
}

}  // namespace

TORCH_LIBRARY_IMPL(pointengine, CPU, m) { m.impl("conv_weight_grad", &conv_weight_grad_cpu); }

}  // namespace pointengine
