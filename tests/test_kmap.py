"""Kernel offsets and kernel maps of every kind against brute-force enumeration with Python sets."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pointengine import CoordinateMap
from pointengine.functional import kernel_offsets
from pointengine.functional import kmap as km
from pointengine.testing import (
    all_offsets,
    brute_force_generative_sites,
    brute_force_pairs,
    brute_force_strided_sites,
    site_set,
)

triples = st.tuples(st.integers(1, 4), st.integers(1, 4), st.integers(1, 4))
strides = st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3)).filter(lambda s: s != (1, 1, 1))
dilations = st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3))
site_kinds = st.sampled_from(["dense", "floor"])
shifts = st.tuples(*[st.integers(-4, 4)] * 3)

# These properties are cheap: three times the examples of the active profile.
CHEAP = settings(max_examples=3 * settings.default.max_examples)


@st.composite
def site_sets(draw, max_size=40):
    """Distinct rows (batch, x, y, z) in a small box around the origin, negative values included."""
    axis = st.integers(-5, 5)
    rows = draw(st.lists(st.tuples(st.integers(0, 2), axis, axis, axis), min_size=1, max_size=max_size, unique=True))
    return torch.tensor(rows, dtype=torch.int32)


def table_pairs(nbr: torch.Tensor) -> set:
    """{(k, in_row, out_row)} of a neighbour table."""
    out_rows, ks = (nbr >= 0).nonzero(as_tuple=True)
    return set(zip(ks.tolist(), nbr[out_rows, ks].tolist(), out_rows.tolist()))


def assert_pairs_match_table(kmap: km.KernelMap) -> None:
    """The CSR pair lists hold exactly the table's pairs, grouped by offset, by output row within one."""
    pairs = kmap.pairs
    ptr = pairs.ptr.tolist()
    assert ptr[0] == 0 and ptr[-1] == len(pairs.in_rows) == kmap.n_pairs
    for k in range(kmap.nbr.shape[1]):
        out_rows = pairs.out_rows[ptr[k] : ptr[k + 1]]
        expected = (kmap.nbr[:, k] >= 0).nonzero().flatten()
        assert torch.equal(out_rows.long(), expected)
        assert torch.equal(pairs.in_rows[ptr[k] : ptr[k + 1]], kmap.nbr[expected, k])


def assert_transposed_table_matches(kmap: km.KernelMap) -> None:
    """The transposed table (the input gradient's) holds exactly the table's pairs, read from the input side."""
    transposed = kmap.transposed_table()
    assert transposed.shape == (kmap.n_in, kmap.nbr.shape[1]) and transposed.dtype == torch.int32
    in_rows, ks = (transposed >= 0).nonzero(as_tuple=True)
    assert set(zip(ks.tolist(), in_rows.tolist(), transposed[in_rows, ks].tolist())) == table_pairs(kmap.nbr)


def assert_sorted_sites(coords: torch.Tensor) -> None:
    rows = [tuple(r) for r in coords.tolist()]
    assert rows == sorted(set(rows))


@pytest.mark.parametrize("kernel_size", [1, 2, 3, 4, 5, (3, 1, 5), (2, 3, 1)])
@pytest.mark.parametrize("dilation", [1, 2, (1, 3, 2)])
def test_kernel_offsets_order(kernel_size, dilation):
    ks = (kernel_size,) * 3 if isinstance(kernel_size, int) else kernel_size
    dil = (dilation,) * 3 if isinstance(dilation, int) else dilation
    offsets = kernel_offsets(kernel_size, dilation)
    assert offsets.dtype == torch.int32
    assert [tuple(o) for o in offsets.tolist()] == all_offsets(ks, dil)
    if all(k % 2 for k in ks):
        assert torch.equal(offsets.flip(0), -offsets)


def test_kernel_offsets_examples():
    assert kernel_offsets(3)[:4].tolist() == [[-1, -1, -1], [-1, -1, 0], [-1, -1, 1], [-1, 0, -1]]
    assert kernel_offsets(2).tolist() == [[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)]
    assert kernel_offsets((1, 1, 3), (1, 1, 2)).tolist() == [[0, 0, -2], [0, 0, 0], [0, 0, 2]]


@CHEAP
@given(coords=site_sets(), kernel_size=triples, dilation=dilations, presorted=st.booleans())
def test_submanifold_map_is_brute_force(coords, kernel_size, dilation, presorted):
    if presorted:  # sites sorted by (batch, x, y, z) take the merge walk instead of hash lookups
        coords = torch.tensor(sorted(coords.tolist()), dtype=torch.int32).reshape(-1, 4)
    cmap = CoordinateMap(coords)
    kmap = km.submanifold_map(cmap, kernel_size, dilation)
    offsets = all_offsets(kernel_size, dilation)
    assert kmap.out_map is cmap and kmap.n_in == len(coords)
    assert kmap.nbr.shape == (len(coords), len(offsets)) and kmap.nbr.dtype == torch.int32
    assert table_pairs(kmap.nbr) == brute_force_pairs(coords, coords, offsets, (1, 1, 1))
    assert_pairs_match_table(kmap)
    assert_transposed_table_matches(kmap)


@CHEAP
@given(coords=site_sets(), kernel_size=triples, stride=strides, dilation=dilations, sites=site_kinds)
def test_strided_map_is_brute_force(coords, kernel_size, stride, dilation, sites):
    kmap = km.strided_map(CoordinateMap(coords), kernel_size, stride, dilation, sites)
    out = kmap.out_map.coords
    assert site_set(out) == brute_force_strided_sites(coords, kernel_size, stride, dilation, sites)
    assert_sorted_sites(out)
    offsets = all_offsets(kernel_size, dilation)
    assert table_pairs(kmap.nbr) == brute_force_pairs(coords, out, offsets, stride)
    assert_pairs_match_table(kmap)
    assert_transposed_table_matches(kmap)


