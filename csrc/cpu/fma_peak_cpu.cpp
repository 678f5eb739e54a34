// The float32 FMA peak of this machine, measured: every thread runs independent chains of fused
// multiply-adds in registers on the widest path the fused convolution takes here (AVX-512, AVX2 or
// scalar), for the profiler's "% peak" (pointengine/peaks.py). No memory is touched in the loop.
#include <ATen/Parallel.h>
#include <immintrin.h>

#include <chrono>
#include <cmath>
#include <vector>

#include "conv_fused_cpu.h"
#include "conv_tile.h"

namespace pointengine {
namespace {

// Independent chains: 8 hide the FMA latency (4 cycles) on 2 units; more, so that a core with a
// longer latency still issues every cycle, within the registers (16 of 32 zmm, 12 of 16 ymm).
constexpr int kChains512 = 16, kChains256 = 12, kChainsScalar = 12;

// Each returns the FLOPs done (2 per lane per FMA) and writes a sum the compiler cannot drop.
__attribute__((target("avx512f"))) double chains_avx512(int64_t iters, float* sink) {
  __m512 a[kChains512];
  for (int j = 0; j < kChains512; ++j) a[j] = _mm512_set1_ps(1.0f + j * 1e-3f);
  const __m512 m = _mm512_set1_ps(0.9999999f), b = _mm512_set1_ps(1e-7f);
  for (int64_t i = 0; i < iters; ++i)
#pragma GCC unroll 16
    for (int j = 0; j < kChains512; ++j) a[j] = _mm512_fmadd_ps(a[j], m, b);
  for (int j = 1; j < kChains512; ++j) a[0] = _mm512_add_ps(a[0], a[j]);
  *sink = _mm512_reduce_add_ps(a[0]);
  return 2.0 * 16 * kChains512 * double(iters);
}

__attribute__((target("avx2,fma"))) double chains_avx2(int64_t iters, float* sink) {
  __m256 a[kChains256];
  for (int j = 0; j < kChains256; ++j) a[j] = _mm256_set1_ps(1.0f + j * 1e-3f);
  const __m256 m = _mm256_set1_ps(0.9999999f), b = _mm256_set1_ps(1e-7f);
  for (int64_t i = 0; i < iters; ++i)
#pragma GCC unroll 12
    for (int j = 0; j < kChains256; ++j) a[j] = _mm256_fmadd_ps(a[j], m, b);
  float lanes[8];
  for (int j = 1; j < kChains256; ++j) a[0] = _mm256_add_ps(a[0], a[j]);
  _mm256_storeu_ps(lanes, a[0]);
  *sink = lanes[0] + lanes[7];
  return 2.0 * 8 * kChains256 * double(iters);
}

double chains_scalar(int64_t iters, float* sink) {
  float a[kChainsScalar];
  for (int j = 0; j < kChainsScalar; ++j) a[j] = 1.0f + j * 1e-3f;
  for (int64_t i = 0; i < iters; ++i)
    for (int j = 0; j < kChainsScalar; ++j) a[j] = std::fma(a[j], 0.9999999f, 1e-7f);
  *sink = a[0] + a[kChainsScalar - 1];
  return 2.0 * kChainsScalar * double(iters);
}

double chains(CpuPath path, int64_t iters, float* sink) {
  switch (path) {
    case CpuPath::kAvx512: return chains_avx512(iters, sink);
    case CpuPath::kAvx2: return chains_avx2(iters, sink);
    default: return chains_scalar(iters, sink);
  }
}

}  // namespace

double fma_peak_flops(double seconds) {
  TORCH_CHECK(seconds > 0 && seconds <= 10, "fma_peak_flops: seconds must be in (0, 10], got ", seconds);
  const CpuPath path = best_cpu_path();
  float sink = 0;
  // Calibrate on one thread: iterations for about `seconds`.
  int64_t iters = 1 << 16;
  for (;;) {
    const auto start = std::chrono::steady_clock::now();
    chains(path, iters, &sink);
    const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (took >= seconds / 8 || iters > (int64_t(1) << 40)) {
      iters = int64_t(double(iters) * seconds / std::max(took, 1e-9));
      break;
    }
    iters *= 4;
  }
  const int threads = at::get_num_threads();
  std::vector<double> flops(threads, 0.0);
  std::vector<float> sinks(threads, 0.f);
  const auto start = std::chrono::steady_clock::now();
  at::parallel_for(0, threads, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) flops[t] = chains(path, iters, &sinks[t]);
  });
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  double total = 0;
  for (double f : flops) total += f;
  return total / took;
}

}  // namespace pointengine
