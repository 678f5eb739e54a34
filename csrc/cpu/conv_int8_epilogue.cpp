// The epilogue of conv_int8, shared by every path: int32 sums -> float32, scaled, bias, residual,
// ReLU, and the optional requantization to 7-bit uint8 (quantize_u7.h).
//
// Each step is one float32 operation with one rounding, in a fixed order. This file is compiled
// for the baseline x86-64 target, which has no fused multiply-add, so the compiler cannot contract
// float(acc) * scale + bias into one FMA (which would round once instead of twice): whichever kernel
// computed the sums, the outputs are the same bits. SSE2 intrinsics, 4 columns at a time (GCC does
// not vectorize the ReLU's compare, see quantize_u7.h); the scalar tail does the same operations.
// The vector kernels' epilogue takes 8 columns at a time with AVX2, again without FMA in its target,
// or 16 with AVX-512 (whose target has FMA: float_results_avx512 says how it keeps the roundings
// apart), and leaves each stretch's last columns to the narrower code.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "conv_int8_tile.h"
#include "quantize_u7.h"

namespace pointengine {
namespace {

// v[c] for c < n: the float32 results of one stretch of a row.
void float_results(const Int8Epilogue& e, const int32_t* acc, const float* scale, const float* bias,
                   const float* res, int64_t n, float* v) {
  const __m128 zero = _mm_setzero_ps();
  int64_t c = 0;
  for (; c + 4 <= n; c += 4) {
    const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(acc + c));
    __m128 x = _mm_mul_ps(_mm_cvtepi32_ps(a), _mm_loadu_ps(scale + c));
    if (bias) x = _mm_add_ps(x, _mm_loadu_ps(bias + c));
    if (res) x = _mm_add_ps(x, _mm_loadu_ps(res + c));
    if (e.relu) x = _mm_max_ps(zero, x);  // maxps(0, NaN) is NaN, maxps(0, -0) is -0: x < 0 ? 0 : x
    _mm_storeu_ps(v + c, x);
  }
  for (; c < n; ++c) {
    float x = float(acc[c]) * scale[c];
    if (bias) x += bias[c];
    if (res) x += res[c];
    v[c] = e.relu && x < 0.f ? 0.f : x;
  }
}

#define PE_AVX2_NO_FMA __attribute__((target("avx2")))

PE_AVX2_NO_FMA void float_results_avx2(const Int8Epilogue& e, const int32_t* acc, const float* scale, const float* bias,
                                       const float* res, int64_t n, float* v) {
  const __m256 zero = _mm256_setzero_ps();
  int64_t c = 0;
  for (; c + 8 <= n; c += 8) {
    const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(acc + c));
    __m256 x = _mm256_mul_ps(_mm256_cvtepi32_ps(a), _mm256_loadu_ps(scale + c));
    if (bias) x = _mm256_add_ps(x, _mm256_loadu_ps(bias + c));
    if (res) x = _mm256_add_ps(x, _mm256_loadu_ps(res + c));
    if (e.relu) x = _mm256_max_ps(zero, x);
    _mm256_storeu_ps(v + c, x);
  }
  // GCC reaches the SSE2 tail by a jump without vzeroupper; with the upper halves left dirty, every
  // SSE instruction after it pays a blend on Intel (half of a 32 -> 32 layer's time on a Xeon).
  _mm256_zeroupper();
  float_results(e, acc + c, scale + c, bias ? bias + c : nullptr, res ? res + c : nullptr, n - c, v + c);
}

// The same 16 columns at a time. Its target has fused multiply-add: the _round intrinsics (at the
// current rounding mode) keep the multiply and the additions apart, each rounding once.
__attribute__((target("avx2,avx512f"))) void float_results_avx512(const Int8Epilogue& e, const int32_t* acc,
                                                                  const float* scale, const float* bias,
                                                                  const float* res, int64_t n, float* v) {
  constexpr int kCurrent = _MM_FROUND_CUR_DIRECTION;
  const __m512 zero = _mm512_setzero_ps();
  int64_t c = 0;
  for (; c + 16 <= n; c += 16) {
    const __m512 sums = _mm512_cvtepi32_ps(_mm512_loadu_si512(acc + c));
    __m512 x = _mm512_mul_round_ps(sums, _mm512_loadu_ps(scale + c), kCurrent);
    if (bias) x = _mm512_add_round_ps(x, _mm512_loadu_ps(bias + c), kCurrent);
    if (res) x = _mm512_add_round_ps(x, _mm512_loadu_ps(res + c), kCurrent);
    if (e.relu) x = _mm512_max_ps(zero, x);
    _mm512_storeu_ps(v + c, x);
  }
  float_results_avx2(e, acc + c, scale + c, bias ? bias + c : nullptr, res ? res + c : nullptr, n - c, v + c);
}

}  // namespace

void apply_int8_epilogue(const Int8Epilogue& e, const int32_t* acc, int64_t acc_stride, int64_t row_begin,
                         int64_t n_rows, int64_t c_out, float* out_float, uint8_t* out_u7, Int8Path path) {
  const auto results = path >= Int8Path::kAvx512Vnni ? float_results_avx512
                       : path == Int8Path::kAvx2     ? float_results_avx2
                                                     : float_results;
  const auto quantize = path >= Int8Path::kAvx512Vnni ? quantize_u7_span_avx512
                        : path == Int8Path::kAvx2     ? quantize_u7_span_avx2
                                                      : quantize_u7_span;
  const bool requantize = e.out_scale > 0.f;
  constexpr int64_t kChunk = 256;
  float v[kChunk];
  for (int64_t r = 0; r < n_rows; ++r) {
    const int64_t row = row_begin + r;
    for (int64_t c0 = 0; c0 < c_out; c0 += kChunk) {
      const int64_t n = std::min(kChunk, c_out - c0);
      const float* res = e.residual ? e.residual + row * c_out + c0 : nullptr;
      float* dst = requantize ? v : out_float + row * c_out + c0;
      results(e, acc + r * acc_stride + c0, e.scale + c0, e.bias ? e.bias + c0 : nullptr, res, n, dst);
      if (requantize) quantize(v, n, e.out_scale, e.out_zero, out_u7 + row * c_out + c0);
    }
  }
}

}  // namespace pointengine
