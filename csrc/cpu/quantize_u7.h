// The 7-bit quantizer of quantize_u7 and of conv_int8's requantizing epilogue: one definition, so the
// two give the same bits.
#pragma once
#include <cstdint>

namespace pointengine {

// clamp(nearbyint(y) + zero, 0, 127), ties to even; a NaN gives 0. Clamping y to [-256, 256] first
// changes no result (zero is in [0, 127]) and keeps the rounding exact: adding and subtracting
// 1.5 * 2^23 rounds any |y| < 2^22 to an integer in the current (default: to nearest, ties to even)
// rounding mode, as nearbyint does, in plain float arithmetic that vectorizes.
inline uint8_t quantize_u7_value(float y, int32_t zero) {
  constexpr float kRound = 12582912.f;
  y = y > -256.f ? y : -256.f;  // NaN fails the compare: -256
  y = y < 256.f ? y : 256.f;
  float r = (y + kRound) - kRound + float(zero);
  r = r > 0.f ? r : 0.f;
  r = r < 127.f ? r : 127.f;
  return uint8_t(int32_t(r));
}

}  // namespace pointengine
