// quantize_u7: float32 [N, C] -> uint8 [N, C] = clamp(nearbyint(x / scale) + zero, 0, 127), the 7-bit
// activations conv_int8 reads, in one pass over rows in parallel (any strides). Each element is
// independent, so any split gives the same bits; a NaN anywhere is refused after the pass.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cfloat>
#include <cmath>

#include "../common/checks.h"
#include "conv_tile.h"
#include "quantize_u7.h"

namespace pointengine {
namespace {

using SpanFn = bool (*)(const float*, int64_t, float, int32_t, uint8_t*);

// The widest quantize_u7_span this CPU runs (the same bits).
SpanFn widest_span() {
  if (cpu_has_avx512f()) return quantize_u7_span_avx512;
  return cpu_has_avx2_fma() ? quantize_u7_span_avx2 : quantize_u7_span;
}

// Whether the row holds a NaN. Strided rows are copied in stretches to a contiguous buffer first.
bool quantize_row(const float* x, int64_t stride, int64_t n, float scale, int32_t zero, uint8_t* out, SpanFn span) {
  if (stride == 1) return span(x, n, scale, zero, out);
  constexpr int64_t kChunk = 256;
  float v[kChunk];
  bool nan = false;
  for (int64_t c0 = 0; c0 < n; c0 += kChunk) {
    const int64_t len = std::min(kChunk, n - c0);
    for (int64_t c = 0; c < len; ++c) v[c] = x[(c0 + c) * stride];
    nan |= span(v, len, scale, zero, out + c0);
  }
  return nan;
}

at::Tensor quantize_u7_cpu(const at::Tensor& x, double scale, int64_t zero) {
  constexpr const char* op = "quantize_u7";
  check_matrix(x, op, "x", at::kFloat, -1, "[N, C]");
  TORCH_CHECK(std::isfinite(scale) && scale > 0 && scale <= FLT_MAX && float(scale) > 0.f, op,
              ": scale must be a finite float32 > 0, got ", scale);
  TORCH_CHECK(zero >= 0 && zero <= 127, op, ": zero must be in [0, 127] (7-bit activations), got ", zero);
  const int64_t rows = x.size(0), cols = x.size(1);
  at::Tensor out = at::empty({rows, cols}, at::kByte);
  const float* base = x.data_ptr<float>();
  uint8_t* dst = out.data_ptr<uint8_t>();
  const int64_t row_stride = x.stride(0), col_stride = x.stride(1);
  std::atomic<bool> nan{false};
  const SpanFn span = widest_span();
  // About 64 KiB of input per task: enough to amortise the hand-out, small enough to split a scan.
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(cols, 1));
  at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
    bool found = false;
    for (int64_t r = begin; r < end; ++r)
      found |= quantize_row(base + r * row_stride, col_stride, cols, float(scale), int32_t(zero), dst + r * cols, span);
    if (found) nan = true;
  });
  TORCH_CHECK(!nan.load(), op, ": x holds NaN");
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(pointengine, CPU, m) { m.impl("quantize_u7", &quantize_u7_cpu); }

}  // namespace pointengine
