// Implicit-GEMM sparse convolution on the tensor cores (float16 and bfloat16, float32 accumulation):
// out[o] = sum_k feats[nbr[o, k]] @ weight[k] with nothing gathered in global memory. A block owns a
// tile of 64 output rows x 64 output channels; for each kernel offset and each 32 input channels it
// loads the tile's input rows through the neighbour table into shared memory (zeros where the table
// has -1), the matching weight block, and multiplies them with WMMA fragments.
// A tile skips the offsets that none of its rows reads (a bitmask of the first 64 offsets, built by
// the block from the table). `order` (optional) lists the output rows in the order the tiles take
// them: sorted by their bitmask (KernelMap.row_order), rows that read the same offsets share tiles
// and the tiles skip more. Each output element is written once by the block that owns it, and
// skipped offsets add only zeros: the result does not depend on the order, nor vary run to run.
// Channel counts that are not multiples of 8, other dtypes and GPUs before sm_80 take the gathered
// GEMM of conv_cuda.cu.
#include <ATen/ATen.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>
#include <torch/library.h>

#include "conv_cuda.cuh"
#include "cuda_utils.cuh"

namespace pointengine {
namespace {

namespace wmma = nvcuda::wmma;

constexpr int kTileRows = 64, kTileCols = 64, kStepChannels = 32, kBlockThreads = 128;
// Shared-memory row pitches, padded against bank conflicts (WMMA wants multiples of 16 bytes).
constexpr int kPitchA = kStepChannels + 8, kPitchB = kTileCols + 8, kPitchC = kTileCols + 4;
constexpr int kVector = 8;  // elements of 16 bytes

template <typename T>
__device__ T from_float(float x);
template <>
__device__ __half from_float<__half>(float x) { return __float2half(x); }
template <>
__device__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) { return __float2bfloat16(x); }

template <typename T>
__global__ void __launch_bounds__(kBlockThreads)
    implicit_gemm_kernel(const T* __restrict__ feats, int64_t n_in, int c_in, const T* __restrict__ weight, int c_out,
                         const int32_t* __restrict__ nbr, int64_t m, int kvol, const int32_t* __restrict__ order,
                         T* __restrict__ out) {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
  __shared__ __align__(32) T tile_a[kTileRows * kPitchA];
  __shared__ __align__(32) T tile_b[kStepChannels * kPitchB];
  __shared__ __align__(32) float tile_c[kTileRows * kPitchC];
  __shared__ int32_t rows[kTileRows];
  __shared__ unsigned long long offsets_read;
  const int tid = threadIdx.x, warp = tid / 32;
  const int64_t first_row = int64_t(blockIdx.x) * kTileRows;
  const int first_col = blockIdx.y * kTileCols;
  if (tid < kTileRows) {
    const int64_t r = first_row + tid;
    const int32_t row = r < m ? (order ? order[r] : int32_t(r)) : -1;
    rows[tid] = row < m ? row : -1;  // a row past the table (a bad order) is not computed
  }
  if (tid == 0) offsets_read = kvol <= 64 ? 0ULL : ~0ULL;
  __syncthreads();
  if (kvol <= 64) {
    unsigned long long mine = 0;
    for (int e = tid; e < kTileRows * kvol; e += kBlockThreads) {
      const int r = e / kvol, k = e - r * kvol;
      if (rows[r] >= 0 && nbr[int64_t(rows[r]) * kvol + k] >= 0) mine |= 1ULL << k;
    }
    atomicOr(&offsets_read, mine);
  }
  __syncthreads();
  const unsigned long long mask = offsets_read;

  // Warps 2 x 2, each 32 x 32 of the tile: 2 x 2 fragments.
  const int warp_row = (warp / 2) * 32, warp_col = (warp % 2) * 32;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][2];
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.0f);
  const uint4 zero = make_uint4(0, 0, 0, 0);
  for (int k = 0; k < kvol; ++k) {
    if (k < 64 && !((mask >> k) & 1ULL)) continue;
    for (int c0 = 0; c0 < c_in; c0 += kStepChannels) {
      for (int v = tid; v < kTileRows * (kStepChannels / kVector); v += kBlockThreads) {
        const int r = v / (kStepChannels / kVector), part = v % (kStepChannels / kVector);
        const int c = c0 + part * kVector;
        uint4 value = zero;
        if (rows[r] >= 0 && c < c_in) {
          const int32_t i = nbr[int64_t(rows[r]) * kvol + k];
          if (i >= 0 && i < n_in) value = *reinterpret_cast<const uint4*>(feats + int64_t(i) * c_in + c);
        }
        *reinterpret_cast<uint4*>(tile_a + r * kPitchA + part * kVector) = value;
      }
      for (int v = tid; v < kStepChannels * (kTileCols / kVector); v += kBlockThreads) {
        const int r = v / (kTileCols / kVector), part = v % (kTileCols / kVector);
        const int c = c0 + r, col = first_col + part * kVector;
        uint4 value = zero;
        if (c < c_in && col < c_out)
          value = *reinterpret_cast<const uint4*>(weight + (int64_t(k) * c_in + c) * c_out + col);
        *reinterpret_cast<uint4*>(tile_b + r * kPitchB + part * kVector) = value;
      }
      __syncthreads();
      for (int kk = 0; kk < kStepChannels; kk += 16) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> a[2];
        wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> b[2];
        for (int i = 0; i < 2; ++i) wmma::load_matrix_sync(a[i], tile_a + (warp_row + 16 * i) * kPitchA + kk, kPitchA);
        for (int j = 0; j < 2; ++j) wmma::load_matrix_sync(b[j], tile_b + kk * kPitchB + warp_col + 16 * j, kPitchB);
        for (int i = 0; i < 2; ++i)
          for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], a[i], b[j], acc[i][j]);
      }
      __syncthreads();
    }
  }
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 2; ++j)
      wmma::store_matrix_sync(tile_c + (warp_row + 16 * i) * kPitchC + warp_col + 16 * j, acc[i][j], kPitchC,
                              wmma::mem_row_major);
  __syncthreads();
  for (int e = tid; e < kTileRows * kTileCols; e += kBlockThreads) {
    const int r = e / kTileCols, col = e % kTileCols;
    if (rows[r] >= 0 && first_col + col < c_out)
      out[int64_t(rows[r]) * c_out + first_col + col] = from_float<T>(tile_c[r * kPitchC + col]);
  }
