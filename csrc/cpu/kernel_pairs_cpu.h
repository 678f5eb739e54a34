// The kernel_pairs op as a C++ call, for kernels that walk a map offset by offset.
#pragma once
#include <ATen/ATen.h>

#include <tuple>

namespace pointengine {

// (in_rows, out_rows, ptr int64[K+1]): the pairs of offset k are [ptr[k], ptr[k+1]), output rows ascending.
std::tuple<at::Tensor, at::Tensor, at::Tensor> kernel_pairs_cpu(const at::Tensor& nbr);

}  // namespace pointengine
