// Weight gradient of the fused convolution: grad_weight[k] = sum over the pairs (i, o) of offset k
// (i = nbr[o, k] >= 0) of feats[i]^T grad_out[o], a [C_in, C_out] block per offset. conv_weight_grad
// reads the neighbour table, conv_weight_grad_pairs its pair lists (kernel_pairs), which the layers
// sharing a kernel map build once.
// The work is split into tasks of one offset; a task owns its block of the result and sums the
// offset's pairs in ascending output row (the vector kernels in chunks copied into an order they read
// straight through), so every element is summed by one thread in one order: no atomics, the same bits
// for any thread count. float32 runs the AVX-512 or AVX2 + FMA kernel (the same bits) when the CPU has
// one, any other case the portable loop below; the vector and portable paths round differently (fused
// multiply-add), each is deterministic.
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

// fn(k) for every offset k, in parallel: the offsets largest first (by their pairs), each thread
// taking the next one not yet taken. A static split of the offsets in order gave one of two threads
// the centre offset (a pair for every output row, a quarter of all the pairs of a 3x3x3 map) and half
// of the others besides. Which thread runs an offset does not change its result.
template <typename TaskFn>
void for_each_offset(const Shape& shape, const int64_t* ptr, const TaskFn& fn) {
  std::vector<int64_t> order(shape.kvol);
  std::iota(order.begin(), order.end(), int64_t(0));
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return ptr[a + 1] - ptr[a] > ptr[b + 1] - ptr[b]; });
  std::atomic<int64_t> next{0};
  at::parallel_for(0, at::get_num_threads(), 1, [&](int64_t, int64_t) {
    for (int64_t i = next++; i < shape.kvol; i = next++) fn(order[i]);
  });
}

template <typename scalar_t>
void weight_grad_portable(const scalar_t* feats, const scalar_t* grad, Pairs pairs, const Shape& shape,
                          scalar_t* out) {
  const int64_t c_in = shape.c_in, c_out = shape.c_out;
  for_each_offset(shape, pairs.ptr, [&](int64_t k) {
    scalar_t* acc = out + k * c_in * c_out;
    std::fill(acc, acc + c_in * c_out, scalar_t(0));
    for (int64_t p = pairs.ptr[k]; p < pairs.ptr[k + 1]; ++p) {
      const scalar_t* x = feats + int64_t(pairs.in_rows[p]) * c_in;
      const scalar_t* g = grad + int64_t(pairs.out_rows[p]) * c_out;
      for (int64_t ci = 0; ci < c_in; ++ci) {
        const scalar_t xv = x[ci];
        scalar_t* a = acc + ci * c_out;
        for (int64_t co = 0; co < c_out; ++co) a[co] += xv * g[co];
      }
    }
  });
}

using OffsetFn = void (*)(const float*, int64_t, const float*, int64_t, const int32_t*, const int32_t*, int64_t,
                         float*, float*, float*);

// offset_fn: weight_grad_offset_avx2 or weight_grad_offset_avx512.
void weight_grad_vector(const float* feats, const float* grad, Pairs pairs, const Shape& shape, float* out,
                        OffsetFn offset_fn) {
  const int64_t c_in = shape.c_in, c_out = shape.c_out;
  const int64_t width = (c_out + kGradPanel - 1) / kGradPanel * kGradPanel;
  for_each_offset(shape, pairs.ptr, [&](int64_t k) {
    std::vector<float> acc(c_in * width, 0.f), xs(kGradChunkPairs * grad_packed_row_stride(c_in)),
        g(kGradChunkPairs * width);
    offset_fn(feats, c_in, grad, c_out, pairs.in_rows + pairs.ptr[k], pairs.out_rows + pairs.ptr[k],
              pairs.ptr[k + 1] - pairs.ptr[k], acc.data(), xs.data(), g.data());
    for (int64_t ci = 0; ci < c_in; ++ci)
      std::copy(acc.data() + ci * width, acc.data() + ci * width + c_out, out + (k * c_in + ci) * c_out);
  });
}

int64_t count_rows_outside(const int32_t* rows, int64_t n, int64_t limit) {
  return at::parallel_reduce(0, n, 1 << 16, int64_t(0), [&](int64_t b, int64_t e, int64_t bad) {
    for (int64_t p = b; p < e; ++p) bad += rows[p] < 0 || rows[p] >= limit;
    return bad;
  }, std::plus<int64_t>());
}

}  // namespace