#endif
}

template <typename T>
void launch(const at::Tensor& feats, const at::Tensor& weight, const at::Tensor& nbr, const int32_t* order,
            at::Tensor& out) {
  const int64_t m = nbr.size(0);
  const dim3 grid(unsigned((m + kTileRows - 1) / kTileRows), unsigned((weight.size(2) + kTileCols - 1) / kTileCols));
  implicit_gemm_kernel<T><<<grid, kBlockThreads, 0, current_stream()>>>(
      reinterpret_cast<const T*>(feats.data_ptr()), feats.size(0), int(feats.size(1)),
      reinterpret_cast<const T*>(weight.data_ptr()), int(weight.size(2)), nbr.data_ptr<int32_t>(), m,
      int(nbr.size(1)), order, reinterpret_cast<T*>(out.data_ptr()));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// WMMA on bfloat16 needs sm_80 (Ampere) or later.
bool has_tensor_cores(const at::Tensor& t) {
  int major = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, t.device().index()));
  return major >= 8;
}

bool aligned16(const at::Tensor& t) { return reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0; }

at::Tensor conv_implicit_gemm_cuda(const at::Tensor& feats_in, const at::Tensor& weight_in, const at::Tensor& nbr_in,
                                   const c10::optional<at::Tensor>& order_in) {
  const char* op = "conv_implicit_gemm";
  if (order_in.has_value()) {
    check_kernel_tensor(*order_in, op, "order", at::kInt, at::kCUDA);
    TORCH_CHECK(order_in->dim() == 1 && order_in->size(0) == nbr_in.size(0), op,
                ": order must have one entry per nbr row (", nbr_in.size(0), "), got ", order_in->sizes());
  }
  check_conv_args(feats_in, weight_in, nbr_in, op);
  const bool half = feats_in.scalar_type() == at::kHalf || feats_in.scalar_type() == at::kBFloat16;
  if (!half || feats_in.size(1) % kVector != 0 || weight_in.size(2) % kVector != 0 || !has_tensor_cores(feats_in))
    return conv_gathered_gemm_cuda(feats_in, weight_in, nbr_in);
  const c10::cuda::CUDAGuard guard(feats_in.device());
  const at::Tensor feats = feats_in.contiguous(), weight = weight_in.contiguous(), nbr = nbr_in.contiguous();
  if (!aligned16(feats) || !aligned16(weight)) return conv_gathered_gemm_cuda(feats, weight, nbr);
  at::Tensor out = at::empty({nbr.size(0), weight.size(2)}, feats.options());
  if (out.numel() == 0) return out.zero_();
  const at::Tensor order = order_in.has_value() ? order_in->contiguous() : at::Tensor();
  const int32_t* order_ptr = order.defined() ? order.data_ptr<int32_t>() : nullptr;
  if (feats.scalar_type() == at::kHalf) launch<__half>(feats, weight, nbr, order_ptr, out);
  else launch<__nv_bfloat16>(feats, weight, nbr, order_ptr, out);
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(pointengine, CUDA, m) { m.impl("conv_implicit_gemm", &conv_implicit_gemm_cuda); }

}  // namespace pointengine
