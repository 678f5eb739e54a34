// Packing of (batch, x, y, z) into one exact 64-bit key, and the hash mix used by every table.
#pragma once
#include <cstdint>

// Functions that the CUDA kernels call too.
#ifdef __CUDACC__
#define PE_HD __host__ __device__
#else
#define PE_HD
#endif

namespace pointengine {

// 16 bits per field: batch in [0, 65534], each axis in [-32768, 32767]. Batch 65535 is excluded so
// that the all-ones key (-1) can never be a real coordinate and serves as the empty-slot marker.
constexpr int32_t kCoordMin = -32768;
constexpr int32_t kCoordMax = 32767;
constexpr int32_t kBatchMax = 65534;
constexpr int64_t kEmptyKey = -1;
// Largest kernel size, stride or dilation per axis: an axis of the packed key spans 2^16 values.
constexpr int64_t kMaxGeometry = 65535;

PE_HD inline bool axis_in_range(int64_t v) { return v >= kCoordMin && v <= kCoordMax; }

// The same test for an int32 without branches (unsigned arithmetic wraps): loops over every row
// vectorise.
PE_HD inline bool axis_fits(int32_t v) { return uint32_t(v) - uint32_t(kCoordMin) <= uint32_t(kCoordMax - kCoordMin); }

// Fields outside the range alias others (callers check the range); the offset is added in unsigned
// arithmetic so that packing any int32, checked or not, cannot overflow.
PE_HD inline uint64_t key_field(int32_t v) { return uint64_t(uint16_t(uint32_t(v) - uint32_t(kCoordMin))); }

PE_HD inline int64_t pack_key(int32_t b, int32_t x, int32_t y, int32_t z) {
  return int64_t((uint64_t(uint16_t(b)) << 48) | (key_field(x) << 32) | (key_field(y) << 16) | key_field(z));
}

PE_HD inline void unpack_key(int64_t key, int32_t* out) {
  const uint64_t k = uint64_t(key);
  out[0] = int32_t((k >> 48) & 0xFFFF);
  out[1] = int32_t((k >> 32) & 0xFFFF) + kCoordMin;
  out[2] = int32_t((k >> 16) & 0xFFFF) + kCoordMin;
  out[3] = int32_t(k & 0xFFFF) + kCoordMin;
}

// The key of an int32 (batch, x, y, z) row, and whether the row fits the packed fields.
PE_HD inline int64_t key_of_row(const int32_t* c) { return pack_key(c[0], c[1], c[2], c[3]); }

PE_HD inline bool row_in_range(const int32_t* c) {
  return (uint32_t(c[0]) <= uint32_t(kBatchMax)) & axis_fits(c[1]) & axis_fits(c[2]) & axis_fits(c[3]);
}

// Murmur3's 64-bit finaliser: cheap, and spreads the structured bits of packed keys over the slots.
PE_HD inline uint64_t mix_key(int64_t key) {
  uint64_t h = uint64_t(key);
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return h;
}

}  // namespace pointengine
