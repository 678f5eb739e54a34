// The 7-bit quantizer of quantize_u7 and of conv_int8's requantizing epilogue: one definition, so the
// two give the same bits. Written with SSE2 intrinsics (every x86-64 CPU has them), and with AVX2 (the
// same steps) for the CPUs that have it: with C++ compares, GCC keeps the clamps as branches (a float
// compare may trap, so it will not turn them into selects) and the loop stays scalar.
#pragma once
#include <immintrin.h>

#include <cstdint>

namespace pointengine {

// Per lane: clamp(nearbyint(y) + zero, 0, 127), ties to even; a NaN gives 0. Clamping y to
// [-256, 256] first changes no result (zero is in [0, 127]) and keeps the rounding exact: adding
// and subtracting 1.5 * 2^23 rounds any |y| < 2^22 to an integer in the current (default: to
// nearest, ties to even) rounding mode, as nearbyint does.
inline __m128i quantize_u7_lanes(__m128 y, __m128 zero) {
  const __m128 round = _mm_set1_ps(12582912.f);
  y = _mm_min_ps(_mm_max_ps(y, _mm_set1_ps(-256.f)), _mm_set1_ps(256.f));  // maxps(NaN, b) is b
  __m128 r = _mm_add_ps(_mm_sub_ps(_mm_add_ps(y, round), round), zero);
  r = _mm_min_ps(_mm_max_ps(r, _mm_setzero_ps()), _mm_set1_ps(127.f));
  return _mm_cvttps_epi32(r);
}

// quantize_u7_lanes on 8 lanes, for callers compiled for AVX2. The target leaves out FMA, so nothing
// can be contracted: the same steps, the same bits.
__attribute__((target("avx2"))) inline __m256i quantize_u7_lanes8(__m256 y, __m256 zero) {
  const __m256 round = _mm256_set1_ps(12582912.f);
  y = _mm256_min_ps(_mm256_max_ps(y, _mm256_set1_ps(-256.f)), _mm256_set1_ps(256.f));
  __m256 r = _mm256_add_ps(_mm256_sub_ps(_mm256_add_ps(y, round), round), zero);
  r = _mm256_min_ps(_mm256_max_ps(r, _mm256_setzero_ps()), _mm256_set1_ps(127.f));
  return _mm256_cvttps_epi32(r);
}

// quantize_u7_lanes on 16 lanes, for callers compiled for AVX-512F. Its target has fused multiply-add,
// so the arithmetic goes through the _round intrinsics (at the current rounding mode), which GCC
// never contracts: the same steps, the same bits.
__attribute__((target("avx512f"))) inline __m512i quantize_u7_lanes16(__m512 y, __m512 zero) {
  constexpr int kCurrent = _MM_FROUND_CUR_DIRECTION;
  const __m512 round = _mm512_set1_ps(12582912.f);
  y = _mm512_min_ps(_mm512_max_ps(y, _mm512_set1_ps(-256.f)), _mm512_set1_ps(256.f));
  __m512 r = _mm512_add_round_ps(_mm512_sub_round_ps(_mm512_add_round_ps(y, round, kCurrent), round, kCurrent), zero,
                                 kCurrent);
  r = _mm512_min_ps(_mm512_max_ps(r, _mm512_setzero_ps()), _mm512_set1_ps(127.f));
  return _mm512_cvttps_epi32(r);
}

// out[c] = the 7-bit value of v[c] / scale (float32 division) for c < n; whether some v[c] is NaN.
inline bool quantize_u7_span(const float* v, int64_t n, float scale, int32_t zero, uint8_t* out) {
  const __m128 s = _mm_set1_ps(scale), z = _mm_set1_ps(float(zero));
  __m128 nan = _mm_setzero_ps();
  int64_t c = 0;
  for (; c + 16 <= n; c += 16) {
    __m128i q[4];
    for (int i = 0; i < 4; ++i) {
      const __m128 x = _mm_loadu_ps(v + c + 4 * i);
      nan = _mm_or_ps(nan, _mm_cmpunord_ps(x, x));
      q[i] = quantize_u7_lanes(_mm_div_ps(x, s), z);
    }
    const __m128i bytes = _mm_packus_epi16(_mm_packs_epi32(q[0], q[1]), _mm_packs_epi32(q[2], q[3]));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + c), bytes);
  }
  for (; c < n; ++c) {
    const __m128 x = _mm_load_ss(v + c);  // upper lanes zero
    nan = _mm_or_ps(nan, _mm_cmpunord_ps(x, x));
    out[c] = uint8_t(_mm_cvtsi128_si32(quantize_u7_lanes(_mm_div_ss(x, s), z)));
  }
  return _mm_movemask_ps(nan) != 0;
}

// quantize_u7_span, 16 columns at a time, for callers on CPUs with AVX2 (the same bits).
__attribute__((target("avx2"))) inline bool quantize_u7_span_avx2(const float* v, int64_t n, float scale,
                                                                   int32_t zero, uint8_t* out) {
  const __m256 s = _mm256_set1_ps(scale), z = _mm256_set1_ps(float(zero));
  __m256 nan = _mm256_setzero_ps();
  int64_t c = 0;
  for (; c + 16 <= n; c += 16) {
    const __m256 x_lo = _mm256_loadu_ps(v + c), x_hi = _mm256_loadu_ps(v + c + 8);
    nan = _mm256_or_ps(nan, _mm256_cmp_ps(x_lo, x_lo, _CMP_UNORD_Q));
    nan = _mm256_or_ps(nan, _mm256_cmp_ps(x_hi, x_hi, _CMP_UNORD_Q));
    const __m256i lo = quantize_u7_lanes8(_mm256_div_ps(x_lo, s), z);
    const __m256i hi = quantize_u7_lanes8(_mm256_div_ps(x_hi, s), z);
    // packs works within 128-bit lanes: put the 16 words back in column order before the last pack.
    const __m256i words = _mm256_permute4x64_epi64(_mm256_packs_epi32(lo, hi), 0xD8);
    const __m128i bytes = _mm_packus_epi16(_mm256_castsi256_si128(words), _mm256_extracti128_si256(words, 1));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + c), bytes);
  }
  const bool tail_nan = quantize_u7_span(v + c, n - c, scale, zero, out + c);
  return _mm256_movemask_ps(nan) != 0 || tail_nan;
}

// quantize_u7_span, 16 columns at a time, for callers on CPUs with AVX-512F (the same bits).
__attribute__((target("avx2,avx512f"))) inline bool quantize_u7_span_avx512(const float* v, int64_t n, float scale,
                                                                            int32_t zero, uint8_t* out) {
  const __m512 s = _mm512_set1_ps(scale), z = _mm512_set1_ps(float(zero));
  __mmask16 nan = 0;
  int64_t c = 0;
  for (; c + 16 <= n; c += 16) {
    const __m512 x = _mm512_loadu_ps(v + c);
    nan |= _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
    const __m512i q = quantize_u7_lanes16(_mm512_div_round_ps(x, s, _MM_FROUND_CUR_DIRECTION), z);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + c), _mm512_cvtepi32_epi8(q));  // each in [0, 127]
  }
  const bool tail_nan = quantize_u7_span_avx2(v + c, n - c, scale, zero, out + c);
  return nan != 0 || tail_nan;
}

}  // namespace pointengine
