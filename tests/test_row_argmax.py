"""row_argmax (voxel logits -> classes) against torch's max(1).indices."""

import pytest
import torch

from pointengine import _ops

DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows, width", [(0, 19), (1, 1), (7, 3), (5000, 19), (20000, 20)])
def test_equals_max_indices_with_ties_nan_and_inf(dtype, rows, width):
    g = torch.Generator().manual_seed(rows * 31 + width)
    # Few distinct values, so rows hold ties; then NaN and infinities in some rows.
    values = torch.randint(-3, 4, (rows, width), generator=g).to(dtype)
    for special in (float("nan"), float("inf"), -float("inf")):
        where = torch.rand(rows, width, generator=g) < 0.02
        values[where] = special
    got = _ops.row_argmax(values)
    assert got.dtype == torch.int64
    assert torch.equal(got, values.max(1).indices)


def test_reads_strided_rows():
    values = torch.randn(300, 40, generator=torch.Generator().manual_seed(0))[:, ::2]
    assert torch.equal(_ops.row_argmax(values), values.max(1).indices)


@pytest.mark.parametrize(
    "values, message",
    [
        (torch.zeros(4, 0), r"row_argmax: values must have at least one column"),
        (torch.zeros(4), r"row_argmax: values must have shape \[N, C\]"),
        (torch.zeros(4, 3, dtype=torch.int32), r"row_argmax: values must be floating point, got torch.int32"),
    ],
)
def test_bad_values_name_the_problem(values, message):
    with pytest.raises(RuntimeError, match=message):
        _ops.row_argmax(values)
