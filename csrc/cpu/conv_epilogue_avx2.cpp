// Epilogue<float> 8 columns at a time for the vector paths of the float32 and bfloat16 convolutions.
// Compiled for AVX2 without FMA (there is no multiply to contract anyway): the same additions in the
// same order as Epilogue::apply, so the same bits; the bfloat16 rounding is c10::BFloat16's (to
// nearest even, any NaN to 0x7FC0) done on the integer bits. Each row's last columns take the
// scalar loop.
#include <immintrin.h>

#include <c10/util/BFloat16.h>

#include "conv_epilogue.h"

#define PE_AVX2_NO_FMA __attribute__((target("avx2")))

namespace pointengine {
namespace {

PE_AVX2_NO_FMA inline __m256 finished(const Epilogue<float>& e, const float* a, const float* bias, const float* res) {
  __m256 v = _mm256_loadu_ps(a);
  if (bias) v = _mm256_add_ps(v, _mm256_loadu_ps(bias));
  if (res) v = _mm256_add_ps(v, _mm256_loadu_ps(res));
  // maxps(0, x) is x for a NaN x and for -0, as x < 0 ? 0 : x.
  return e.relu ? _mm256_max_ps(_mm256_setzero_ps(), v) : v;
}

// 8 bfloat16 bits, c10's round_to_nearest_even lane by lane.
PE_AVX2_NO_FMA inline __m128i bf16_bits(__m256 v) {
  const __m256i u = _mm256_castps_si256(v);
  const __m256i bias = _mm256_add_epi32(_mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1)),
                                        _mm256_set1_epi32(0x7FFF));
  __m256i r = _mm256_srli_epi32(_mm256_add_epi32(u, bias), 16);
  r = _mm256_blendv_epi8(r, _mm256_set1_epi32(0x7FC0), _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q)));
  // The 8 values are below 2^16: pack them to 16 bits without saturating, in column order.
  const __m256i words = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0x08);
  return _mm256_castsi256_si128(words);
}

PE_AVX2_NO_FMA inline void store(float* o, __m256 v) { _mm256_storeu_ps(o, v); }
PE_AVX2_NO_FMA inline void store(c10::BFloat16* o, __m256 v) {
  _mm_storeu_si128(reinterpret_cast<__m128i*>(o), bf16_bits(v));
}

template <typename out_t>
PE_AVX2_NO_FMA void rows_avx2(const Epilogue<float>& e, const float* acc, int64_t acc_stride, int64_t row_begin,
                              int64_t n_rows, int64_t c_out, out_t* out) {
  const int64_t whole = c_out / 8 * 8;
  const Epilogue<float> tail{e.bias ? e.bias + whole : nullptr, nullptr, e.relu};
  for (int64_t r = 0; r < n_rows; ++r) {
    const float* a = acc + r * acc_stride;
    const float* res = e.residual ? e.residual + (row_begin + r) * c_out : nullptr;
    out_t* o = out + (row_begin + r) * c_out;
    for (int64_t c = 0; c < whole; c += 8)
      store(o + c, finished(e, a + c, e.bias ? e.bias + c : nullptr, res ? res + c : nullptr));
    if (whole < c_out) tail.apply_row(a + whole, res ? res + whole : nullptr, c_out - whole, o + whole);
  }
}

}  // namespace

void apply_epilogue_avx2(const Epilogue<float>& e, const float* acc, int64_t acc_stride, int64_t row_begin,
                         int64_t n_rows, int64_t c_out, float* out) {
  if (e.nothing_to_do(acc, acc_stride, row_begin, c_out, out)) return;
  rows_avx2(e, acc, acc_stride, row_begin, n_rows, c_out, out);
}

void apply_epilogue_avx2(const Epilogue<float>& e, const float* acc, int64_t acc_stride, int64_t row_begin,
                         int64_t n_rows, int64_t c_out, c10::BFloat16* out) {
  rows_avx2(e, acc, acc_stride, row_begin, n_rows, c_out, out);
}

}  // namespace pointengine
