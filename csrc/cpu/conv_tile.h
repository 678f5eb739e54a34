// One tile of output rows of the fused convolution: the pairs each kernel offset contributes to
// it, and the entry points of the AVX2 float kernel (conv_tile_avx2.cpp). Plain C++, no ATen.
#pragma once
#include <algorithm>
#include <cstdint>

namespace pointengine {

// Rows per tile, fixed (never derived from the thread count) so that the split of the work cannot
// change a result. On a real scan (3x3x3, 3.8 of 27 neighbours present) 128 rows give an offset
// ~18 present rows, enough to fill 3-row register blocks, and the tile's accumulators (128 x C_out)
// stay in L1/L2. Measured on the SemanticKITTI scan: 64 and 128 tie, 256 and 512 are 5-15% slower.
constexpr int64_t kTileRows = 128;

// The pairs of one tile grouped by offset: offset k connects tile row rows[start[k] + j] with input
// row inputs[start[k] + j] for j < count[k], rows ascending. Compaction into a workspace writes
// offset k's list at start[k] = k * slots (slots >= the tile's rows); lists made beforehand
// (tile_pairs_cpu.cpp) lie back to back.
struct TilePairs {
  int32_t* rows;
  int32_t* inputs;
  int32_t* count;
  int64_t slots;
  const int64_t* start;
};

// Appends the pair (tile row r, input i) to offset k's list; false, and nothing appended, when i
// is not an input row.
inline bool add_tile_pair(TilePairs pairs, int64_t k, int64_t r, int32_t i, int64_t n_in) {
  if (i >= n_in) return false;
  const int64_t j = k * pairs.slots + pairs.count[k]++;
  pairs.rows[j] = int32_t(r);
  pairs.inputs[j] = i;
  return true;
}

// Entries >= n_in (no such input row) are left out and make the result false.
inline bool compact_tile(const int32_t* nbr, int64_t kvol, int64_t n_in, int64_t row_begin, int64_t n_rows,
                         TilePairs pairs) {
  bool valid = true;
  std::fill(pairs.count, pairs.count + kvol, 0);
  for (int64_t r = 0; r < n_rows; ++r) {
    const int32_t* t = nbr + (row_begin + r) * kvol;
    for (int64_t k = 0; k < kvol; ++k)
      if (t[k] >= 0) valid &= add_tile_pair(pairs, k, r, t[k], n_in);
  }
  return valid;
}

// How many register blocks ahead the vector kernels ask for the input rows they will read: the rows
// are scattered over the scan, and a block otherwise waits on each row's first load (benchmarks/
// README.md, "Issue 7 on an AVX-512 EPYC (Zen 5)").
constexpr int64_t kPrefetchBlocks = 2;

// Asks for the input rows of the pairs that the register block kPrefetchBlocks after the one starting
// at pair `block` (blocks of `rows` pairs) of one offset's list will read; each row is row_bytes long
// at base + inputs[j] * row_bytes.
inline void prefetch_block_inputs(const void* base, int64_t row_bytes, const int32_t* inputs, int64_t block,
                                  int64_t rows, int64_t count) {
  const char* bytes = static_cast<const char*>(base);
  const int64_t begin = block + kPrefetchBlocks * rows, end = std::min(count, begin + rows);
  for (int64_t j = begin; j < end; ++j)
    for (int64_t b = 0; b < row_bytes; b += 64) __builtin_prefetch(bytes + int64_t(inputs[j]) * row_bytes + b);
}

// The widest vector ISA any kernel may use: 0 none (portable loops), 1 AVX2, 2 AVX-512, 3 AVX-512 and
// AMX. The environment variable POINTENGINE_CPU_PATH_MAX (portable, avx2, avx512 or amx; pointengine
// checks its value on import) lowers it, so that an AVX-512 machine can run and time an AVX2 machine's
// paths, or an AMX one those of AVX-512 without AMX; unset, it is 3 and the CPU's own features decide.
// Read once.
int isa_cap();

// Whether this CPU (and its OS) runs AVX2 and FMA; AVX-512F; each within isa_cap().
bool cpu_has_avx2_fma();
bool cpu_has_avx512f();

// The same lists as compact_tile, found with vector compares.
bool compact_tile_avx2(const int32_t* nbr, int64_t kvol, int64_t n_in, int64_t row_begin, int64_t n_rows,
                       TilePairs pairs);

// The weight [K, C_in, C_out] regrouped into column panels of at most 32 (C_out padded with zeros to
// a multiple of 8), each panel [K, C_in, width], so the kernel streams one panel contiguously.
int64_t packed_weight_numel(int64_t kvol, int64_t c_in, int64_t c_out);
void pack_weight_avx2(const float* weight, int64_t kvol, int64_t c_in, int64_t c_out, float* packed);

// acc[r, :] += sum over offsets k (ascending), pairs j of k, input channels ci (ascending) of
// feats[inputs[j], ci] * weight[k, ci, :] for r = rows[j]; acc rows have round_up(C_out, 8) columns
// at a stride of acc_stride floats.
void conv_tile_avx2(const float* feats, const float* packed, int64_t kvol, int64_t c_in, int64_t c_out,
                    TilePairs pairs, float* acc, int64_t acc_stride);

// The AVX-512 twins (conv_tile_avx512.cpp): panels of at most 64 columns (C_out padded to a multiple
// of 16), and acc rows of exactly C_out columns (the last vector of a row is masked).
int64_t packed_weight_numel_avx512(int64_t kvol, int64_t c_in, int64_t c_out);
void pack_weight_avx512(const float* weight, int64_t kvol, int64_t c_in, int64_t c_out, float* packed);
void conv_tile_avx512(const float* feats, const float* packed, int64_t kvol, int64_t c_in, int64_t c_out,
                      TilePairs pairs, float* acc, int64_t acc_stride);

}  // namespace pointengine
