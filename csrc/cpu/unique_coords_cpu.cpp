// The distinct rows of a coordinate list, sorted by (batch, x, y, z): radix sort of packed keys;
// unique_coords_inverse also gives each input row's row in the result (voxelization's point-to-voxel
// map, without a hash query).
//
// Each field is offset by its minimum and given only the bits its span needs, so the keys keep the
// (batch, x, y, z) order in as few bits as possible: a lidar scan at 0.05 m spans x 12, y 11, z 9
// bits, one 32-bit key, three passes of an 11-bit LSD radix sort. Sorting every row and dropping
// repeats replaced a hash set plus a comparison sort of the distinct keys: 2.5x faster on the 124k
// points of a SemanticKITTI scan.
// The result depends on the rows alone, whatever the thread count.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>
#include <vector>

#include "../common/coord_rows.h"

namespace pointengine {
namespace {

constexpr int kDigitBits = 11;  // 2048 counters: the histogram stays in L1

// Where each field lands in the compact key: key = sum over d of (c[d] - lo[d]) << shift[d], the
// field taking width[d] bits. A field of one value takes no bits and shift 0 (its term is 0): its
// shift would otherwise be the whole key width when the other fields fill the key, and a shift by
// the width of the type is undefined.
struct Packing {
  int32_t lo[4];
  int shift[4];
  int width[4];
  int bits;
};

Packing packing_of(const int32_t* lo, const int32_t* hi) {
  Packing p{};
  for (int d = 3; d >= 0; --d) {
    p.lo[d] = lo[d];
    const uint32_t span = uint32_t(hi[d] - lo[d]);
    p.width[d] = span == 0 ? 0 : 32 - __builtin_clz(span);
    p.shift[d] = p.width[d] == 0 ? 0 : p.bits;
    p.bits += p.width[d];
  }
  return p;
}

// LSD radix sort of items by the low `bits` bits of key_of(item); stable, so items of one key keep
// their order.
template <typename Item, typename KeyOf>
void radix_sort(std::vector<Item>& items, int bits, KeyOf key_of) {
  std::vector<Item> spare(items.size());
  const uint64_t mask = (uint64_t(1) << kDigitBits) - 1;
  for (int shift = 0; shift < bits; shift += kDigitBits) {
    std::vector<int64_t> start(size_t(1) << kDigitBits, 0);
    for (const Item& item : items) ++start[(key_of(item) >> shift) & mask];
    int64_t total = 0;
    for (int64_t& s : start) total += s, s = total - s;
    for (const Item& item : items) spare[start[(key_of(item) >> shift) & mask]++] = item;
    items.swap(spare);
  }
}

template <typename Key>
Key key_of_row(const int32_t* row, const Packing& p) {
  Key k = 0;
  for (int d = 0; d < 4; ++d) k |= Key(uint32_t(row[d] - p.lo[d])) << p.shift[d];
  return k;
}

// Rows [keys.size(), 4] of packed keys, the inverse of key_of_row.
template <typename Key>
at::Tensor rows_of_keys(const std::vector<Key>& keys, const Packing& p, const at::TensorOptions& options) {
  at::Tensor out = at::empty({int64_t(keys.size()), 4}, options);
  int32_t* o = out.data_ptr<int32_t>();
  at::parallel_for(0, int64_t(keys.size()), 16384, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      for (int d = 0; d < 4; ++d)  // widths are at most 16 bits
        o[4 * i + d] = int32_t((keys[i] >> p.shift[d]) & ((Key(1) << p.width[d]) - 1)) + p.lo[d];
  });
  return out;
}

template <typename Key>
at::Tensor unique_rows(const at::Tensor& coords, const Packing& p) {
  const int32_t* c = coords.data_ptr<int32_t>();
  std::vector<Key> keys(coords.size(0));
  at::parallel_for(0, coords.size(0), 16384, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) keys[i] = key_of_row<Key>(c + 4 * i, p);
  });
  radix_sort(keys, p.bits, [](Key k) { return k; });
  keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
  return rows_of_keys(keys, p, coords.options());
}

// unique_rows, and the row of the result each input row equals: the rows are sorted with their
// indices, and each run of one key gives one distinct row.
template <typename Key>
std::tuple<at::Tensor, at::Tensor> unique_rows_inverse(const at::Tensor& coords, const Packing& p) {
  struct Keyed {
    Key key;
    int32_t row;
  };
  const int32_t* c = coords.data_ptr<int32_t>();
  const int64_t n = coords.size(0);
  std::vector<Keyed> items(n);
  at::parallel_for(0, n, 16384, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) items[i] = {key_of_row<Key>(c + 4 * i, p), int32_t(i)};
  });
  radix_sort(items, p.bits, [](const Keyed& item) { return item.key; });
  std::vector<Key> keys;
  at::Tensor inverse = at::empty({n}, coords.options());
  int32_t* inv = inverse.data_ptr<int32_t>();
  for (const Keyed& item : items) {
    if (keys.empty() || keys.back() != item.key) keys.push_back(item.key);
    inv[item.row] = int32_t(keys.size() - 1);
  }
  return {rows_of_keys(keys, p, coords.options()), inverse};
}

// The packing of the rows of a checked int32 [N >= 1, 4] tensor, after refusing rows out of range.
Packing packing_of_rows(const at::Tensor& coords, const char* op) {
  const int64_t n = coords.size(0);
  const int32_t* c = coords.data_ptr<int32_t>();
  int32_t lo[4] = {c[0], c[1], c[2], c[3]}, hi[4] = {c[0], c[1], c[2], c[3]};
  for (int64_t i = 1; i < n; ++i)
    for (int d = 0; d < 4; ++d) lo[d] = std::min(lo[d], c[4 * i + d]), hi[d] = std::max(hi[d], c[4 * i + d]);
  if (!row_in_range(lo) || !row_in_range(hi)) check_in_range(count_outside(c, n), op, "coords");
  return packing_of(lo, hi);
}

at::Tensor unique_coords_cpu(const at::Tensor& coords_in) {
  check_matrix(coords_in, "unique_coords", "coords", at::kInt, 4, "[N, 4] (batch, x, y, z)");
  const at::Tensor coords = coords_in.contiguous();
  if (coords.size(0) == 0) return at::empty({0, 4}, coords.options());
  const Packing p = packing_of_rows(coords, "unique_coords");
  return p.bits <= 32 ? unique_rows<uint32_t>(coords, p) : unique_rows<uint64_t>(coords, p);
}

std::tuple<at::Tensor, at::Tensor> unique_coords_inverse_cpu(const at::Tensor& coords_in) {
  const char* op = "unique_coords_inverse";
  check_matrix(coords_in, op, "coords", at::kInt, 4, "[N, 4] (batch, x, y, z)");
  TORCH_CHECK(coords_in.size(0) <= INT32_MAX, op, ": at most ", INT32_MAX, " rows, got ", coords_in.size(0));
  const at::Tensor coords = coords_in.contiguous();
  if (coords.size(0) == 0) return {at::empty({0, 4}, coords.options()), at::empty({0}, coords.options())};
  const Packing p = packing_of_rows(coords, op);
  return p.bits <= 32 ? unique_rows_inverse<uint32_t>(coords, p) : unique_rows_inverse<uint64_t>(coords, p);
}

}  // namespace

TORCH_LIBRARY_IMPL(pointengine, CPU, m) {
  m.impl("unique_coords", &unique_coords_cpu);
  m.impl("unique_coords_inverse", &unique_coords_inverse_cpu);
}

}  // namespace pointengine
