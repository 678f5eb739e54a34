// The hashed coordinate map on the GPU: the CPU's table (common/hash_table.h: packed 64-bit keys,
// open addressing with linear probing, capacity a power of two at least 2N), filled by one thread per
// row with atomicCAS. A repeated coordinate keeps its smallest row (atomicMin), so the table's
// answers do not depend on the order the threads ran in. unique_coords sorts the packed keys.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <limits>

#include "../common/coord_rows.h"
#include "../common/hash_table.h"
#include "cuda_utils.cuh"

namespace pointengine {
namespace {

// counts[0]: rows outside the packable range, counts[1]: repeats, counts[2]: rows with no free slot.
__global__ void hash_insert_kernel(const int32_t* coords, int64_t n, int64_t* keys, int32_t* vals, uint64_t mask,
                                   unsigned long long* counts) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const int32_t* c = coords + 4 * i;
  if (!row_in_range(c)) {
    atomicAdd(&counts[0], 1ULL);
    return;
  }
  const auto key = (unsigned long long)key_of_row(c);
  uint64_t slot = mix_key(int64_t(key)) & mask;
  for (uint64_t probe = 0; probe <= mask; ++probe, slot = (slot + 1) & mask) {
    const auto previous = atomicCAS(reinterpret_cast<unsigned long long*>(keys + slot),
                                    (unsigned long long)kEmptyKey, key);
    if (previous == (unsigned long long)kEmptyKey || previous == key) {
      if (previous == key) atomicAdd(&counts[1], 1ULL);
      atomicMin(vals + slot, int32_t(i));
      return;
    }
  }
  atomicAdd(&counts[2], 1ULL);
}

// Slots left empty hold the row -1, as on the CPU.
__global__ void clear_empty_vals_kernel(const int64_t* keys, int32_t* vals, int64_t cap) {
  const int64_t s = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (s < cap && keys[s] == kEmptyKey) vals[s] = -1;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> hash_build_cuda(const at::Tensor& coords_in) {
  check_coord_rows(coords_in, "hash_build", "coords", at::kCUDA);
  const c10::cuda::CUDAGuard guard(coords_in.device());
  const at::Tensor coords = coords_in.contiguous();
  const int64_t n = coords.size(0), cap = table_capacity(n);
  at::Tensor keys = at::full({cap}, kEmptyKey, coords.options().dtype(at::kLong));
  at::Tensor vals = at::full({cap}, std::numeric_limits<int32_t>::max(), coords.options().dtype(at::kInt));
  at::Tensor counts = at::zeros({3}, coords.options().dtype(at::kLong));
  auto* count_ptr = reinterpret_cast<unsigned long long*>(counts.data_ptr<int64_t>());
  if (n > 0)
    hash_insert_kernel<<<blocks_for(n), kThreads, 0, current_stream()>>>(
        coords.data_ptr<int32_t>(), n, keys.data_ptr<int64_t>(), vals.data_ptr<int32_t>(), uint64_t(cap - 1),
        count_ptr);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  clear_empty_vals_kernel<<<blocks_for(cap), kThreads, 0, current_stream()>>>(keys.data_ptr<int64_t>(),
                                                                              vals.data_ptr<int32_t>(), cap);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const std::vector<int64_t> host = read_counts(counts);
  check_in_range(host[0], "hash_build", "coords");
  TORCH_CHECK(host[2] == 0, "hash_build: ", host[2], " rows found no free slot in ", cap);
  return {keys, vals, counts.select(0, 1)};
}

__global__ void hash_query_kernel(TableView table, const int32_t* queries, int64_t m, int32_t* out) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= m) return;
  const int32_t* q = queries + 4 * i;
  out[i] = row_in_range(q) ? table.find_bounded(key_of_row(q)) : -1;
}

at::Tensor hash_query_cuda(const at::Tensor& keys_in, const at::Tensor& vals_in, const at::Tensor& queries_in) {
  check_table(keys_in, vals_in, "hash_query", at::kCUDA);
  check_coord_rows(queries_in, "hash_query", "coords", at::kCUDA);
  const c10::cuda::CUDAGuard guard(queries_in.device());
  const at::Tensor keys = keys_in.contiguous(), vals = vals_in.contiguous(), queries = queries_in.contiguous();
  const int64_t m = queries.size(0);
  at::Tensor out = at::empty({m}, queries.options().dtype(at::kInt));
  if (m == 0) return out;
  const TableView table{keys.data_ptr<int64_t>(), vals.data_ptr<int32_t>(), uint64_t(keys.size(0) - 1)};
  hash_query_kernel<<<blocks_for(m), kThreads, 0, current_stream()>>>(table, queries.data_ptr<int32_t>(), m,
                                                                      out.data_ptr<int32_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

// Packed keys with the sign bit flipped sort as signed integers in (batch, x, y, z) order; a row
// outside the range gets the largest int64, which no flipped key reaches (batch <= 65534).
constexpr int64_t kSignBit = std::numeric_limits<int64_t>::min();
constexpr int64_t kOutsideKey = std::numeric_limits<int64_t>::max();

__global__ void sortable_keys_kernel(const int32_t* coords, int64_t n, int64_t* out) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] = row_in_range(coords + 4 * i) ? key_of_row(coords + 4 * i) ^ kSignBit : kOutsideKey;
}

__global__ void unpack_keys_kernel(const int64_t* sortable, int64_t n, int32_t* coords) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) unpack_key(sortable[i] ^ kSignBit, coords + 4 * i);
}

at::Tensor unique_coords_cuda(const at::Tensor& coords_in) {
  check_coord_rows(coords_in, "unique_coords", "coords", at::kCUDA);
  const c10::cuda::CUDAGuard guard(coords_in.device());
  const at::Tensor coords = coords_in.contiguous();
  const int64_t n = coords.size(0);
  if (n == 0) return at::empty({0, 4}, coords.options());
  at::Tensor sortable = at::empty({n}, coords.options().dtype(at::kLong));
  sortable_keys_kernel<<<blocks_for(n), kThreads, 0, current_stream()>>>(coords.data_ptr<int32_t>(), n,
                                                                         sortable.data_ptr<int64_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const at::Tensor unique = std::get<0>(at::_unique(sortable, /*sorted=*/true, /*return_inverse=*/false));
  const int64_t u = unique.size(0);
  // Sorted: a row outside the range shows as the last key.
  if (unique[u - 1].item<int64_t>() == kOutsideKey) check_in_range(count_outside(coords.cpu().data_ptr<int32_t>(), n),
                                                                   "unique_coords", "coords");
  at::Tensor out = at::empty({u, 4}, coords.options());
  unpack_keys_kernel<<<blocks_for(u), kThreads, 0, current_stream()>>>(unique.data_ptr<int64_t>(), u,
                                                                       out.data_ptr<int32_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(pointengine, CUDA, m) {
  m.impl("hash_build", &hash_build_cuda);
  m.impl("hash_query", &hash_query_cuda);
  m.impl("unique_coords", &unique_coords_cuda);
}

}  // namespace pointengine
