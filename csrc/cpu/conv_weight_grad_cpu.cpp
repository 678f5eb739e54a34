// Weight gradient of the fused convolution: grad_weight[k] = sum over the pairs (i, o) of offset k
// (i = nbr[o, k] >= 0) of feats[i]^T grad_out[o], a [C_in, C_out] block per offset. conv_weight_grad
// reads the neighbour table, conv_weight_grad_pairs its pair lists (kernel_pairs), which the layers
// sharing a kernel map build once.
// Every offset's block of the result sums that offset's pairs in ascending output row, one at a time
// (the portable loop in a task per offset; the vector kernels in tasks per offset and block of output
// rows, run in block order, and in chunks whose rows they read in place or copy into order first), so
// every element is summed in one order: no atomics, the same bits for any thread count. float32 runs the
// AVX-512 or AVX2 + FMA kernel (the same bits) when the CPU has one, any other case the portable loop
// below; the vector and portable paths round differently (fused multiply-add), each is deterministic.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <limits>
#include <memory>
#include <numeric>
#include <thread>
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
std::vector<int64_t> offsets_largest_first(int64_t kvol, const int64_t* ptr) {
  std::vector<int64_t> order(kvol);
  std::iota(order.begin(), order.end(), int64_t(0));
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return ptr[a + 1] - ptr[a] > ptr[b + 1] - ptr[b]; });
  return order;
}

