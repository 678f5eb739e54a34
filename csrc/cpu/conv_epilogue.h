// What the fused convolutions apply to a tile's finished accumulators: out = relu?(acc + bias +
// residual), each part optional (null / false). Element by element after the whole sum, so the
// sum's order is unchanged. Plain C++, no ATen.
#pragma once
#include <cstdint>
#include <type_traits>

namespace c10 {
struct BFloat16;
}

namespace pointengine {

template <typename scalar_t>
struct Epilogue {
  const scalar_t* bias = nullptr;      // [C_out]
  const scalar_t* residual = nullptr;  // [N_out, C_out]
  bool relu = false;

  // Output rows [row_begin, row_begin + n_rows): from acc (row stride acc_stride) into out (may be
  // acc). out_t is scalar_t, or a narrower type the finished value is converted to (c10::BFloat16
  // rounds to nearest even).
  template <typename out_t>
  void apply(const scalar_t* acc, int64_t acc_stride, int64_t row_begin, int64_t n_rows, int64_t c_out,
             out_t* out) const {
    if constexpr (std::is_same_v<out_t, scalar_t>)
      if (nothing_to_do(acc, acc_stride, row_begin, c_out, out)) return;
    for (int64_t r = 0; r < n_rows; ++r)
      apply_row(acc + r * acc_stride, residual ? residual + (row_begin + r) * c_out : nullptr, c_out,
                out + (row_begin + r) * c_out);
  }

  // Whether out already holds the result: the sums were made in place and nothing is added.
  bool nothing_to_do(const scalar_t* acc, int64_t acc_stride, int64_t row_begin, int64_t c_out,
                     const scalar_t* out) const {
    return !bias && !residual && !relu && acc == out + row_begin * c_out && acc_stride == c_out;
  }

  // The first n columns of one row: a its sums, res its residual row (or null).
  template <typename out_t>
  void apply_row(const scalar_t* a, const scalar_t* res, int64_t n, out_t* o) const {
    for (int64_t co = 0; co < n; ++co) {
      scalar_t v = a[co];
      if (bias) v += bias[co];
      if (res) v += res[co];
      o[co] = out_t(relu && v < scalar_t(0) ? scalar_t(0) : v);
    }
  }
};

// Epilogue<float>::apply 8 columns at a time, for the AVX2 and AVX-512 paths (only where the CPU has
// AVX2; conv_epilogue_avx2.cpp): the same bits.
void apply_epilogue_avx2(const Epilogue<float>& e, const float* acc, int64_t acc_stride, int64_t row_begin,
                         int64_t n_rows, int64_t c_out, float* out);
void apply_epilogue_avx2(const Epilogue<float>& e, const float* acc, int64_t acc_stride, int64_t row_begin,
                         int64_t n_rows, int64_t c_out, c10::BFloat16* out);

}  // namespace pointengine
