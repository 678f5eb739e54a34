// The table of a register-blocked kernel's instantiations, one per block shape, from which the AVX2
// kernels pick at run time: table[nv][m - 1] is the kernel for m rows of nv vectors, for nv = 1..V and
// m = 1..Rows[nv - 1]. `pick(m, nv)` gets both as std::integral_constant and returns that kernel.
#pragma once
#include <array>
#include <cstddef>
#include <type_traits>
#include <utility>

namespace pointengine {

template <typename Fn, int MaxRows, std::size_t Vectors>
using BlockTable = std::array<std::array<Fn, MaxRows>, Vectors + 1>;

namespace detail {

template <int NV, typename Fn, typename Pick, int... M>
void fill_block_row(Fn* row, const Pick& pick, std::integer_sequence<int, M...>) {
  ((row[M] = pick(std::integral_constant<int, M + 1>{}, std::integral_constant<int, NV>{})), ...);
}

template <typename Fn, int MaxRows, int... Rows, typename Pick, std::size_t... V>
BlockTable<Fn, MaxRows, sizeof...(Rows)> block_table(const Pick& pick, std::index_sequence<V...>) {
  static_assert(((Rows <= MaxRows) && ...), "a row count exceeds MaxRows");
  BlockTable<Fn, MaxRows, sizeof...(Rows)> table{};
  (fill_block_row<int(V) + 1>(table[V + 1].data(), pick, std::make_integer_sequence<int, Rows>{}), ...);
  return table;
}

}  // namespace detail

// Rows...: the row count of each vector count 1, 2, ...
template <typename Fn, int MaxRows, int... Rows, typename Pick>
BlockTable<Fn, MaxRows, sizeof...(Rows)> block_table(const Pick& pick) {
  return detail::block_table<Fn, MaxRows, Rows...>(pick, std::make_index_sequence<sizeof...(Rows)>{});
}

}  // namespace pointengine
