// The stable grouping of row entries by the voxel they name, shared by the CPU point-voxel ops.
#pragma once
#include <ATen/ATen.h>

#include <vector>

#include "keys.h"

namespace pointengine {

// Entries e in [0, E) grouped by target[e] in [0, M) (-1 = none): the entries of target v are
// order[ptr[v]:ptr[v+1]], ascending. A counting sort, so the grouping (and every sum taken in its
// order) is the same whatever the thread count.
struct Groups {
  std::vector<int64_t> ptr;
  std::vector<int64_t> order;
};

inline Groups group_by_target(const int32_t* target, int64_t n_entries, int64_t n_targets) {
  Groups g;
  g.ptr.assign(n_targets + 1, 0);
  for (int64_t e = 0; e < n_entries; ++e)
    if (target[e] >= 0) ++g.ptr[target[e] + 1];
  for (int64_t v = 0; v < n_targets; ++v) g.ptr[v + 1] += g.ptr[v];
  g.order.resize(g.ptr[n_targets]);
  std::vector<int64_t> next(g.ptr.begin(), g.ptr.end() - 1);
  for (int64_t e = 0; e < n_entries; ++e)
    if (target[e] >= 0) g.order[next[target[e]]++] = e;
  return g;
}

// Number of entries outside [-1, n_targets): the kernels' index backstop.
inline int64_t count_bad_targets(const int32_t* target, int64_t n_entries, int64_t n_targets) {
  int64_t bad = 0;
  for (int64_t e = 0; e < n_entries; ++e) bad += target[e] < -1 || target[e] >= n_targets;
  return bad;
}

}  // namespace pointengine
