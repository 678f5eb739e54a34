// Kernel maps on the GPU: the neighbour table nbr[o, k] (common/input_site.h gives the input site of
// each kind of convolution), one thread per entry; and its pair-list form, grouped by offset.
// Submanifold tables (outputs = inputs, odd kernel) look up offsets k < K/2 only where offsets k and
// K-1-k are mirror images: a hit o -> i through k is also the hit i -> o through K-1-k, written by the
// same thread, so every entry still has one writer.
// No host synchronisation: the contents of the table and of out_coords are not checked (the Python
// layer made both). Lookups are bounded and rows past the table dropped, and a row outside the
// packable range reads nothing, so bad contents give a bad map but never a fault or a hang.
#include <ATen/ATen.h>
#include <torch/library.h>

#include "../common/coord_rows.h"
#include "../common/hash_table.h"
#include "../common/input_site.h"
#include "cuda_utils.cuh"

namespace pointengine {
namespace {

struct Geometry {
  int64_t stride[3];
  bool transposed;
};

__device__ int32_t lookup(const TableView& table, const int32_t* o, const int32_t* off, const Geometry& g) {
  int64_t key;
  return input_site_key(o, off, g.stride, g.transposed, &key) ? table.find_bounded(key) : -1;
}

__global__ void lookup_all_kernel(TableView table, const int32_t* coords, int64_t m, const int32_t* offsets,
                                  int64_t kvol, Geometry g, int32_t* nbr) {
  const int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= m * kvol) return;
  const int64_t o = e / kvol, k = e - o * kvol;
  const int32_t* c = coords + 4 * o;
  nbr[e] = row_in_range(c) ? lookup(table, c, offsets + 3 * k, g) : -1;
}

__device__ bool mirrored(const int32_t* a, const int32_t* b) {
  return a[0] == -b[0] && a[1] == -b[1] && a[2] == -b[2];
}

// nbr filled with -1 beforehand; one thread per (o, k) with k <= centre. A pair of offsets that is
// not mirrored is looked up both ways by its thread.
__global__ void submanifold_kernel(TableView table, const int32_t* coords, int64_t m, const int32_t* offsets,
                                   int64_t kvol, Geometry g, int32_t* nbr) {
  const int64_t centre = kvol / 2;
  const int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= m * (centre + 1)) return;
  const int64_t o = e / (centre + 1), k = e - o * (centre + 1), mirror = kvol - 1 - k;
  const int32_t* c = coords + 4 * o;
  if (!row_in_range(c)) return;
  const int32_t* off = offsets + 3 * k;
  if (k == centre) {
    nbr[o * kvol + k] = off[0] == 0 && off[1] == 0 && off[2] == 0 ? int32_t(o) : lookup(table, c, off, g);
    return;
  }
  const int32_t i = lookup(table, c, off, g);
  if (!mirrored(off, offsets + 3 * mirror)) {
    nbr[o * kvol + k] = i;
    nbr[o * kvol + mirror] = lookup(table, c, offsets + 3 * mirror, g);
    return;
  }
  if (i < 0 || i >= m) return;
  nbr[o * kvol + k] = i;
  nbr[int64_t(i) * kvol + mirror] = int32_t(o);
}

at::Tensor neighbor_table_cuda(const at::Tensor& keys_in, const at::Tensor& vals_in, const at::Tensor& out_coords_in,
                               const at::Tensor& offsets_in, at::IntArrayRef stride, bool transposed,
                               bool submanifold) {
  check_neighbor_table_args(keys_in, vals_in, out_coords_in, offsets_in, stride, submanifold, at::kCUDA);
  const int64_t m = out_coords_in.size(0), kvol = offsets_in.size(0);
  const c10::cuda::CUDAGuard guard(out_coords_in.device());
  const at::Tensor keys = keys_in.contiguous(), vals = vals_in.contiguous();
  const at::Tensor coords = out_coords_in.contiguous(), offsets = offsets_in.contiguous();
  const TableView table{keys.data_ptr<int64_t>(), vals.data_ptr<int32_t>(), uint64_t(keys.size(0) - 1)};
  const Geometry g{{stride[0], stride[1], stride[2]}, transposed};
  at::Tensor nbr = at::empty({m, kvol}, coords.options());
  if (m == 0 || kvol == 0) return nbr;
  const int32_t* c = coords.data_ptr<int32_t>();
  const int32_t* off = offsets.data_ptr<int32_t>();
  if (submanifold) {
    nbr.fill_(-1);
    submanifold_kernel<<<blocks_for(m * (kvol / 2 + 1)), kThreads, 0, current_stream()>>>(
        table, c, m, off, kvol, g, nbr.data_ptr<int32_t>());
  } else {
    lookup_all_kernel<<<blocks_for(m * kvol), kThreads, 0, current_stream()>>>(table, c, m, off, kvol, g,
                                                                               nbr.data_ptr<int32_t>());
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return nbr;
}

// Pairs grouped by offset and, within one, by output row: the order of the CPU's kernel_pairs.
std::tuple<at::Tensor, at::Tensor, at::Tensor> kernel_pairs_cuda(const at::Tensor& nbr_in) {
  check_matrix(nbr_in, "kernel_pairs", "nbr", at::kInt, -1, "[N_out, K]", at::kCUDA);
  check_row_count(nbr_in.size(0), "kernel_pairs", "nbr");
  const c10::cuda::CUDAGuard guard(nbr_in.device());
  const at::Tensor by_offset = nbr_in.t().contiguous();  // [K, N_out]
  const at::Tensor hit = by_offset >= 0;
  const at::Tensor where = hit.nonzero();  // (k, o), row-major: by offset, then output row
  at::Tensor in_rows = by_offset.masked_select(hit);
  at::Tensor out_rows = where.select(1, 1).to(at::kInt);
  at::Tensor ptr = at::cat({at::zeros({1}, hit.options().dtype(at::kLong)), hit.sum(1).cumsum(0)});
  return {in_rows, out_rows, ptr};
}

}  // namespace

TORCH_LIBRARY_IMPL(pointengine, CUDA, m) {
  m.impl("neighbor_table", &neighbor_table_cuda);
  m.impl("kernel_pairs", &kernel_pairs_cuda);
}

}  // namespace pointengine
