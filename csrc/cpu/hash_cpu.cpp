// Build and query of the hashed coordinate map.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <atomic>

#include "../common/coord_rows.h"
#include "../common/hash_table.h"

namespace pointengine {
namespace {

// Returns (keys, vals, duplicates): the table, and how many rows repeated an earlier coordinate.
std::tuple<at::Tensor, at::Tensor, at::Tensor> hash_build_cpu(const at::Tensor& coords_in) {
  check_coord_rows(coords_in, "hash_build", "coords");
  const at::Tensor coords = coords_in.contiguous();
  const int64_t n = coords.size(0);
  const int64_t cap = table_capacity(n);
  at::Tensor keys = at::full({cap}, kEmptyKey, coords.options().dtype(at::kLong));
  at::Tensor vals = at::full({cap}, -1, coords.options().dtype(at::kInt));
  int64_t* k = keys.data_ptr<int64_t>();
  int32_t* v = vals.data_ptr<int32_t>();
  const int32_t* c = coords.data_ptr<int32_t>();
  std::atomic<int64_t> duplicates{0}, outside{0}, unplaced{0};
  at::parallel_for(0, n, 4096, [&](int64_t begin, int64_t end) {
    int64_t local = 0, local_outside = 0, local_unplaced = 0;
    for (int64_t i = begin; i < end; ++i) {
      if (!row_in_range(c + 4 * i)) {
        ++local_outside;
        continue;
      }
      uint64_t slot;
      bool inserted;
      if (!insert_key(k, uint64_t(cap - 1), key_of_row(c + 4 * i), &slot, &inserted)) ++local_unplaced;
      else if (inserted) v[slot] = int32_t(i);
      else ++local;
    }
    duplicates += local;
    outside += local_outside;
    unplaced += local_unplaced;
  });
  check_in_range(outside.load(), "hash_build", "coords");
  // A capacity of at least 2N always leaves room; this guards the invariant, not the input.
  TORCH_CHECK(unplaced.load() == 0, "hash_build: ", unplaced.load(), " rows found no free slot in ", cap);
  return {keys, vals, at::scalar_tensor(duplicates.load(), coords.options().dtype(at::kLong))};
}

at::Tensor hash_query_cpu(const at::Tensor& keys_in, const at::Tensor& vals_in, const at::Tensor& queries_in) {
  check_table(keys_in, vals_in, "hash_query");
  check_coord_rows(queries_in, "hash_query", "coords");
  const at::Tensor keys = keys_in.contiguous(), vals = vals_in.contiguous(), queries = queries_in.contiguous();
  const int64_t m = queries.size(0);
  at::Tensor out = at::empty({m}, queries.options().dtype(at::kInt));
  check_empty_slot(keys, "hash_query");
  const TableView table{keys.data_ptr<int64_t>(), vals.data_ptr<int32_t>(), uint64_t(keys.size(0) - 1)};
  const int32_t* q = queries.data_ptr<int32_t>();
  int32_t* o = out.data_ptr<int32_t>();
  at::parallel_for(0, m, 4096, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) o[i] = row_in_range(q + 4 * i) ? table.find(key_of_row(q + 4 * i)) : -1;
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(pointengine, CPU, m) {
  m.impl("hash_build", &hash_build_cpu);
  m.impl("hash_query", &hash_query_cpu);
}

}  // namespace pointengine
