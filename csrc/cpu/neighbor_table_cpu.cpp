// The neighbour-table form of a kernel map: nbr[o, k] = the input row that output site o reads
// through offset k, or -1 (the rule per kind of convolution: common/input_site.h).
// For submanifold convolutions (stride 1, outputs = inputs, odd kernel) offsets k and K-1-k are
// mirror images, so a hit o -> i through k is also the hit i -> o through K-1-k: half the lookups.
// Submanifold tables of rows sorted by key (the usual case) merge sorted keys instead of hashing
// (submanifold_merge.h); unsorted rows and the other kinds query the hash table.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <mutex>
#include <vector>

#include "../common/coord_rows.h"
#include "../common/hash_table.h"
#include "../common/input_site.h"
#include "submanifold_merge.h"

namespace pointengine {
namespace {

struct Query {
  TableView table;
  const int32_t* offsets;
  int64_t stride[3];
  bool transposed;

  bool site_key(const int32_t* o, int64_t k, int64_t* key) const {
    return input_site_key(o, offsets + 3 * k, stride, transposed, key);
  }

  int32_t lookup(const int32_t* o, int64_t k) const {
    int64_t key;
    return site_key(o, k, &key) ? table.find(key) : -1;
  }
};

// Every path below counts the rows outside the packable range in the pass that reads them (another
// pass, or parallel region, measurably slowed the map), and the call fails on any.
//
// Packed keys of the rows followed by the merge's sentinels, or null when the rows are not
// strictly ascending (then the table answers instead).
std::unique_ptr<uint64_t[]> sorted_keys(const int32_t* coords, int64_t m, int64_t* outside) {
  std::unique_ptr<uint64_t[]> keys(new uint64_t[m + kMaxColumnSpan]);  // every entry written below
  std::fill(keys.get() + m, keys.get() + m + kMaxColumnSpan, ~uint64_t(0));
  std::atomic<bool> ascending{true};
  std::atomic<int64_t> outside_rows{0};
  at::parallel_for(0, m, 16384, [&](int64_t begin, int64_t end) {
    uint64_t previous = begin == 0 ? 0 : uint64_t(key_of_row(coords + 4 * (begin - 1)));
    bool local = true;
    int64_t local_outside = 0;
    for (int64_t i = begin; i < end; ++i) {
      keys[i] = uint64_t(key_of_row(coords + 4 * i));
      local &= i == 0 || keys[i] > previous;
      local_outside += !row_in_range(coords + 4 * i);
      previous = keys[i];
    }
    if (!local) ascending = false;
    outside_rows += local_outside;
  });
  *outside = outside_rows.load();
  if (!ascending) keys.reset();
  return keys;
}

// Rows go out in fixed chunks from a shared counter, so that a thread done early takes more; the
// table does not depend on who walks which chunk. False when the hash table contradicts the rows.
bool submanifold_by_merge(const MergePlan& plan, const uint64_t* keys, const int32_t* coords, const int32_t* offsets,
                          const TableView& table, int64_t m, int32_t* nbr) {
  constexpr int64_t kChunkRows = 8192;
  const int64_t n_chunks = (m + kChunkRows - 1) / kChunkRows;
  std::atomic<int64_t> next{0};
  std::atomic<bool> consistent{true};
  std::vector<int64_t> deferred;
  std::mutex deferred_lock;
  at::parallel_for(0, std::min<int64_t>(n_chunks, at::get_num_threads()), 1, [&](int64_t, int64_t) {
    std::vector<int64_t> local;
    for (int64_t c; (c = next.fetch_add(1)) < n_chunks;)
      if (!merge_rows(plan, keys, coords, offsets, table, c * kChunkRows, std::min(m, (c + 1) * kChunkRows), nbr,
                      &local))
        consistent = false;
    const std::lock_guard<std::mutex> guard(deferred_lock);
    deferred.insert(deferred.end(), local.begin(), local.end());
  });
  // Each deferred entry has exactly one writer, so the order of these writes does not matter.
  for (size_t j = 0; j < deferred.size(); j += 2) nbr[deferred[j]] = int32_t(deferred[j + 1]);
  return consistent.load();
}

// Submanifold table of rows in any order, by hashing. A row is skipped (and the call fails) unless
// the table gives it for its own key, and a hit counts only if the row found holds the key looked
// up: so every mirrored entry has exactly one writer, whatever keys and vals hold.
bool submanifold_by_hash(const Query& query, const int32_t* coords, int64_t m, int64_t kvol, int32_t* nbr,
                         int64_t* outside) {
  const int64_t centre = kvol / 2;
  std::atomic<bool> consistent{true};
  std::atomic<int64_t> outside_rows{0};
  at::parallel_for(0, m, 2048, [&](int64_t begin, int64_t end) {
    bool local = true;
    int64_t local_outside = 0;
    for (int64_t o = begin; o < end && local; ++o) {
      const int32_t* c = coords + 4 * o;
      local_outside += !row_in_range(c);
      local = query.table.find(key_of_row(c)) == o;
      nbr[o * kvol + centre] = int32_t(o);
      for (int64_t k = 0; k < centre && local; ++k) {
        int64_t key;
        const int32_t i = query.site_key(c, k, &key) ? find_row(query.table, coords, m, key, &local) : -1;
        if (i < 0) continue;
        nbr[o * kvol + k] = i;
        nbr[int64_t(i) * kvol + (kvol - 1 - k)] = int32_t(o);
      }
    }
    if (!local) consistent = false;
    outside_rows += local_outside;
  });
  *outside = outside_rows.load();
  return consistent.load();
}

// The regular and transposed tables: every entry looked up.
void lookup_all(const Query& query, const int32_t* coords, int64_t m, int64_t kvol, int32_t* nbr, int64_t* outside) {
  std::atomic<int64_t> outside_rows{0};
  at::parallel_for(0, m, 2048, [&](int64_t begin, int64_t end) {
    int64_t local_outside = 0;
    for (int64_t o = begin; o < end; ++o) {
      local_outside += !row_in_range(coords + 4 * o);
      for (int64_t k = 0; k < kvol; ++k) nbr[o * kvol + k] = query.lookup(coords + 4 * o, k);
    }
    outside_rows += local_outside;
  });
  *outside = outside_rows.load();
}

at::Tensor neighbor_table_cpu(const at::Tensor& keys_in, const at::Tensor& vals_in, const at::Tensor& out_coords_in,
                              const at::Tensor& offsets_in, at::IntArrayRef stride, bool transposed,
                              bool submanifold) {
  constexpr const char* op = "neighbor_table";
  check_neighbor_table_args(keys_in, vals_in, out_coords_in, offsets_in, stride, submanifold, at::kCPU);
  const int64_t m = out_coords_in.size(0), kvol = offsets_in.size(0);
  const at::Tensor keys = keys_in.contiguous(), vals = vals_in.contiguous();
  const at::Tensor out_coords = out_coords_in.contiguous(), offsets = offsets_in.contiguous();
  check_empty_slot(keys, op);
  const TableView table{keys.data_ptr<int64_t>(), vals.data_ptr<int32_t>(), uint64_t(keys.size(0) - 1)};
  const int32_t* oc = out_coords.data_ptr<int32_t>();
  const int32_t* off = offsets.data_ptr<int32_t>();
  const char* inconsistent = "neighbor_table: keys and vals are not the table of out_coords, or out_coords repeats "
                             "a row (a submanifold table reads the output sites themselves)";
  int64_t outside = 0;
  if (submanifold) {
    MergePlan plan;
    if (make_merge_plan(off, kvol, &plan)) {
      const std::unique_ptr<uint64_t[]> sorted = sorted_keys(oc, m, &outside);
      check_in_range(outside, op, "out_coords");
      if (sorted) {
        at::Tensor nbr = at::empty({m, kvol}, out_coords.options().dtype(at::kInt));
        TORCH_CHECK(submanifold_by_merge(plan, sorted.get(), oc, off, table, m, nbr.data_ptr<int32_t>()),
                    inconsistent);
        return nbr;
      }
    }
  }
  at::Tensor nbr = at::full({m, kvol}, -1, out_coords.options().dtype(at::kInt));
  const Query query{table, off, {stride[0], stride[1], stride[2]}, transposed};
  int32_t* t = nbr.data_ptr<int32_t>();
  if (submanifold && offsets_mirrored(off, kvol)) {
    const bool consistent = submanifold_by_hash(query, oc, m, kvol, t, &outside);
    check_in_range(outside, op, "out_coords");
    TORCH_CHECK(consistent, inconsistent);
    return nbr;
  }
  lookup_all(query, oc, m, kvol, t, &outside);
  check_in_range(outside, op, "out_coords");
  return nbr;
}

}  // namespace

TORCH_LIBRARY_IMPL(pointengine, CPU, m) { m.impl("neighbor_table", &neighbor_table_cpu); }

}  // namespace pointengine
