// What the AMX kernels (conv_int8_amx.cpp, conv_tile_amx_bf16.cpp) share: the tile configuration,
// the check that this CPU and its OS run AMX, and the gather of a block's input rows into tile rows.
// Plain C++, no ATen.
#pragma once
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>

namespace pointengine {

constexpr int kAmxRows = 16;           // rows of a tile: pairs of one offset per block
constexpr int64_t kAmxRowBytes = 64;   // bytes of a tile row

// The 64-byte operand of ldtilecfg, palette 1.
struct alignas(64) AmxTileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t bytes_per_row[16] = {};
  uint8_t rows[16] = {};
};

// Whether the CPU has AMX-TILE and the AMX feature at bit `feature` of CPUID.(EAX=7, ECX=0):EDX (25
// int8, 22 bf16), and Linux hands this process the tile state. Linux does so only when asked
// (arch_prctl ARCH_REQ_XCOMP_PERM for XFEATURE_XTILEDATA); without it the first tile instruction faults.
inline bool cpu_runs_amx(int feature) {
  unsigned eax, ebx, ecx, edx;
  if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx) || !((edx >> 24) & 1) || !((edx >> feature) & 1)) return false;
  constexpr long kRequestPermission = 0x1023, kTileData = 18;
  return syscall(SYS_arch_prctl, kRequestPermission, kTileData) == 0;
}

// Bytes [c * 64, c * 64 + 64) of each of the m rows at base + inputs[r] * row_bytes into row r of chunk
// c of `block` (chunks of 16 rows of 64 bytes), zero past the row's end.
__attribute__((target("avx512f,avx512bw"))) inline void gather_tile_rows(const uint8_t* base, int64_t row_bytes,
                                                                          const int32_t* inputs, int m,
                                                                          int64_t chunks, uint8_t* block) {
  for (int r = 0; r < m; ++r) {
    const uint8_t* row = base + int64_t(inputs[r]) * row_bytes;
    for (int64_t c = 0; c < chunks; ++c) {
      const int64_t left = row_bytes - c * kAmxRowBytes;
      const __mmask64 mask = left >= kAmxRowBytes ? ~__mmask64(0) : (__mmask64(1) << left) - 1;
      _mm512_storeu_si512(block + (c * kAmxRows + r) * kAmxRowBytes, _mm512_maskz_loadu_epi8(mask, row + c * kAmxRowBytes));
    }
  }
}

}  // namespace pointengine
