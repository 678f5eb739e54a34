// What the fused convolutions apply to a tile's finished accumulators: out = relu?(acc + bias +
// residual), each part optional (null / false). Element by element after the whole sum, so the
// sum's order is unchanged. Plain C++, no ATen.
#pragma once
#include <cstdint>
#include <type_traits>

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
    if constexpr (std::is_same_v<out_t, scalar_t>) {
      const bool nothing_to_do = !bias && !residual && !relu;
      if (nothing_to_do && acc == out + row_begin * c_out && acc_stride == c_out) return;
    }
    for (int64_t r = 0; r < n_rows; ++r) {
      const scalar_t* a = acc + r * acc_stride;
      const scalar_t* res = residual ? residual + (row_begin + r) * c_out : nullptr;
      out_t* o = out + (row_begin + r) * c_out;
      for (int64_t co = 0; co < c_out; ++co) {
        scalar_t v = a[co];
        if (bias) v += bias[co];
        if (res) v += res[co];
        o[co] = out_t(relu && v < scalar_t(0) ? scalar_t(0) : v);
      }
    }
  }
};

}  // namespace pointengine
