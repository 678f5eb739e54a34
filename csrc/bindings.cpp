// Op schemas of every pointengine kernel, and the pybind11 module with build information.
// Kernels register their implementations per device in csrc/cpu/*.cpp and csrc/cuda/*.cu.
#include <torch/extension.h>
#include <torch/library.h>

#include "cpu/conv_bf16_cpu.h"
#include "cpu/conv_fused_cpu.h"
#include "cpu/conv_int8_cpu.h"
#include "cpu/conv_weight_grad_cpu.h"
#include "cpu/trilinear_gather_cpu.h"
#include "cpu/linear_cpu.h"

#ifdef _OPENMP
#include <omp.h>
#endif

TORCH_LIBRARY(pointengine, m) {
  m.def("hash_build(Tensor coords) -> (Tensor keys, Tensor vals, Tensor duplicates)");
  m.def("hash_query(Tensor keys, Tensor vals, Tensor coords) -> Tensor");
  m.def("unique_coords(Tensor coords) -> Tensor");
  m.def("unique_coords_inverse(Tensor coords) -> (Tensor unique, Tensor inverse)");
  m.def("voxel_coords(Tensor points, float[] voxel_size, Tensor batch, int n_batches, bool round_shift) -> (Tensor coords, Tensor bounds)");
  m.def(
      "neighbor_table(Tensor keys, Tensor vals, Tensor out_coords, Tensor offsets, int[] stride, "
      "bool transposed, bool submanifold) -> Tensor");
  m.def("kernel_pairs(Tensor nbr) -> (Tensor in_rows, Tensor out_rows, Tensor ptr)");
  m.def("transpose_table(Tensor nbr, SymInt n_rows) -> Tensor");
  m.def("tile_pairs(Tensor nbr, SymInt n_in) -> (Tensor pairs, Tensor ptr)");
  m.def("conv_fused(Tensor feats, Tensor weight, Tensor nbr, Tensor? tile_pairs=None, Tensor? tile_ptr=None) -> Tensor");
  m.def(
      "conv_fused_epilogue(Tensor feats, Tensor weight, Tensor nbr, Tensor? bias, Tensor? residual, bool relu, "
      "Tensor? tile_pairs=None, Tensor? tile_ptr=None) -> Tensor");
  m.def("conv_implicit_gemm(Tensor feats, Tensor weight, Tensor nbr, Tensor? order=None) -> Tensor");
  m.def("conv_weight_grad(Tensor feats, Tensor grad_out, Tensor nbr) -> Tensor");
  m.def(
      "batch_norm_train(Tensor x, Tensor weight, Tensor bias, float eps, bool relu, Tensor? residual=None) -> "
      "(Tensor y, Tensor mean, Tensor var)");
  m.def(
      "batch_norm_train_backward(Tensor grad_y, Tensor x, Tensor? y, Tensor mean, Tensor var, Tensor weight, "
      "float eps, bool relu, bool masked_grad=False, Tensor? bias=None) -> "
      "(Tensor grad_x, Tensor grad_weight, Tensor grad_bias, Tensor grad_masked)");
  m.def("conv_weight_grad_pairs(Tensor feats, Tensor grad_out, Tensor in_rows, Tensor out_rows, Tensor ptr) -> Tensor");
  m.def("point_scatter_mean(Tensor feats, Tensor index, SymInt n_voxels) -> Tensor");
  m.def(
      "trilinear_table(Tensor keys, Tensor vals, Tensor corners, Tensor coords, int[] stride, bool nearest) -> "
      "(Tensor index, Tensor weights)");
  m.def("trilinear_gather(Tensor feats, Tensor index, Tensor weights, Tensor? base=None) -> Tensor");
  m.def("trilinear_gather_add_(Tensor(a!) base, Tensor feats, Tensor index, Tensor weights) -> ()");
  m.def("trilinear_gather_backward(Tensor grad_out, Tensor index, Tensor weights, SymInt n_voxels) -> Tensor");
  m.def("linear(Tensor input, Tensor weight, Tensor? bias) -> Tensor");
  m.def("row_argmax(Tensor values) -> Tensor");
  // bfloat16 inference convolution (conv_bf16_cpu.cpp).
  m.def(
      "conv_bf16(Tensor feats, Tensor weight, Tensor nbr, Tensor? bias, Tensor? residual, bool relu, "
      "bool bf16_out=False, Tensor? tile_pairs=None, Tensor? tile_ptr=None) -> Tensor");
  m.def(
      "conv_int8(Tensor q_feats, float in_scale, int in_zero, Tensor weight, Tensor weight_scale, Tensor nbr, "
      "Tensor? bias, Tensor? residual, bool relu, float? out_scale=None, int out_zero=0, Tensor? tile_pairs=None, "
      "Tensor? tile_ptr=None) -> Tensor");
  m.def("quantize_u7(Tensor x, float scale, int zero) -> Tensor");
}

