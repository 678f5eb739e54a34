// Submanifold neighbour tables of sorted coordinates by merging instead of hashing. Plain C++.
//
// When the rows are sorted by packed key (as unique_coords and every map this library builds leave
// them), the neighbour through a fixed offset of each row is key + delta, and those targets ascend
// with the rows. So each offset column (same dx, dy) keeps one pointer that only moves forward
// through the keys, and the column's dz neighbours sit in the next few keys: a streaming pass with
// no hashing and no random reads (the idea of Minuet, EuroSys'24: sorted keys instead of a table).
#pragma once
#include <cstdint>
#include <vector>

#include "../common/hash_table.h"

namespace pointengine {

constexpr int kMaxColumnSpan = 64;

// Offsets k < K/2 with the same (dx, dy), in order of dz: the first one's key difference, how
// many keys the column covers, and the offset index of each key difference inside it (-1: none).
struct MergeColumn {
  int64_t delta;
  int64_t span;
  int64_t offset_at[kMaxColumnSpan];
};

struct MergePlan {
  int64_t kvol;
  int32_t lo[3], hi[3];  // per-axis min and max offset: rows this close to the range edge use the table
  std::vector<MergeColumn> columns;
};

// Whether offsets k and K-1-k are opposite (so the centre is zero), as for odd kernel_offsets.
bool offsets_mirrored(const int32_t* offsets, int64_t kvol);

// False when some offset k < K/2 is not below zero in key order, the offsets are not mirrored or
// they reach past the coordinate range; the caller then uses the hash table.
bool make_merge_plan(const int32_t* offsets, int64_t kvol, MergePlan* plan);

// Rows [begin, end) of a submanifold table, keys = packed coordinates ascending followed by
// kMaxColumnSpan sentinels (all ones). Writes rows [begin, end) completely, and the mirrored
// entries of earlier rows: those below `begin` (another range's) go to `deferred` as (index, value).
// False when the table (used near the range edge) names a row that does not hold the key.
bool merge_rows(const MergePlan& plan, const uint64_t* keys, const int32_t* coords, const int32_t* offsets,
                const TableView& table, int64_t begin, int64_t end, int32_t* nbr, std::vector<int64_t>* deferred);

}  // namespace pointengine
