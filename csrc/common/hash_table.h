// Open-addressing table with linear probing over two flat arrays: keys int64[cap] (-1 = empty) and
// vals int32[cap]. The capacity is a power of two, so a slot is `hash & (cap - 1)`. A lookup ends at
// its key or at an empty slot: the ops that read a table check that it has one (has_empty_slot), so
// no lookup can loop forever whatever keys they are given, and the probe loop needs no counter
// (a bound per probe cost 3% of a strided kernel map). Inserts stop after cap slots.
#pragma once
#include <cstdint>

#include "keys.h"

namespace pointengine {

struct TableView {
  const int64_t* keys;
  const int32_t* vals;
  uint64_t mask;

  int32_t find(int64_t key) const {
    for (uint64_t slot = mix_key(key) & mask;; slot = (slot + 1) & mask) {
      const int64_t k = keys[slot];
      if (k == key) return vals[slot];
      if (k == kEmptyKey) return -1;
    }
  }

  // The same lookup ending after cap probes too, for tables whose empty slot was not checked (the
  // CUDA kernels', where that check would cost a host synchronisation).
  PE_HD int32_t find_bounded(int64_t key) const {
    uint64_t slot = mix_key(key) & mask;
    for (uint64_t probe = 0; probe <= mask; ++probe, slot = (slot + 1) & mask) {
      const int64_t k = keys[slot];
      if (k == key) return vals[slot];
      if (k == kEmptyKey) return -1;
    }
    return -1;
  }
};

// Whether some slot is empty, so that every probe sequence ends. A table from hash_build is at most
// half full: the scan stops within a few slots.
inline bool has_empty_slot(const int64_t* keys, int64_t cap) {
  for (int64_t slot = 0; slot < cap; ++slot)
    if (keys[slot] == kEmptyKey) return true;
  return false;
}

// The row of `coords` that the table gives for `key`, or -1; a row past n_rows or holding another
// key clears *consistent (the table is not the one of these coordinates).
inline int32_t find_row(const TableView& table, const int32_t* coords, int64_t n_rows, int64_t key,
                        bool* consistent) {
  const int32_t i = table.find(key);
  if (i < 0) return -1;
  if (i >= n_rows || key_of_row(coords + 4 * int64_t(i)) != key) {
    *consistent = false;
    return -1;
  }
  return i;
}

// Claims a slot for `key` with a compare-and-swap, so threads may insert concurrently. Sets the
// slot and whether this call inserted the key (false: it was already there); returns false when
// every slot holds another key.
inline bool insert_key(int64_t* keys, uint64_t mask, int64_t key, uint64_t* slot_out, bool* inserted) {
  uint64_t slot = mix_key(key) & mask;
  for (uint64_t probe = 0; probe <= mask; ++probe, slot = (slot + 1) & mask) {
    int64_t expected = kEmptyKey;
    if (__atomic_compare_exchange_n(&keys[slot], &expected, key, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
      *slot_out = slot;
      *inserted = true;
      return true;
    }
    if (expected == key) {
      *slot_out = slot;
      *inserted = false;
      return true;
    }
  }
  return false;
}

inline int64_t table_capacity(int64_t n) {
  int64_t cap = 16;
  while (cap < 2 * n) cap <<= 1;
  return cap;
}

}  // namespace pointengine
