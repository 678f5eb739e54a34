// Sparse convolution and dense linear layers on the GPU, in float16, bfloat16, float32 and float64.
// conv_fused: out[o] = sum_k feats[nbr[o, k]] @ weight[k] as one GEMM per block of output rows: the
// rows' inputs through every offset are gathered into a [rows, K * C_in] matrix (zeros where the
// table has -1; the neighbour table is row-major [M, K], so entry (o, k) of the table is row block k
// of gathered row o) and multiplied by weight viewed as [K * C_in, C_out] on the tensor cores
// (cuBLAS; float32 accumulation for the half types). Each output element is one dot product: no
// scatter, no atomics, the same bits on every run. conv_weight_grad multiplies the same gathered
// matrix, transposed, by the output gradient.
// Rows past feats in nbr read as zeros (no synchronisation to check them; the Python layer builds
// the tables).
#include <ATen/ATen.h>
#include <torch/library.h>

#include <algorithm>

#include "conv_cuda.cuh"
#include "cuda_utils.cuh"

namespace pointengine {
namespace {

// Gathered matrices are built in blocks of rows of at most this many bytes.
constexpr int64_t kGatherBlockBytes = int64_t(512) << 20;

// One thread per unit_t (4 to 16 bytes) of a gathered row block: the unit is the widest that divides
// a feature row, so the copy needs no dtype.
template <typename unit_t>
__global__ void gather_rows_kernel(const unit_t* feats, int64_t n_in, int64_t units_per_row, const int32_t* nbr,
                                   int64_t entries, unit_t* cols) {
  const int64_t u = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (u >= entries * units_per_row) return;
  const int64_t entry = u / units_per_row, part = u - entry * units_per_row;
  const int32_t i = nbr[entry];
  cols[u] = i >= 0 && i < n_in ? feats[int64_t(i) * units_per_row + part] : unit_t{};
}

template <typename unit_t>
void launch_gather(const at::Tensor& feats, const int32_t* nbr, int64_t entries, at::Tensor& cols) {
  const int64_t units_per_row = feats.size(1) * feats.element_size() / int64_t(sizeof(unit_t));
  gather_rows_kernel<unit_t><<<blocks_for(entries * units_per_row), kThreads, 0, current_stream()>>>(
      static_cast<const unit_t*>(feats.data_ptr()), feats.size(0), units_per_row, nbr, entries,
      static_cast<unit_t*>(cols.data_ptr()));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// cols [rows, K * C_in] <- the feats rows that nbr rows [row0, row0 + rows) read.
void gather_block(const at::Tensor& feats, const at::Tensor& nbr, int64_t row0, int64_t rows, at::Tensor& cols) {
  const int64_t kvol = nbr.size(1), row_bytes = feats.size(1) * feats.element_size();
  const int32_t* table = nbr.data_ptr<int32_t>() + row0 * kvol;
  if (rows == 0 || row_bytes == 0) return;
  // The unit must divide the row and the address of feats (a view may start anywhere).
  const uint64_t span = uint64_t(row_bytes) | uint64_t(reinterpret_cast<uintptr_t>(feats.data_ptr()));
  if (span % 16 == 0) launch_gather<uint4>(feats, table, rows * kvol, cols);
  else if (span % 8 == 0) launch_gather<uint2>(feats, table, rows * kvol, cols);
  else if (span % 4 == 0) launch_gather<uint32_t>(feats, table, rows * kvol, cols);
  else launch_gather<uint16_t>(feats, table, rows * kvol, cols);
}

int64_t rows_per_block(const at::Tensor& feats, int64_t kvol) {
  const int64_t row_bytes = std::max<int64_t>(1, kvol * feats.size(1) * feats.element_size());
  return std::max<int64_t>(1, kGatherBlockBytes / row_bytes);
}

}  // namespace

void check_conv_tables(const at::Tensor& feats, const at::Tensor& nbr, const char* op) {
  check_cuda_float_matrix(feats, op, "feats", "[N_in, C_in]");
  check_matrix(nbr, op, "nbr", at::kInt, -1, "[N_out, K]", at::kCUDA);
  check_row_count(feats.size(0), op, "feats");
  TORCH_CHECK(feats.device() == nbr.device(), op, ": feats and nbr must be on one device, got ", feats.device(),
              " and ", nbr.device());
}

void check_conv_args(const at::Tensor& feats, const at::Tensor& weight, const at::Tensor& nbr, const char* op) {
  check_conv_tables(feats, nbr, op);
  check_kernel_tensor(weight, op, "weight", feats.scalar_type(), at::kCUDA);
  TORCH_CHECK(weight.dim() == 3 && weight.size(1) == feats.size(1) && weight.size(0) == nbr.size(1), op,
              ": weight must have shape [K, C_in, C_out] = [", nbr.size(1), ", ", feats.size(1), ", C_out], got ",
              weight.sizes());
}

at::Tensor conv_gathered_gemm_cuda(const at::Tensor& feats_in, const at::Tensor& weight_in, const at::Tensor& nbr_in) {
  check_conv_args(feats_in, weight_in, nbr_in, "conv_fused");
  const c10::cuda::CUDAGuard guard(feats_in.device());
  const at::Tensor feats = feats_in.contiguous(), nbr = nbr_in.contiguous();
  const int64_t m = nbr.size(0), kvol = nbr.size(1), c_in = feats.size(1), c_out = weight_in.size(2);
  const at::Tensor weight = weight_in.contiguous().view({kvol * c_in, c_out});
  at::Tensor out = at::empty({m, c_out}, feats.options());
  const int64_t block = std::min(m, rows_per_block(feats, kvol));
  if (m == 0) return out;
  at::Tensor cols = at::empty({block, kvol * c_in}, feats.options());
  for (int64_t row0 = 0; row0 < m; row0 += block) {
    const int64_t rows = std::min(block, m - row0);
    gather_block(feats, nbr, row0, rows, cols);
    at::Tensor out_rows = out.narrow(0, row0, rows);
    at::mm_out(out_rows, cols.narrow(0, 0, rows), weight);
  }
  return out;
}

namespace {

// The pair lists of tile_pairs are the CPU kernels' form of a map; the GPU reads the table.
void check_no_tile_lists(const c10::optional<at::Tensor>& tile_pairs, const c10::optional<at::Tensor>& tile_ptr,
                         const char* op) {
  TORCH_CHECK(!tile_pairs.has_value() && !tile_ptr.has_value(), op,
              ": tile_pairs / tile_ptr are lists for the CPU kernels; on CUDA give the table alone");
}

at::Tensor conv_fused_cuda(const at::Tensor& feats, const at::Tensor& weight, const at::Tensor& nbr,
                           const c10::optional<at::Tensor>& tile_pairs, const c10::optional<at::Tensor>& tile_ptr) {
  check_no_tile_lists(tile_pairs, tile_ptr, "conv_fused");
  return conv_gathered_gemm_cuda(feats, weight, nbr);
}

// The epilogue as separate passes after the GEMM (on the CPU it runs in the tile pass).
at::Tensor conv_fused_epilogue_cuda(const at::Tensor& feats, const at::Tensor& weight, const at::Tensor& nbr,
                                    const c10::optional<at::Tensor>& bias, const c10::optional<at::Tensor>& residual,
                                    bool relu, const c10::optional<at::Tensor>& tile_pairs,
                                    const c10::optional<at::Tensor>& tile_ptr) {
  const char* op = "conv_fused_epilogue";
  check_no_tile_lists(tile_pairs, tile_ptr, op);
  at::Tensor out = conv_gathered_gemm_cuda(feats, weight, nbr);
  const c10::cuda::CUDAGuard guard(feats.device());
  if (bias.has_value()) {
    check_kernel_tensor(*bias, op, "bias", feats.scalar_type(), at::kCUDA);
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == out.size(1), op, ": bias must have shape [", out.size(1),
                "] (C_out), got ", bias->sizes());
    out.add_(*bias);
  }
  if (residual.has_value()) {
    check_kernel_tensor(*residual, op, "residual", feats.scalar_type(), at::kCUDA);
    TORCH_CHECK(residual->sizes() == out.sizes(), op, ": residual must have shape ", out.sizes(),
                " (nbr rows, C_out), got ", residual->sizes());
    out.add_(*residual);
  }
  return relu ? out.relu_() : out;
}

at::Tensor conv_weight_grad_cuda(const at::Tensor& feats_in, const at::Tensor& grad_in, const at::Tensor& nbr_in) {
  const char* op = "conv_weight_grad";
  check_conv_tables(feats_in, nbr_in, op);
  check_matrix(grad_in, op, "grad_out", feats_in.scalar_type(), -1, "[N_out, C_out]", at::kCUDA);
  TORCH_CHECK(grad_in.size(0) == nbr_in.size(0), op, ": grad_out must have one row per nbr row (", nbr_in.size(0),
              "), got ", grad_in.sizes());
  const c10::cuda::CUDAGuard guard(feats_in.device());
  const at::Tensor feats = feats_in.contiguous(), nbr = nbr_in.contiguous(), grad = grad_in.contiguous();
  const int64_t m = nbr.size(0), kvol = nbr.size(1), c_in = feats.size(1), c_out = grad.size(1);
  const int64_t block = std::max<int64_t>(1, std::min(m, rows_per_block(feats, kvol)));
  // Blocks after the first add into a float32 (float64 for float64) sum.
  const auto acc_type = feats.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  at::Tensor sum = at::zeros({kvol * c_in, c_out}, feats.options().dtype(acc_type));
  at::Tensor cols = at::empty({block, kvol * c_in}, feats.options());
  for (int64_t row0 = 0; row0 < m; row0 += block) {
    const int64_t rows = std::min(block, m - row0);
    gather_block(feats, nbr, row0, rows, cols);
    sum.add_(at::mm(cols.narrow(0, 0, rows).t(), grad.narrow(0, row0, rows)));
  }
  return sum.to(feats.scalar_type()).view({kvol, c_in, c_out});
}

at::Tensor linear_cuda(const at::Tensor& input_in, const at::Tensor& weight_in, const c10::optional<at::Tensor>& bias) {
  const char* op = "linear";
  check_cuda_float_matrix(input_in, op, "input", "[N, in_features]");
  check_row_count(input_in.size(0), op, "input");
  check_matrix(weight_in, op, "weight", input_in.scalar_type(), -1, "[out_features, in_features]", at::kCUDA);
  TORCH_CHECK(weight_in.size(1) == input_in.size(1), "linear: weight must have shape [out_features, ",
              input_in.size(1), "], got ", weight_in.sizes());
  const c10::cuda::CUDAGuard guard(input_in.device());
  if (!bias.has_value()) return at::mm(input_in, weight_in.t());
  check_kernel_tensor(*bias, op, "bias", input_in.scalar_type(), at::kCUDA);
  TORCH_CHECK(bias->dim() == 1 && bias->size(0) == weight_in.size(0), "linear: bias must have shape [",
              weight_in.size(0), "], got ", bias->sizes());
  return at::addmm(*bias, input_in, weight_in.t());
}

}  // namespace

TORCH_LIBRARY_IMPL(pointengine, CUDA, m) {
  m.impl("conv_fused", &conv_fused_cuda);
  m.impl("conv_fused_epilogue", &conv_fused_epilogue_cuda);
  m.impl("conv_weight_grad", &conv_weight_grad_cuda);
  m.impl("linear", &linear_cuda);
}

}  // namespace pointengine
