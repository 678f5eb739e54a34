"""The packed-key hash map and unique_coords against Python dicts and sets."""

import itertools

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pointengine import CoordinateMap
from pointengine import _ops

BATCH_MAX, AXIS_MIN, AXIS_MAX = 65534, -32768, 32767

# These properties are cheap: three times the examples of the active profile.
CHEAP = settings(max_examples=3 * settings.default.max_examples)


@st.composite
def coordinate_rows(draw, min_size=1, max_size=60):
    """Rows (batch, x, y, z) inside the packable range: either crowded into a small box (many
    repeats and neighbours) or spread over the whole range (extreme values, high batch ids)."""
    if draw(st.booleans()):
        batch, axis = st.integers(0, 2), st.integers(-3, 3)
    else:
        batch, axis = st.integers(0, BATCH_MAX), st.integers(AXIS_MIN, AXIS_MAX)
    return draw(st.lists(st.tuples(batch, axis, axis, axis), min_size=min_size, max_size=max_size))


def as_coords(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.int32).reshape(-1, 4)


def out_of_range_aliases(rows) -> list[tuple[int, int, int, int]]:
    """Queries outside the range whose 16-bit fields, if wrapped, would equal a stored row."""
    b, x, y, z = rows[0]
    return [
        (b + 65536, x, y, z),
        (b, x + 65536, y, z),
        (b, x, y - 65536, z),
        (b, x, y, z + 65536),
        (-1, x, y, z),
        (65535, x, y, z),
        (b, AXIS_MAX + 1, y, z),
        (b, x, AXIS_MIN - 1, z),
        (2**31 - 1, 2**31 - 1, -(2**31), 0),
    ]


@CHEAP
@given(rows=coordinate_rows())
def test_build_and_query_match_dict(rows):
    distinct = list(dict.fromkeys(rows))
    cmap = CoordinateMap(as_coords(distinct))
    expected = {row: i for i, row in enumerate(distinct)}
    assert cmap.query(as_coords(distinct)).tolist() == [expected[r] for r in distinct]


@CHEAP
@given(rows=coordinate_rows(), missing=coordinate_rows(min_size=0))
def test_missing_and_out_of_range_queries_are_minus_one(rows, missing):
    stored = set(rows)
    cmap = CoordinateMap(as_coords(list(dict.fromkeys(rows))))
    absent = [r for r in missing if r not in stored] + out_of_range_aliases(rows)
    result = cmap.query(as_coords(absent))
    assert result.dtype == torch.int32
    assert result.tolist() == [-1] * len(absent)


@CHEAP
@given(rows=coordinate_rows())
def test_build_counts_duplicates_and_keeps_one_row_per_site(rows):
    keys, vals, duplicates = _ops.hash_build(as_coords(rows))
    assert duplicates == len(rows) - len(set(rows))
    # Capacity: a power of two with room for twice the rows, so linear probes stay short.
    cap = keys.shape[0]
    assert cap & (cap - 1) == 0 and cap >= 2 * len(rows)
    assert vals.shape == keys.shape and keys.dtype == torch.int64 and vals.dtype == torch.int32
    occupied = keys != -1
    assert int(occupied.sum()) == len(set(rows))
    assert bool((vals[~occupied] == -1).all())
    found = _ops.hash_query(keys, vals, as_coords(rows))
    assert [rows[i] for i in found.tolist()] == rows


@CHEAP
@given(rows=coordinate_rows(max_size=80))
def test_unique_coords_is_the_sorted_set(rows):
    out = _ops.unique_coords(as_coords(rows))
    assert out.dtype == torch.int32
    assert [tuple(r) for r in out.tolist()] == sorted(set(rows))


@CHEAP
@given(rows=coordinate_rows(max_size=80))
def test_unique_coords_inverse_gives_each_rows_place(rows):
    unique, inverse = _ops.unique_coords_inverse(as_coords(rows))
    assert unique.dtype == inverse.dtype == torch.int32
    assert [tuple(r) for r in unique.tolist()] == sorted(set(rows))
    assert [tuple(unique[i].tolist()) for i in inverse.tolist()] == rows


def test_unique_coords_inverse_on_many_rows():
    # Past one parallel chunk (16384 rows), with keys of under and over 32 bits.
    g = torch.Generator().manual_seed(0)
    for span in (40, 30000):
        rows = torch.randint(-span, span, (70000, 4), generator=g, dtype=torch.int32)
        rows[:, 0] %= 3
        unique, inverse = _ops.unique_coords_inverse(rows)
        expected, expected_inverse = torch.unique(rows, dim=0, return_inverse=True)
        assert torch.equal(unique, expected.int()) and torch.equal(inverse, expected_inverse.int())
    empty_unique, empty_inverse = _ops.unique_coords_inverse(torch.empty(0, 4, dtype=torch.int32))
    assert empty_unique.shape == (0, 4) and empty_inverse.shape == (0,)


def test_range_corners_are_distinct_keys(device):
    extremes = (AXIS_MIN, AXIS_MAX)
    corners = list(itertools.product((0, BATCH_MAX), extremes, (AXIS_MIN, 0, AXIS_MAX), extremes))
    coords = as_coords(corners).to(device)
    cmap = CoordinateMap(coords)
    assert cmap.query(coords).cpu().tolist() == list(range(len(corners)))
    assert [tuple(r) for r in _ops.unique_coords(coords).cpu().tolist()] == sorted(corners)


def test_many_rows_across_threads(device):
    # More rows than one parallel chunk (4096), so several threads insert into one table at once.
    g = torch.Generator().manual_seed(0)
    rows = torch.randint(-60, 60, (60000, 4), generator=g)
    rows[:, 0] %= 3
    coords = torch.unique(rows, dim=0).int()
    coords = coords[torch.randperm(len(coords), generator=g)].to(device)
    cmap = CoordinateMap(coords)
    assert torch.equal(cmap.query(coords).cpu(), torch.arange(len(coords), dtype=torch.int32))
    shifted = coords.clone()
    shifted[:, 1] += 1000
    assert bool((cmap.query(shifted) == -1).all())


def test_empty_query(device):
    cmap = CoordinateMap(as_coords([(0, 1, 2, 3)]).to(device))
    result = cmap.query(torch.empty(0, 4, dtype=torch.int32, device=device))
    assert result.shape == (0,) and result.dtype == torch.int32