at::Tensor conv_weight_grad_pairs_path(const at::Tensor& feats_in, const at::Tensor& grad_in, const at::Tensor& in_rows,
                                       const at::Tensor& out_rows, const at::Tensor& ptr_in, CpuPath path) {
  constexpr const char* op = "conv_weight_grad";
  check_float_matrix(feats_in, op, "feats", "[N_in, C_in]");
  check_matrix(grad_in, op, "grad_out", feats_in.scalar_type(), -1, "[N_out, C_out]");
  check_row_count(feats_in.size(0), op, "feats");
  check_row_count(grad_in.size(0), op, "grad_out");
  check_kernel_tensor(in_rows, op, "in_rows", at::kInt);
  check_kernel_tensor(out_rows, op, "out_rows", at::kInt);
  check_kernel_tensor(ptr_in, op, "ptr", at::kLong);
  TORCH_CHECK(in_rows.dim() == 1 && out_rows.dim() == 1 && in_rows.size(0) == out_rows.size(0), op,
              ": in_rows and out_rows must be vectors of one length, got ", in_rows.sizes(), " and ", out_rows.sizes());
  TORCH_CHECK(ptr_in.dim() == 1 && ptr_in.size(0) >= 1, op, ": ptr must be a vector of K + 1 >= 1 entries, got ",
              ptr_in.sizes());
  const at::Tensor feats = feats_in.contiguous(), grad = grad_in.contiguous(), ptr = ptr_in.contiguous();
  const at::Tensor in_c = in_rows.contiguous(), out_c = out_rows.contiguous();
  const int64_t kvol = ptr.size(0) - 1, n_pairs = in_c.size(0);
  const int64_t* p = ptr.data_ptr<int64_t>();
  bool ordered = p[0] == 0 && p[kvol] == n_pairs;
  for (int64_t k = 0; k < kvol; ++k) ordered = ordered && p[k] <= p[k + 1];
  TORCH_CHECK(ordered, op, ": ptr must rise from 0 to the number of pairs (", n_pairs, ")");
  const Pairs pairs{in_c.data_ptr<int32_t>(), out_c.data_ptr<int32_t>(), p};
  TORCH_CHECK(count_rows_outside(pairs.in_rows, n_pairs, feats.size(0)) == 0, op,
              ": in_rows holds a row outside [0, ", feats.size(0), ") (the feats rows)");
  TORCH_CHECK(count_rows_outside(pairs.out_rows, n_pairs, grad.size(0)) == 0, op,
              ": out_rows holds a row outside [0, ", grad.size(0), ") (the grad_out rows)");
  const Shape shape{kvol, feats.size(1), grad.size(1)};
  at::Tensor out = at::empty({shape.kvol, shape.c_in, shape.c_out}, feats.options());
  if (feats.scalar_type() == at::kFloat && path != CpuPath::kPortable) {
    weight_grad_vector(feats.data_ptr<float>(), grad.data_ptr<float>(), pairs, shape, out.data_ptr<float>(),
                       path == CpuPath::kAvx512 ? &weight_grad_offset_avx512 : &weight_grad_offset_avx2);
  } else {
    AT_DISPATCH_FLOATING_TYPES(feats.scalar_type(), "conv_weight_grad_cpu", [&] {
      weight_grad_portable<scalar_t>(feats.data_ptr<scalar_t>(), grad.data_ptr<scalar_t>(), pairs, shape,
                                     out.data_ptr<scalar_t>());
    });
  }
  return out;
}

at::Tensor conv_weight_grad_path(const at::Tensor& feats, const at::Tensor& grad_out, const at::Tensor& nbr,
                                 CpuPath path) {
  constexpr const char* op = "conv_weight_grad";
  check_float_matrix(feats, op, "feats", "[N_in, C_in]");
  check_matrix(grad_out, op, "grad_out", feats.scalar_type(), -1, "[N_out, C_out]");
  check_matrix(nbr, op, "nbr", at::kInt, -1, "[N_out, K]");
  TORCH_CHECK(grad_out.size(0) == nbr.size(0), op, ": grad_out must have one row per nbr row (", nbr.size(0),
              "), got ", grad_out.sizes());
  const auto [in_rows, out_rows, ptr] = kernel_pairs_cpu(nbr);
  TORCH_CHECK(count_rows_outside(in_rows.data_ptr<int32_t>(), in_rows.numel(), feats.size(0)) == 0, op,
              ": nbr holds a row index >= the number of feats rows (", feats.size(0), ")");
  return conv_weight_grad_pairs_path(feats, grad_out, in_rows, out_rows, ptr, path);
}

namespace {

CpuPath weight_grad_cpu_path(const at::Tensor& grad_out) {
  return preferred_cpu_path(grad_out.dim() == 2 ? grad_out.size(1) : 0);
}

at::Tensor conv_weight_grad_cpu(const at::Tensor& feats, const at::Tensor& grad_out, const at::Tensor& nbr) {
  return conv_weight_grad_path(feats, grad_out, nbr, weight_grad_cpu_path(grad_out));
}

at::Tensor conv_weight_grad_pairs_cpu(const at::Tensor& feats, const at::Tensor& grad_out, const at::Tensor& in_rows,
                                      const at::Tensor& out_rows, const at::Tensor& ptr) {
  return conv_weight_grad_pairs_path(feats, grad_out, in_rows, out_rows, ptr, weight_grad_cpu_path(grad_out));
}

}  // namespace

TORCH_LIBRARY_IMPL(pointengine, CPU, m) {
  m.impl("conv_weight_grad", &conv_weight_grad_cpu);
  m.impl("conv_weight_grad_pairs", &conv_weight_grad_pairs_cpu);
}

}  // namespace pointengine
