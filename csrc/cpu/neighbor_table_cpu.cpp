// The neighbour-table form of a kernel map: nbr[o, k] = the input row that output site o reads
// through offset k, or -1. One query rule per kind of convolution:
//   regular    (conv, stride s):          input site = o * s + off_k
//   transposed (generative or not):       input site = (o - off_k) / s, where that divides exactly
// For submanifold convolutions (stride 1, outputs = inputs, odd kernel) offsets k and K-1-k are
// mirror images, so a hit o -> i through k is also the hit i -> o through K-1-k: half the lookups.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../common/hash_table.h"

namespace pointengine {
namespace {

int32_t floor_div_exact(int32_t a, int32_t s, bool* exact) {
  int32_t q = a / s, r = a % s;
  if (r != 0 && ((r < 0) != (s < 0))) --q, r += s;
  *exact = (r == 0);
  return q;
}

struct Query {
  TableView table;
  const int32_t* offsets;
  int32_t stride[3];
  bool transposed;

  int32_t lookup(const int32_t* o, int64_t k) const {
    int64_t site[3];
    for (int d = 0; d < 3; ++d) {
      const int32_t off = offsets[3 * k + d];
      if (transposed) {
        bool exact;
        site[d] = floor_div_exact(o[1 + d] - off, stride[d], &exact);
        if (!exact) return -1;
      } else {
        site[d] = int64_t(o[1 + d]) * stride[d] + off;
      }
      if (!axis_in_range(site[d])) return -1;
    }
    return table.find(pack_key(o[0], int32_t(site[0]), int32_t(site[1]), int32_t(site[2])));
  }
};

at::Tensor neighbor_table_cpu(const at::Tensor& keys, const at::Tensor& vals, const at::Tensor& out_coords_in,
                              const at::Tensor& offsets_in, at::IntArrayRef stride, bool transposed,
                              bool submanifold) {
  TORCH_CHECK(stride.size() == 3, "neighbor_table: stride must have 3 entries");
  const at::Tensor out_coords = out_coords_in.contiguous();
  const at::Tensor offsets = offsets_in.contiguous();
  const int64_t m = out_coords.size(0), kvol = offsets.size(0);
  at::Tensor nbr = at::full({m, kvol}, -1, out_coords.options().dtype(at::kInt));
  const Query query{{keys.data_ptr<int64_t>(), vals.data_ptr<int32_t>(), uint64_t(keys.size(0) - 1)},
                    offsets.data_ptr<int32_t>(),
                    {int32_t(stride[0]), int32_t(stride[1]), int32_t(stride[2])},
                    transposed};
  const int32_t* oc = out_coords.data_ptr<int32_t>();
  int32_t* t = nbr.data_ptr<int32_t>();
  if (submanifold) {
    TORCH_CHECK(kvol % 2 == 1, "neighbor_table: a submanifold table needs an odd kernel volume");
    const int64_t centre = kvol / 2;
    // Each (row, column) pair is written by exactly one output site: no two threads share an entry.
    at::parallel_for(0, m, 2048, [&](int64_t begin, int64_t end) {
      for (int64_t o = begin; o < end; ++o) {
        t[o * kvol + centre] = int32_t(o);
        for (int64_t k = 0; k < centre; ++k) {
          const int32_t i = query.lookup(oc + 4 * o, k);
          if (i < 0) continue;
          t[o * kvol + k] = i;
          t[int64_t(i) * kvol + (kvol - 1 - k)] = int32_t(o);
        }
      }
    });
    return nbr;
  }
  at::parallel_for(0, m, 2048, [&](int64_t begin, int64_t end) {
    for (int64_t o = begin; o < end; ++o)
      for (int64_t k = 0; k < kvol; ++k) t[o * kvol + k] = query.lookup(oc + 4 * o, k);
  });
  return nbr;
}

}  // namespace

TORCH_LIBRARY_IMPL(pointengine, CPU, m) { m.impl("neighbor_table", &neighbor_table_cpu); }

}  // namespace pointengine
