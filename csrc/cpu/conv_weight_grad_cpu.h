// The weight gradient of the fused convolution: its op entry point, and the AVX2 and AVX-512 float
// kernels of one column panel (conv_weight_grad_avx2.cpp, conv_weight_grad_avx512.cpp, no ATen).
#pragma once
#include <ATen/ATen.h>

#include <cstdint>

#include "conv_fused_cpu.h"

namespace pointengine {

// The conv_weight_grad op on a given path (tests cover every path the CPU has).
at::Tensor conv_weight_grad_path(const at::Tensor& feats, const at::Tensor& grad_out, const at::Tensor& nbr,
                                 CpuPath path);

// Columns per panel: a task owns one offset's [C_in, panel] block of the gradient.
constexpr int64_t kGradPanel = 32;

// acc[ci, j] += sum over pairs p (ascending) of feats[in_rows[p], ci] * grad[out_rows[p], col + j],
// for j < width (a multiple of 8, <= kGradPanel; grad rows hold at least col + width columns at a
// stride of grad_stride floats); acc rows have `width` columns.
void weight_grad_panel_avx2(const float* feats, int64_t c_in, const float* grad, int64_t grad_stride,
                            const int32_t* in_rows, const int32_t* out_rows, int64_t n_pairs, int64_t col,
                            int64_t width, float* acc);
// The same on AVX-512 (conv_weight_grad_avx512.cpp), bit for bit.
void weight_grad_panel_avx512(const float* feats, int64_t c_in, const float* grad, int64_t grad_stride,
                              const int32_t* in_rows, const int32_t* out_rows, int64_t n_pairs, int64_t col,
                              int64_t width, float* acc);

}  // namespace pointengine
