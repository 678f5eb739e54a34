"""Python threads sharing one SparseTensor: each kernel map is built once and shared, and every
thread gets the single-threaded results, bit for bit. The lock that makes it so does not stop a
tensor from being copied or pickled."""

import copy
import pickle

import threading
from concurrent.futures import ThreadPoolExecutor

import torch

from pointengine import SparseTensor
from pointengine.functional import conv3d
from pointengine.testing import random_input

THREADS = 4


def network(x: SparseTensor, weights: list[torch.Tensor]) -> tuple[SparseTensor, list]:
    """Submanifold, strided, submanifold on the coarse level, transposed back, 1x1x1: every map kind
    a U-Net builds, each cached on a map the threads share."""
    y = conv3d(x, weights[0], kernel_size=3)
    coarse = conv3d(y, weights[1], kernel_size=2, stride=2)
    coarse = conv3d(coarse, weights[2], kernel_size=3)
    up = conv3d(coarse, weights[3], kernel_size=2, stride=2, transposed=True)
    return conv3d(up, weights[4], kernel_size=1), [y, coarse, up]


def test_threads_sharing_a_tensor_share_each_kernel_map():
    g = torch.Generator().manual_seed(0)
    feats, coords = random_input(g, 6000, 4, torch.float32, batches=2, extent=24, low=-12)
    shapes = [(27, 4, 8), (8, 8, 8), (27, 8, 8), (8, 8, 4), (1, 4, 3)]
    weights = [torch.randn(*shape, generator=g) for shape in shapes]
    expected, _ = network(SparseTensor(feats, coords), weights)

    x = SparseTensor(feats, coords)
    start = threading.Barrier(THREADS)

    def work(_) -> tuple:
        start.wait()  # all threads reach the first map together
        return network(x, weights)

    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(work, range(THREADS)))  # re-raises what a thread raised
    fine, coarse = x.coordinate_map, x.levels[(2, 2, 2)]
    # One map per key on each level; every thread's layers ran on those very objects.
    assert len(fine.kernel_maps) == 2 and len(coarse.kernel_maps) == 2
    for out, (y, coarse_out, up) in results:
        assert y.coordinate_map is fine and coarse_out.coordinate_map is coarse and up.coordinate_map is fine
        assert torch.equal(out.coords, expected.coords) and torch.equal(out.feats, expected.feats)
    strided = [kmap for kmap in fine.kernel_maps.values() if kmap.out_map is coarse]
    assert len(strided) == 1 and set(x.levels) == {(1, 1, 1), (2, 2, 2)}


def test_tensors_with_their_maps_copy_and_pickle():
    g = torch.Generator().manual_seed(1)
    feats, coords = random_input(g, 300, 2, torch.float64)
    x = SparseTensor(feats, coords)
    weight = torch.randn(27, 2, 3, generator=g, dtype=torch.float64)
    expected = conv3d(x, weight, kernel_size=3).feats
    for twin in (copy.deepcopy(x), pickle.loads(pickle.dumps(x))):
        assert len(twin.coordinate_map.kernel_maps) == 1 and twin.coordinate_map._lock is not x.coordinate_map._lock
        assert torch.equal(conv3d(twin, weight, kernel_size=3).feats, expected)