namespace {

bool built_with_cuda() {
#ifdef WITH_CUDA
  return true;
#else
  return false;
#endif
}

bool built_with_openmp() {
#ifdef _OPENMP
  return true;
#else
  return false;
#endif
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("built_with_cuda", &built_with_cuda, "Whether the CUDA kernels were compiled in.");
  m.def("built_with_openmp", &built_with_openmp, "Whether the CPU kernels were compiled with OpenMP.");
  m.def("conv_fused_isa", &pointengine::conv_fused_isa, "The path float32 conv_fused takes on this CPU.");
  m.def("conv_fused_portable", [](const at::Tensor& feats, const at::Tensor& weight, const at::Tensor& nbr) {
    return pointengine::conv_fused_path(feats, weight, nbr, pointengine::CpuPath::kPortable);
  }, "conv_fused on the portable path whatever the CPU, for tests.");
  m.def("fma_peak_flops", &pointengine::fma_peak_flops, "float32 FMA FLOP/s of this CPU's threads, measured.",
        py::arg("seconds") = 0.2);
  m.def("cpu_paths", [] {
    std::vector<std::string> names;
    for (int p = 0; p <= int(pointengine::best_cpu_path()); ++p)
      names.push_back(pointengine::cpu_path_name(pointengine::CpuPath(p)));
    return names;
  }, "The float32 conv_fused paths this CPU runs, best last.");
  m.def("conv_fused_on", [](const at::Tensor& feats, const at::Tensor& weight, const at::Tensor& nbr,
                            const std::string& path, const c10::optional<at::Tensor>& tile_pairs,
                            const c10::optional<at::Tensor>& tile_ptr) {
    return pointengine::conv_fused_path(feats, weight, nbr, pointengine::cpu_path_named(path), {tile_pairs, tile_ptr});
  }, "conv_fused on a named path of cpu_paths(), for tests and benchmarks.", pybind11::arg("feats"),
  pybind11::arg("weight"), pybind11::arg("nbr"), pybind11::arg("path"), pybind11::arg("tile_pairs") = pybind11::none(),
  pybind11::arg("tile_ptr") = pybind11::none());
  m.def("conv_fused_epilogue_on", [](const at::Tensor& feats, const at::Tensor& weight, const at::Tensor& nbr,
                                     const c10::optional<at::Tensor>& bias, const c10::optional<at::Tensor>& residual,
                                     bool relu, const std::string& path, const c10::optional<at::Tensor>& tile_pairs,
                                     const c10::optional<at::Tensor>& tile_ptr) {
    return pointengine::conv_fused_epilogue_path(feats, weight, nbr, bias, residual, relu,
                                                 pointengine::cpu_path_named(path), {tile_pairs, tile_ptr});
  }, "conv_fused_epilogue on a named path of cpu_paths(), for tests.", pybind11::arg("feats"), pybind11::arg("weight"),
  pybind11::arg("nbr"), pybind11::arg("bias"), pybind11::arg("residual"), pybind11::arg("relu"), pybind11::arg("path"),
  pybind11::arg("tile_pairs") = pybind11::none(), pybind11::arg("tile_ptr") = pybind11::none());
  m.def("conv_weight_grad_portable", [](const at::Tensor& feats, const at::Tensor& grad_out, const at::Tensor& nbr) {
    return pointengine::conv_weight_grad_path(feats, grad_out, nbr, pointengine::CpuPath::kPortable);
  }, "conv_weight_grad on the portable path whatever the CPU, for tests.");
  m.def("conv_weight_grad_on", [](const at::Tensor& feats, const at::Tensor& grad_out, const at::Tensor& nbr,
                                  const std::string& path) {
    return pointengine::conv_weight_grad_path(feats, grad_out, nbr, pointengine::cpu_path_named(path));
  }, "conv_weight_grad on a named path of cpu_paths(), for tests and benchmarks.");
  m.def("int8_paths", [] {
    std::vector<std::string> names;
    for (pointengine::Int8Path path : pointengine::int8_paths()) names.push_back(pointengine::int8_path_name(path));
    return names;
  }, "The conv_int8 paths this CPU runs, portable first.");
  m.def("conv_int8_on", [](const at::Tensor& q_feats, double in_scale, int64_t in_zero, const at::Tensor& weight,
                           const at::Tensor& weight_scale, const at::Tensor& nbr, const c10::optional<at::Tensor>& bias,
                           const c10::optional<at::Tensor>& residual, bool relu, c10::optional<double> out_scale,
                           int64_t out_zero, const std::string& path, const c10::optional<at::Tensor>& tile_pairs,
                           const c10::optional<at::Tensor>& tile_ptr) {
    return pointengine::conv_int8_path(q_feats, in_scale, in_zero, weight, weight_scale, nbr, bias, residual, relu,
                                       out_scale, out_zero, pointengine::int8_path_named(path), {tile_pairs, tile_ptr});
  }, "conv_int8 on a named path of int8_paths(), for tests and benchmarks.", pybind11::arg("q_feats"),
  pybind11::arg("in_scale"), pybind11::arg("in_zero"), pybind11::arg("weight"), pybind11::arg("weight_scale"),
  pybind11::arg("nbr"), pybind11::arg("bias"), pybind11::arg("residual"), pybind11::arg("relu"),
  pybind11::arg("out_scale"), pybind11::arg("out_zero"), pybind11::arg("path"),
  pybind11::arg("tile_pairs") = pybind11::none(), pybind11::arg("tile_ptr") = pybind11::none());
  m.def("trilinear_gather_portable", [](const at::Tensor& feats, const at::Tensor& index, const at::Tensor& weights,
                                        const c10::optional<at::Tensor>& base) {
    return pointengine::trilinear_gather_path(feats, index, weights, base, /*allow_avx2=*/false);
  }, "trilinear_gather on the portable path whatever the CPU, for tests.",
  pybind11::arg("feats"), pybind11::arg("index"), pybind11::arg("weights"), pybind11::arg("base") = pybind11::none());
  m.def("linear_portable", [](const at::Tensor& input, const at::Tensor& weight, const c10::optional<at::Tensor>& bias) {
    return pointengine::linear_path(input, weight, bias, /*allow_avx2=*/false);
  }, "linear on the portable path whatever the CPU, for tests.");
  m.def("bf16_paths", &pointengine::bf16_paths, "The conv_bf16 paths this CPU runs, portable first.");
  m.def("conv_bf16_on", [](const at::Tensor& feats, const at::Tensor& weight, const at::Tensor& nbr,
                           const c10::optional<at::Tensor>& bias, const c10::optional<at::Tensor>& residual, bool relu,
                           bool bf16_out, const std::string& path, const c10::optional<at::Tensor>& tile_pairs,
                           const c10::optional<at::Tensor>& tile_ptr) {
    return pointengine::conv_bf16_path(feats, weight, nbr, bias, residual, relu, bf16_out,
                                       pointengine::bf16_path_named(path), {tile_pairs, tile_ptr});
  }, "conv_bf16 on a named path of bf16_paths(), for tests and benchmarks.", pybind11::arg("feats"),
  pybind11::arg("weight"), pybind11::arg("nbr"), pybind11::arg("bias"), pybind11::arg("residual"),
  pybind11::arg("relu"), pybind11::arg("bf16_out"), pybind11::arg("path"),
  pybind11::arg("tile_pairs") = pybind11::none(), pybind11::arg("tile_ptr") = pybind11::none());
}