template <typename TaskFn>
void for_each_offset(const Shape& shape, const int64_t* ptr, const TaskFn& fn) {
  const std::vector<int64_t> order = offsets_largest_first(shape.kvol, ptr);
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

// Output rows per block of the vector kernels' order (at least 1,024): a block's grad_out rows and
// about as many feats rows take about 1 MB, so that they stay in the cache while every offset's pairs
// of the block go by. Going through all of one offset's pairs before the next read the whole of both
// (megabytes at 48 channels and more) from memory once per offset.
int64_t rows_per_block(int64_t c_in, int64_t c_out) {
  return std::max<int64_t>(1024, (int64_t(1) << 20) / (int64_t(sizeof(float)) * (c_in + c_out)));
}

// bounds[b * (kvol + 1) + k] .. bounds[(b + 1) * (kvol + 1) + k]: the pairs of offset k in block b of
// `rows` output rows: going up from the block before, the pairs whose output row is below the block's
// end (the last block: all that are left). Every pair is in one block, in its order; pair lists sorted
// by output row (kernel_pairs) give each block exactly its rows.
std::vector<int64_t> block_bounds(Pairs pairs, int64_t kvol, int64_t n_blocks, int64_t rows) {
  const int64_t stride = kvol + 1;
  std::vector<int64_t> bounds((n_blocks + 1) * stride);
  at::parallel_for(0, kvol, 1, [&](int64_t kb, int64_t ke) {
    for (int64_t k = kb; k < ke; ++k) {
      int64_t p = pairs.ptr[k];
      const int64_t last = pairs.ptr[k + 1];
      for (int64_t b = 0; b < n_blocks; ++b) {
        bounds[b * stride + k] = p;
        const int64_t end_row = b + 1 == n_blocks ? std::numeric_limits<int64_t>::max() : (b + 1) * rows;
        while (p < last && pairs.out_rows[p] < end_row) ++p;
      }
      bounds[n_blocks * stride + k] = p;
    }
  });
  return bounds;
}

using OffsetFn = void (*)(const float*, int64_t, const float*, int64_t, const int32_t*, const int32_t*, int64_t,
                         bool, float*, float*, float*);

// offset_fn: weight_grad_offset_avx2 or weight_grad_offset_avx512. The tasks are an offset's pairs in
// a block, blocks in order and in each the offsets largest first (an offset alone in consecutive
// blocks, as the blocks of rows of _dense_weight_grad are, is one task over them), each thread taking
// the next one not yet taken; a task waits for the tasks of its offset before it, so every offset
// still sums its pairs in order in one accumulator: the same bits as one pass over each offset.
void weight_grad_vector(const float* feats, const float* grad, int64_t n_out, Pairs pairs, const Shape& shape,
                        bool in_place, float* out, OffsetFn offset_fn) {
  const int64_t kvol = shape.kvol, c_in = shape.c_in, c_out = shape.c_out;
  const int64_t width = (c_out + kGradPanel - 1) / kGradPanel * kGradPanel;
  const int64_t rows = rows_per_block(c_in, c_out), n_blocks = std::max<int64_t>(1, (n_out + rows - 1) / rows);
  const std::vector<int64_t> bounds = block_bounds(pairs, kvol, n_blocks, rows);
  const std::vector<int64_t> order = offsets_largest_first(kvol, pairs.ptr);
  struct Task {
    int64_t offset, begin, end, earlier;  // pairs [begin, end); earlier: the tasks of this offset before it
  };
  std::vector<Task> tasks;
  std::vector<int64_t> task_count(kvol, 0);
  for (int64_t b = 0; b < n_blocks; ++b)
    for (int64_t k : order) {
      const int64_t begin = bounds[b * (kvol + 1) + k], end = bounds[(b + 1) * (kvol + 1) + k];
      if (begin == end) continue;
      if (!tasks.empty() && tasks.back().offset == k)
        tasks.back().end = end;  // the same offset next again: its task goes on
      else
        tasks.push_back({k, begin, end, task_count[k]++});
    }
  std::vector<float> acc(kvol * c_in * width, 0.f);
  std::unique_ptr<std::atomic<int64_t>[]> tasks_done(new std::atomic<int64_t>[kvol]);  // per offset
  for (int64_t k = 0; k < kvol; ++k) tasks_done[k].store(0);
  std::atomic<size_t> next{0};
  at::parallel_for(0, at::get_num_threads(), 1, [&](int64_t, int64_t) {
    std::vector<float> xs(in_place ? 0 : kGradChunkPairs * grad_packed_row_stride(c_in));
    std::vector<float> g(in_place ? 0 : kGradChunkPairs * width);
    for (size_t t = next++; t < tasks.size(); t = next++) {
      const auto [k, begin, end, earlier] = tasks[t];
      while (tasks_done[k].load(std::memory_order_acquire) < earlier) std::this_thread::yield();
      offset_fn(feats, c_in, grad, c_out, pairs.in_rows + begin, pairs.out_rows + begin, end - begin, in_place,
                acc.data() + k * c_in * width, xs.data(), g.data());
      tasks_done[k].store(earlier + 1, std::memory_order_release);
    }
  });
  for (int64_t kc = 0; kc < kvol * c_in; ++kc)
    std::copy(acc.data() + kc * width, acc.data() + kc * width + c_out, out + kc * c_out);
}

int64_t count_rows_outside(const int32_t* rows, int64_t n, int64_t limit) {
  return at::parallel_reduce(0, n, 1 << 16, int64_t(0), [&](int64_t b, int64_t e, int64_t bad) {
    for (int64_t p = b; p < e; ++p) bad += rows[p] < 0 || rows[p] >= limit;
    return bad;
  }, std::plus<int64_t>());
}

// Whether pair p is (p, p) for every p, over all the rows of both sides.
bool rows_in_order(Pairs pairs, int64_t n_pairs, int64_t n_in, int64_t n_out) {
  if (n_pairs != n_in || n_pairs != n_out) return false;
  return at::parallel_reduce(0, n_pairs, 1 << 16, true, [&](int64_t b, int64_t e, bool in_order) {
    for (int64_t p = b; p < e; ++p) in_order &= pairs.in_rows[p] == p && pairs.out_rows[p] == p;
    return in_order;
  }, std::logical_and<bool>());
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
    const bool avx512 = path == CpuPath::kAvx512;
    const bool in_place = weight_grad_reads_in_place(n_pairs, feats.size(0), grad.size(0),
                                                     rows_in_order(pairs, n_pairs, feats.size(0), grad.size(0)),
                                                     shape.c_out, avx512 ? 16 : 8);
    weight_grad_vector(feats.data_ptr<float>(), grad.data_ptr<float>(), grad.size(0), pairs, shape, in_place,
                       out.data_ptr<float>(), avx512 ? &weight_grad_offset_avx512 : &weight_grad_offset_avx2);
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
