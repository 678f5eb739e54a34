// Open-addressing table with linear probing over two flat arrays: keys int64[cap] (-1 = empty) and
// vals int32[cap]. The capacity is a power of two, so a slot is `hash & (cap - 1)`.
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
};

// Claims a slot for `key` with a compare-and-swap, so threads may insert concurrently.
// Returns the slot and whether this call inserted the key (false: it was already there).
inline uint64_t insert_key(int64_t* keys, uint64_t mask, int64_t key, bool* inserted) {
  for (uint64_t slot = mix_key(key) & mask;; slot = (slot + 1) & mask) {
    int64_t expected = kEmptyKey;
    if (__atomic_compare_exchange_n(&keys[slot], &expected, key, false, __ATOMIC_ACQ_REL,
                                    __ATOMIC_ACQUIRE)) {
      *inserted = true;
      return slot;
    }
    if (expected == key) {
      *inserted = false;
      return slot;
    }
  }
}

inline int64_t table_capacity(int64_t n) {
  int64_t cap = 16;
  while (cap < 2 * n) cap <<= 1;
  return cap;
}

}  // namespace pointengine
