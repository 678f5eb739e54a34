// The gathered-GEMM convolution of conv_cuda.cu and its argument checks, for the other CUDA conv
// kernels.
#pragma once
#include <ATen/ATen.h>

namespace pointengine {

// feats [N_in, C_in] (a CUDA float type), weight [K, C_in, C_out] of its dtype, nbr int32 [N_out, K].
void check_conv_tables(const at::Tensor& feats, const at::Tensor& nbr, const char* op);
void check_conv_args(const at::Tensor& feats, const at::Tensor& weight, const at::Tensor& nbr, const char* op);

at::Tensor conv_gathered_gemm_cuda(const at::Tensor& feats, const at::Tensor& weight, const at::Tensor& nbr);

}  // namespace pointengine
