// What every CUDA kernel file shares: launch sizes, the current stream, and the checks of float
// matrices in the dtypes the GPU computes in.
#pragma once
#include <ATen/ATen.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include <cstdint>

#include "../common/checks.h"

namespace pointengine {

constexpr int kThreads = 256;

// Per-axis strides passed to a kernel by value.
struct Stride3 {
  int64_t v[3];
};

// Blocks of kThreads covering n items (at least one, so that a launch over nothing stays valid).
inline unsigned int blocks_for(int64_t n) {
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  return unsigned(blocks < 1 ? 1 : blocks);
}

inline cudaStream_t current_stream() { return c10::cuda::getCurrentCUDAStream(); }

inline bool is_cuda_float(at::ScalarType t) {
  return t == at::kHalf || t == at::kBFloat16 || t == at::kFloat || t == at::kDouble;
}

// A CUDA matrix of float16, bfloat16, float32 or float64.
inline void check_cuda_float_matrix(const at::Tensor& t, const char* op, const char* arg, const char* layout) {
  TORCH_CHECK(t.defined(), op, ": ", arg, " is an undefined tensor");
  TORCH_CHECK(is_cuda_float(t.scalar_type()), op, ": ", arg, " must be float16, bfloat16, float32 or float64, got ",
              dtype_name(t.scalar_type()));
  check_matrix(t, op, arg, t.scalar_type(), -1, layout, at::kCUDA);
}

// The counts that a kernel gathered on the device, read with one synchronisation.
inline std::vector<int64_t> read_counts(const at::Tensor& counts) {
  const at::Tensor host = counts.to(at::kCPU);
  const int64_t* c = host.data_ptr<int64_t>();
  return std::vector<int64_t>(c, c + host.numel());
}

}  // namespace pointengine
