"""Bitwise reproducibility: the same inputs give the same bits run after run and whatever the number
of threads, for the kernel maps and for every conv kind with both dataflows."""

import os
import subprocess
import sys

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from pointengine import SparseTensor
from pointengine import _ops
from pointengine.functional import DATAFLOWS, conv3d
from pointengine.testing import random_input

KINDS = ["submanifold", "strided", "floor", "transposed", "generative"]


@pytest.fixture(scope="module")
def scan():
    """(feats, coords) of ~12k sites: more rows than one parallel chunk of every kernel (conv blocks
    of 64 rows, table chunks of 2048 to 8192 rows), so two threads really split the work. One dtype:
    both run the same templated kernels; the property test below covers float64."""
    g = torch.Generator().manual_seed(0)
    return random_input(g, 12500, 4, torch.float32, batches=2, extent=32, low=-16)


def run(feats, coords, kind: str, dataflow: str) -> list[torch.Tensor]:
    """Every tensor a conv of this kind produces from scratch (fresh maps): sites, features, tables."""
    g = torch.Generator().manual_seed(1)
    weight = torch.randn(27, feats.shape[1], 8, generator=g, dtype=torch.float64).to(feats.dtype)
    x = SparseTensor(feats, coords, stride=2)
    if kind == "submanifold":
        y = conv3d(x, weight, kernel_size=3, dataflow=dataflow)
    elif kind in ("strided", "floor"):
        sites = "dense" if kind == "strided" else "floor"
        y = conv3d(x, weight, kernel_size=3, stride=2, sites=sites, dataflow=dataflow)
    elif kind == "transposed":
        coarse = conv3d(x, weight[:, :, :4], kernel_size=3, stride=2)
        y = conv3d(coarse, weight[:, :4], kernel_size=3, stride=2, transposed=True, dataflow=dataflow)
    else:
        y = conv3d(x, weight[:8], kernel_size=2, stride=2, transposed=True, generative=True, dataflow=dataflow)
    tables = [m.nbr for m in x.coordinate_map.kernel_maps.values()]
    return [y.coords, y.feats, *tables, *_ops.kernel_pairs(tables[0])]


def assert_bitwise_equal(first: list[torch.Tensor], second: list[torch.Tensor]) -> None:
    assert len(first) == len(second)
    for a, b in zip(first, second):
        assert a.dtype == b.dtype and torch.equal(a, b)


@pytest.mark.parametrize("dataflow", DATAFLOWS)
@pytest.mark.parametrize("kind", KINDS)
def test_repeated_runs_are_bitwise_identical(scan, kind, dataflow):
    assert_bitwise_equal(run(*scan, kind, dataflow), run(*scan, kind, dataflow))


@pytest.mark.parametrize("dataflow", DATAFLOWS)
@pytest.mark.parametrize("kind", KINDS)
def test_thread_count_does_not_change_results(scan, kind, dataflow, restore_threads):
    torch.set_num_threads(1)
    single = run(*scan, kind, dataflow)
    torch.set_num_threads(2)
    assert_bitwise_equal(single, run(*scan, kind, dataflow))


def test_maps_and_unique_sites_do_not_depend_on_threads(scan, restore_threads):
    _, coords = scan
    repeated = torch.cat([coords, coords.flip(0)])
    results = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        x = SparseTensor(*scan)
        results.append([_ops.unique_coords(repeated), x.coordinate_map.query(coords.flip(0))])
    assert_bitwise_equal(*results)


@given(
    seed=st.integers(0, 2**31),
    kind=st.sampled_from(KINDS),
    dataflow=st.sampled_from(DATAFLOWS),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_random_inputs_are_reproducible(seed, kind, dataflow, dtype):
    feats, coords = random_input(torch.Generator().manual_seed(seed), 300, 4, dtype, batches=2, extent=10)
    assert_bitwise_equal(run(feats, coords, kind, dataflow), run(feats, coords, kind, dataflow))


# Every zoo model at 1, 2, 3 and 4 threads in a fresh process whose MKL takes its AVX2 path, the one
# it takes on CPUs without AVX-512 (the project's AMD machine): there torch's BLAS splits its sums
# by thread count, and MinkUNet's 1x1x1 convs and classifier gave different bits at 3 threads.
ZOO_AT_EACH_THREAD_COUNT = """
import torch
from pointengine import SparseTensor
from pointengine.models import available, build_model, load_model_config
from pointengine.testing import random_input

for name in available():
    torch.manual_seed(0)
    model = build_model(name).eval()
    channels = load_model_config(name).in_channels
    feats, coords = random_input(torch.Generator().manual_seed(0), 1200, channels, torch.float32, 2, 16, -8)
    outputs = []
    with torch.no_grad():
        for threads in (1, 2, 3, 4):
            torch.set_num_threads(threads)
            outputs.append(model(SparseTensor(feats, coords)).feats)
    same = [torch.equal(outputs[0], out) for out in outputs[1:]]
    print(name, len(coords), same)
    assert all(same), f"{name}: threads 2, 3, 4 equal to 1: {same}"
"""


def test_zoo_models_are_bitwise_the_same_at_one_to_four_threads():
    env = dict(os.environ, MKL_ENABLE_INSTRUCTIONS="AVX2")
    result = subprocess.run(
        [sys.executable, "-c", ZOO_AT_EACH_THREAD_COUNT], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "minkunet_cr1.0" in result.stdout