@pytest.mark.parametrize("kernel_size", [(2, 2, 2), (1, 2, 2), (2, 1, 1), (4, 4, 4), (1, 1, 1), (2, 4, 1)])
@pytest.mark.parametrize("sites", ["dense", "floor"])
def test_strided_maps_tiling_the_stride_are_brute_force(kernel_size, sites):
    """Kernel = stride (offsets 0..s-1: the tiled table, built without hash lookups) on random sites
    of three batches, negative coordinates included."""
    g = torch.Generator().manual_seed(sum(kernel_size))
    coords = torch.cat([torch.randint(0, 3, (400, 1), generator=g), torch.randint(-9, 9, (400, 3), generator=g)], 1)
    coords = torch.unique(coords.int(), dim=0)
    kmap = km.strided_map(CoordinateMap(coords), kernel_size, kernel_size, 1, sites)
    out = kmap.out_map.coords
    assert site_set(out) == brute_force_strided_sites(coords, kernel_size, kernel_size, (1, 1, 1), sites)
    assert_sorted_sites(out)
    assert table_pairs(kmap.nbr) == brute_force_pairs(coords, out, all_offsets(kernel_size, (1, 1, 1)), kernel_size)
    assert_pairs_match_table(kmap)
    assert_transposed_table_matches(kmap)


@CHEAP
@given(coords=site_sets(max_size=25), kernel_size=triples, stride=strides, dilation=dilations)
def test_generative_map_is_brute_force(coords, kernel_size, stride, dilation):
    kmap = km.generative_map(CoordinateMap(coords), kernel_size, stride, dilation)
    out = kmap.out_map.coords
    assert site_set(out) == brute_force_generative_sites(coords, kernel_size, stride, dilation)
    assert_sorted_sites(out)
    offsets = all_offsets(kernel_size, dilation)
    assert table_pairs(kmap.nbr) == brute_force_pairs(coords, out, offsets, stride, transposed=True)
    assert_pairs_match_table(kmap)
    assert_transposed_table_matches(kmap)


@CHEAP
@given(coords=site_sets(), kernel_size=triples, stride=strides, dilation=dilations, sites=site_kinds)
def test_transposed_map_is_brute_force(coords, kernel_size, stride, dilation, sites):
    fine = CoordinateMap(coords)
    coarse = km.strided_map(fine, kernel_size, stride, dilation, sites).out_map
    kmap = km.transposed_map(coarse, fine, kernel_size, stride, dilation)
    assert kmap.out_map is fine and kmap.n_in == len(coarse)
    offsets = all_offsets(kernel_size, dilation)
    assert table_pairs(kmap.nbr) == brute_force_pairs(coarse.coords, coords, offsets, stride, transposed=True)
    assert_pairs_match_table(kmap)
    assert_transposed_table_matches(kmap)


@CHEAP
@given(coords=site_sets(), kernel_size=triples, stride=strides, dilation=dilations, shift=shifts)
def test_maps_are_translation_equivariant(coords, kernel_size, stride, dilation, shift):
    """Moving every site by stride * t moves the strided outputs by t and the generative outputs by
    stride^2 * t, with the same neighbour tables row for row."""
    moved = coords.clone()
    moved[:, 1:] += torch.tensor([s * t for s, t in zip(stride, shift)], dtype=torch.int32)
    before, after = CoordinateMap(coords), CoordinateMap(moved)
    sub = km.submanifold_map(before, kernel_size, dilation), km.submanifold_map(after, kernel_size, dilation)
    assert torch.equal(sub[0].nbr, sub[1].nbr)
    for sites in ("dense", "floor"):
        a, b = (km.strided_map(m, kernel_size, stride, dilation, sites) for m in (before, after))
        assert torch.equal(a.nbr, b.nbr)
        assert_moved(a.out_map.coords, b.out_map.coords, shift)
    a, b = (km.generative_map(m, kernel_size, stride, dilation) for m in (before, after))
    assert torch.equal(a.nbr, b.nbr)
    assert_moved(a.out_map.coords, b.out_map.coords, [s * s * t for s, t in zip(stride, shift)])


def assert_moved(before: torch.Tensor, after: torch.Tensor, shift) -> None:
    """`after` is `before` with every site moved by `shift`, row for row."""
    moved = before.clone()
    moved[:, 1:] += torch.tensor(shift, dtype=torch.int32)
    assert torch.equal(after, moved)


def test_maps_are_cached_per_key():
    cmap = CoordinateMap(torch.tensor([[0, 0, 0, 0], [0, 1, 0, 0], [1, -1, 2, 3]], dtype=torch.int32))
    assert km.submanifold_map(cmap, 3) is km.submanifold_map(cmap, (3, 3, 3), 1)
    assert km.submanifold_map(cmap, 3, 2) is not km.submanifold_map(cmap, 3)
    dense, floor = km.strided_map(cmap, 2, 2), km.strided_map(cmap, 2, 2, sites="floor")
    assert dense is km.strided_map(cmap, (2, 2, 2), 2) and floor is not dense
    generative = km.generative_map(cmap, 2, 2)
    assert generative is km.generative_map(cmap, 2, 2)
    assert len(cmap.kernel_maps) == 5
    transposed = km.transposed_map(dense.out_map, cmap, 2, 2)
    assert transposed is km.transposed_map(dense.out_map, cmap, 2, 2)
