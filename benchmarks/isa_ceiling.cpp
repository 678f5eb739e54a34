// The instruction ceilings behind bench_int8.py's ratios: multiply-adds per second of independent
// register chains on one core, float32 FMA (vfmadd231ps ymm, 8 per instruction) against the AVX2
// int8 step of conv_int8 (vpmaddubsw, vpmaddwd with ones, vpaddd: 32 per step) and its step for 7-bit
// weights (two vpmaddubsw added by vpaddw before vpmaddwd and vpaddd: 64 per step), and where the CPU
// has AVX-512 the zmm instructions of the AVX-512 kernels: vfmadd231ps (16), vpdpbusd (VNNI, 64) and
// vdpbf16ps (BF16, 32). No memory traffic, no dependencies between chains: the most each kernel
// could reach.
//
//     g++ -O2 -falign-loops=64 -o /tmp/isa_ceiling benchmarks/isa_ceiling.cpp && /tmp/isa_ceiling
//
// (-falign-loops=64: the int8 loop of 18 instructions ran 10-20 % slower where it happened to straddle
// a fetch boundary.)
#include <chrono>
#include <cstdio>

namespace {

constexpr long kSteps = 100000000;

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

#define FMA(A) "vfmadd231ps %%ymm14, %%ymm15, %%ymm" #A "\n"
#define INT8_STEP(T, A) \
  "vpmaddubsw %%ymm13, %%ymm14, %%ymm" #T "\n vpmaddwd %%ymm15, %%ymm" #T ", %%ymm" #T "\n vpaddd %%ymm" #T ", %%ymm" #A ", %%ymm" #A "\n"
#define INT8_NARROW_STEP(T, U, A)                                                                 \
  "vpmaddubsw %%ymm13, %%ymm14, %%ymm" #T "\n vpmaddubsw %%ymm13, %%ymm14, %%ymm" #U "\n vpaddw %%ymm" #U \
  ", %%ymm" #T ", %%ymm" #T "\n vpmaddwd %%ymm15, %%ymm" #T ", %%ymm" #T "\n vpaddd %%ymm" #T ", %%ymm" #A \
  ", %%ymm" #A "\n"
#define FMA_Z(A) "vfmadd231ps %%zmm14, %%zmm15, %%zmm" #A "\n"
#define VNNI_Z(A) "vpdpbusd %%zmm14, %%zmm15, %%zmm" #A "\n"
#define BF16_Z(A) "vdpbf16ps %%zmm14, %%zmm15, %%zmm" #A "\n"
#define CLOBBERS "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11"

double fp32_macs_per_s() {
  const auto start = std::chrono::steady_clock::now();
  for (long n = 0; n < kSteps; ++n)
    __asm__ volatile(FMA(0) FMA(1) FMA(2) FMA(3) FMA(4) FMA(5) FMA(6) FMA(7) FMA(8) FMA(9) FMA(10) FMA(11) ::: CLOBBERS);
  return kSteps * 12.0 * 8 / seconds_since(start);
}

double int8_macs_per_s() {
  const auto start = std::chrono::steady_clock::now();
  for (long n = 0; n < kSteps; ++n)
    __asm__ volatile(INT8_STEP(0, 6) INT8_STEP(1, 7) INT8_STEP(2, 8) INT8_STEP(3, 9) INT8_STEP(4, 10) INT8_STEP(5, 11)
                     ::: CLOBBERS);
  return kSteps * 6.0 * 32 / seconds_since(start);
}

double int8_narrow_macs_per_s() {
  const auto start = std::chrono::steady_clock::now();
  for (long n = 0; n < kSteps; ++n)
    __asm__ volatile(INT8_NARROW_STEP(0, 4, 8) INT8_NARROW_STEP(1, 5, 9) INT8_NARROW_STEP(2, 6, 10)
                         INT8_NARROW_STEP(3, 7, 11) ::: CLOBBERS);
  return kSteps * 4.0 * 64 / seconds_since(start);
}

// 12 independent chains of one zmm instruction making `macs` multiply-adds each.
#define ZMM_CHAINS(NAME, STEP, MACS)                                                                            \
  double NAME() {                                                                                              \
    const auto start = std::chrono::steady_clock::now();                                                       \
    for (long n = 0; n < kSteps; ++n)                                                                          \
      __asm__ volatile(STEP(0) STEP(1) STEP(2) STEP(3) STEP(4) STEP(5) STEP(6) STEP(7) STEP(8) STEP(9) STEP(10) \
                           STEP(11) ::: CLOBBERS);                                                             \
    return kSteps * 12.0 * MACS / seconds_since(start);                                                        \
  }
ZMM_CHAINS(fp32_zmm_macs_per_s, FMA_Z, 16)
ZMM_CHAINS(vnni_zmm_macs_per_s, VNNI_Z, 64)
ZMM_CHAINS(bf16_zmm_macs_per_s, BF16_Z, 32)

}  // namespace

int main() {
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) {
    std::printf("this CPU has no AVX2 + FMA\n");
    return 1;
  }
  for (int run = 0; run < 3; ++run) {
    const double fp32 = fp32_macs_per_s(), int8 = int8_macs_per_s(), narrow = int8_narrow_macs_per_s();
    std::printf("float32 FMA %.1f GMAC/s, int8 AVX2 step %.1f GMAC/s: %.2fx, with 7-bit weights %.1f GMAC/s: %.2fx\n",
                fp32 / 1e9, int8 / 1e9, int8 / fp32, narrow / 1e9, narrow / fp32);
  }
  if (!__builtin_cpu_supports("avx512f")) return 0;
  for (int run = 0; run < 3; ++run) {
    const double fp32 = fp32_zmm_macs_per_s();
    std::printf("zmm: float32 FMA %.1f GMAC/s", fp32 / 1e9);
    if (__builtin_cpu_supports("avx512vnni")) {
      const double vnni = vnni_zmm_macs_per_s();
      std::printf(", int8 VNNI %.1f GMAC/s (%.2fx)", vnni / 1e9, vnni / fp32);
    }
    if (__builtin_cpu_supports("avx512bf16")) {
      const double bf16 = bf16_zmm_macs_per_s();
      std::printf(", bf16 %.1f GMAC/s (%.2fx)", bf16 / 1e9, bf16 / fp32);
    }
    std::printf("\n");
  }
}
