// The weight gradient of the fused convolution: its op entry points, and the AVX2 and AVX-512 float
// kernels of one offset's pairs (conv_weight_grad_avx2.cpp, conv_weight_grad_avx512.cpp, no ATen).
#pragma once
#include <ATen/ATen.h>

#include <algorithm>
#include <cstdint>

#include "conv_fused_cpu.h"
#include "conv_tile.h"

namespace pointengine {

// The conv_weight_grad op (from the neighbour table) and conv_weight_grad_pairs (from its pair lists)
// on a given path (tests cover every path the CPU has).
at::Tensor conv_weight_grad_path(const at::Tensor& feats, const at::Tensor& grad_out, const at::Tensor& nbr,
                                 CpuPath path);
at::Tensor conv_weight_grad_pairs_path(const at::Tensor& feats, const at::Tensor& grad_out, const at::Tensor& in_rows,
                                       const at::Tensor& out_rows, const at::Tensor& ptr, CpuPath path);

// Columns per panel of the packed output gradient, and pairs per packed chunk (its feats rows and
// output-gradient panels stay in a core's L2 cache).
constexpr int64_t kGradPanel = 32;
constexpr int64_t kGradChunkPairs = 128;

// The packing asks for the feats and grad_out rows of pairs kPrefetchBlocks x kGradPrefetchRows (16)
// ahead of the one it copies, kGradPrefetchRows at a time (prefetch_block_inputs, conv_tile.h): the rows
// are scattered, and each copy otherwise waits on its rows' first loads. 1.3-2.8x faster at up to 64
// channels on the SemanticKITTI scan's layers with AVX-512 (benchmarks/README.md, "The weight
// gradient's rows asked for ahead").
constexpr int64_t kGradPrefetchRows = 8;

// Called by the packing before it copies pair p of the `available` pairs from in_rows / out_rows on.
inline void prefetch_pair_rows(const float* feats, int64_t c_in, const float* grad, int64_t c_out,
                               const int32_t* in_rows, const int32_t* out_rows, int64_t p, int64_t available) {
  if (p % kGradPrefetchRows != 0) return;
  prefetch_block_inputs(feats, c_in * int64_t(sizeof(float)), in_rows, p, kGradPrefetchRows, available);
  prefetch_block_inputs(grad, c_out * int64_t(sizeof(float)), out_rows, p, kGradPrefetchRows, available);
}

// Asks for the feats and grad_out rows of pairs [begin, end) to come into the L2 cache. The loop below
// spreads the next chunk's rows over the products of the current chunk, which keep the multiply-add
// units busy and leave loads to spare, so that the next copy finds its rows near: 0.85-0.98x the time
// on the SemanticKITTI scan's layers (1 thread; benchmarks/README.md, "The next chunk's rows asked for
// during the products").
inline void prefetch_pairs_l2(const float* feats, int64_t c_in, const float* grad, int64_t c_out,
                              const int32_t* in_rows, const int32_t* out_rows, int64_t begin, int64_t end) {
  for (int64_t p = begin; p < end; ++p) {
    const char* x = reinterpret_cast<const char*>(feats + int64_t(in_rows[p]) * c_in);
    const char* g = reinterpret_cast<const char*>(grad + int64_t(out_rows[p]) * c_out);
    for (int64_t b = 0; b < c_in * int64_t(sizeof(float)); b += 64) __builtin_prefetch(x + b, 0, 2);
    for (int64_t b = 0; b < c_out * int64_t(sizeof(float)); b += 64) __builtin_prefetch(g + b, 0, 2);
  }
}

// Row stride of the packed feats rows: C_in and 4 floats more, so that a stride of a large power of
// two (64 or 128 channels) does not put the rows a block reads into the same few sets of the L1 cache.
constexpr int64_t grad_packed_row_stride(int64_t c_in) { return c_in + 4; }

// Where the products read a chunk's rows: copied in order (PackedRows: the feats rows into xs at
// grad_packed_row_stride, the grad rows into g as panels of kGradPanel columns, zeros past C_out), or
// where they lie in feats and grad (DirectRows). at(ci, col, n) moves to input channel ci and output
// column col of a chunk of n pairs; x(p) and g(p) are pair p's rows there.
struct PackedRows {
  const float* xs;
  int64_t x_stride;
  const float* gs;
  PackedRows at(int64_t ci, int64_t col, int64_t n) const { return {xs + ci, x_stride, gs + col * n}; }
  const float* x(int64_t p) const { return xs + p * x_stride; }
  const float* g(int64_t p) const { return gs + p * kGradPanel; }
};

struct DirectRows {
  const float* feats;
  int64_t c_in;
  const int32_t* in_rows;
  const float* grad;
  int64_t c_out;
  const int32_t* out_rows;
  DirectRows at(int64_t ci, int64_t col, int64_t) const {
    return {feats + ci, c_in, in_rows, grad + col, c_out, out_rows};
  }
  const float* x(int64_t p) const { return feats + int64_t(in_rows[p]) * c_in; }
  const float* g(int64_t p) const { return grad + int64_t(out_rows[p]) * c_out; }
};

// Whether the products read the rows where they lie: when C_out fills whole vectors of `lanes` and
// either every row is read at least twice on average (pairs >= 2 x rows on both sides), as in a
// submanifold map, whose offsets share most rows of a block, which stay in the cache, or the pairs
// are the rows in order (`rows_in_order`: pair p is (p, p), a dense layer's, _dense_weight_grad). The
// copy in order is a third of the kernel's time on a submanifold map (perf, 48 -> 48); reading in
// place made the SemanticKITTI scan's submanifold layers 1.0-1.9x faster and the dense layers of a
// training step 1.0-1.8x, but a 2x2x2 stride-2 map's (every feats row read once, scattered)
// 0.8-0.9x: there the copy's prefetching ahead pays (benchmarks/README.md, "The weight gradient reads
// its rows in place").
inline bool weight_grad_reads_in_place(int64_t n_pairs, int64_t n_in, int64_t n_out, bool rows_in_order,
                                       int64_t c_out, int64_t lanes) {
  return c_out % lanes == 0 && ((n_pairs >= 2 * n_in && n_pairs >= 2 * n_out) || rows_in_order);
}

// acc [C_in, panels * kGradPanel] += sum over the n pairs p (ascending) of feats[in_rows[p]]^T
// grad[out_rows[p]] (feats [N_in, C_in], grad [N_out, C_out], rows contiguous), each element adding
// one fused multiply-add per pair: the two kernels, and their two ways of reading rows, give the same
// bits. In chunks of kGradChunkPairs pairs, which are either copied first, so that the products read
// memory in order (PackedRows; the copy of a chunk that starts at pair p0 also asks for rows of the
// pairs after it, up to n_pairs), or read in place (in_place: weight_grad_reads_in_place holds for the
// kernel's lanes, 8 for AVX2, 16 for AVX-512; xs and g are then not used).
void weight_grad_offset_avx2(const float* feats, int64_t c_in, const float* grad, int64_t c_out,
                             const int32_t* in_rows, const int32_t* out_rows, int64_t n, bool in_place, float* acc,
                             float* xs, float* g);
void weight_grad_offset_avx512(const float* feats, int64_t c_in, const float* grad, int64_t c_out,
                               const int32_t* in_rows, const int32_t* out_rows, int64_t n, bool in_place, float* acc,
                               float* xs, float* g);

// The loop of both kernels over one offset's chunks, their panels and blocks of input channels: a
// chunk's rows are read in place (DirectRows) or first copied by pack(p0, n) into xs and g
// (PackedRows); block(nv, m, rows, ...) is the register-blocked product of m input channels by nv
// vectors of Lanes columns over those rows, block_rows(nv) its largest m. Before each product it asks
// for a share of the next chunk's rows (prefetch_pairs_l2).
template <int Lanes, typename Pack, typename Block, typename BlockRows>
void weight_grad_offset_loop(const float* feats, int64_t c_in, const float* grad, int64_t c_out,
                             const int32_t* in_rows, const int32_t* out_rows, int64_t n_pairs, bool in_place,
                             float* acc, const float* xs, const float* g, const Pack& pack, const Block& block,
                             const BlockRows& block_rows) {
  const int64_t panels = (c_out + kGradPanel - 1) / kGradPanel, width = panels * kGradPanel;
  const auto panel_vectors = [&](int64_t q) {
    return int((std::min(kGradPanel, c_out - q * kGradPanel) + Lanes - 1) / Lanes);
  };
  int64_t products = 0;  // per chunk
  for (int64_t q = 0; q < panels; ++q) products += (c_in + block_rows(panel_vectors(q)) - 1) / block_rows(panel_vectors(q));
  const auto products_of_chunk = [&](int64_t p0, int64_t n, const auto& rows) {
    const int64_t next = p0 + n, next_n = std::min(kGradChunkPairs, n_pairs - next);
    int64_t product = 0;
    for (int64_t q = 0; q < panels; ++q) {
      const int nv = panel_vectors(q), mr = block_rows(nv);
      for (int64_t ci = 0; ci < c_in; ci += mr, ++product) {
        const int m = int(std::min<int64_t>(mr, c_in - ci));
        prefetch_pairs_l2(feats, c_in, grad, c_out, in_rows, out_rows, next + next_n * product / products,
                          next + next_n * (product + 1) / products);
        block(nv, m, rows.at(ci, q * kGradPanel, n), n, acc + ci * width + q * kGradPanel, width);
      }
    }
  };
  for (int64_t p0 = 0; p0 < n_pairs; p0 += kGradChunkPairs) {
    const int64_t n = std::min(kGradChunkPairs, n_pairs - p0);
    if (in_place) {
      products_of_chunk(p0, n, DirectRows{feats, c_in, in_rows + p0, grad, c_out, out_rows + p0});
    } else {
      pack(p0, n);
      products_of_chunk(p0, n, PackedRows{xs, grad_packed_row_stride(c_in), g});
    }
  }
}

}  // namespace pointengine
