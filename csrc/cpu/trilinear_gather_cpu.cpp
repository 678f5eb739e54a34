// Trilinear devoxelization: out[i] = base[i] + sum over the 8 corners j of weights[i, j] *
// feats[index[i, j]] (index -1 = missing voxel; no base: 0). Each point starts from its base row and
// adds its corners in order j = 0..7, skipping zero weights: one writer per output row, the same bits
// for any thread count. The base is SPVNAS's residual of the point branch, added in the same pass;
// trilinear_gather_add_ adds into the base itself, sparing inference a new [N, C] tensor (above
// glibc's mmap threshold every new one is page-faulted in afresh).
// The loop is compiled twice: portable, and for AVX2 + FMA (run when the CPU has them), where the
// multiply-add is fused; the two paths round differently, each is deterministic.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>

#include "../common/checks.h"
#include "../common/point_rows.h"
#include "conv_tile.h"  // cpu_has_avx2_fma
#include "trilinear_gather_cpu.h"

namespace pointengine {
namespace {

template <typename scalar_t>
struct GatherArgs {
  const scalar_t* feats;
  const int32_t* idx;
  const scalar_t* weights;
  const scalar_t* base;  // [N, C] or null
  int64_t c;
  scalar_t* out;
};

template <typename scalar_t>
__attribute__((always_inline)) inline void gather_points(const GatherArgs<scalar_t>& a, int64_t begin, int64_t end) {
  const int64_t c = a.c;
  const scalar_t* feats = a.feats;
  const int32_t* idx = a.idx;
  const scalar_t* weights = a.weights;
  for (int64_t i = begin; i < end; ++i) {
    scalar_t* o = a.out + i * c;
    if (!a.base) std::fill(o, o + c, scalar_t(0));
    else if (a.base != a.out) std::copy(a.base + i * c, a.base + (i + 1) * c, o);
    for (int64_t j = 8 * i; j < 8 * i + 8; ++j) {
      const scalar_t w = weights[j];
      if (idx[j] < 0 || w == scalar_t(0)) continue;
      const scalar_t* row = feats + int64_t(idx[j]) * c;
      for (int64_t ch = 0; ch < c; ++ch) o[ch] += w * row[ch];
    }
  }
}

// The same loop, vectorised by the compiler for AVX2 with fused multiply-adds.
template <typename scalar_t>
__attribute__((target("avx2,fma"))) void gather_points_avx2(const GatherArgs<scalar_t>& a, int64_t begin,
                                                            int64_t end) {
  gather_points(a, begin, end);
}

}  // namespace

namespace {

// out = base (or 0) + the gather; out may be base itself.
void gather_into(const at::Tensor& feats_in, const at::Tensor& index_in, const at::Tensor& weights_in,
                 const at::Tensor& base_in, at::Tensor& out, bool allow_avx2, const char* op) {
  check_float_matrix(feats_in, op, "feats", "[M, C]");
  check_point_corners(index_in, weights_in, index_in.dim() == 2 ? index_in.size(0) : -1, feats_in.scalar_type(), op);
  if (base_in.defined()) {
    check_matrix(base_in, op, "base", feats_in.scalar_type(), feats_in.size(1), "[N, C] (C: feats columns)");
    TORCH_CHECK(base_in.size(0) == index_in.size(0), op, ": base must have one row per index row (",
                index_in.size(0), "), got ", base_in.sizes());
  }
  const at::Tensor feats = feats_in.contiguous(), index = index_in.contiguous(), weights = weights_in.contiguous();
  const at::Tensor base = base_in.defined() ? base_in.contiguous() : at::Tensor();
  const int64_t n = index.size(0), c = feats.size(1);
  const int64_t bad = count_bad_targets(index.data_ptr<int32_t>(), index.numel(), feats.size(0));
  TORCH_CHECK(bad == 0, op, ": ", bad, " index entries lie outside [-1, ", feats.size(0), ")");
  const bool avx2 = allow_avx2 && cpu_has_avx2_fma();
  AT_DISPATCH_FLOATING_TYPES(feats.scalar_type(), "trilinear_gather_cpu", [&] {
    const GatherArgs<scalar_t> args{feats.data_ptr<scalar_t>(), index.data_ptr<int32_t>(),
                                    weights.data_ptr<scalar_t>(), base.defined() ? base.data_ptr<scalar_t>() : nullptr,
                                    c, out.data_ptr<scalar_t>()};
    at::parallel_for(0, n, 1024, [&](int64_t begin, int64_t end) {
      if (avx2) gather_points_avx2(args, begin, end);
      else gather_points(args, begin, end);
    });
  });
}

}  // namespace

at::Tensor trilinear_gather_path(const at::Tensor& feats, const at::Tensor& index, const at::Tensor& weights,
                                 const c10::optional<at::Tensor>& base, bool allow_avx2) {
  at::Tensor out = at::empty({index.dim() == 2 ? index.size(0) : 0, feats.dim() == 2 ? feats.size(1) : 0},
                             feats.options());
  gather_into(feats, index, weights, base.value_or(at::Tensor()), out, allow_avx2, "trilinear_gather");
  return out;
}

namespace {

at::Tensor trilinear_gather_cpu(const at::Tensor& feats, const at::Tensor& index, const at::Tensor& weights,
                                const c10::optional<at::Tensor>& base) {
  return trilinear_gather_path(feats, index, weights, base, /*allow_avx2=*/true);
}

void trilinear_gather_add_cpu(at::Tensor& base, const at::Tensor& feats, const at::Tensor& index,
                              const at::Tensor& weights) {
  TORCH_CHECK(base.is_contiguous(), "trilinear_gather_add_: base must be contiguous (it is written in place)");
  gather_into(feats, index, weights, base, base, /*allow_avx2=*/true, "trilinear_gather_add_");
}

}  // namespace

TORCH_LIBRARY_IMPL(pointengine, CPU, m) {
  m.impl("trilinear_gather", &trilinear_gather_cpu);
  m.impl("trilinear_gather_add_", &trilinear_gather_add_cpu);
}

}  // namespace pointengine
