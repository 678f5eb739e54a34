"""Independent references for tests: dense conv3d and conv_transpose3d on a grid, brute-force site sets
and pairs, and the error measure every comparison bounds.

Nothing here uses the hash tables, kernel maps or kernels under test: offsets are enumerated with
itertools, sites are matched with Python dicts and sets, values come from torch's dense convolutions
in float64.

Relative error (`relative_error`): max |actual - expected| / max |expected| over every element, so a
bound is a fraction of the largest reference value; when the reference is all zeros it is the
absolute error.
"""

import itertools
import math

import torch
import torch.nn.functional as F
from torch import Tensor

# Bounds on relative_error against the float64 reference, per dtype of the code under test.
RELATIVE_TOLERANCE = {torch.float64: 1e-6, torch.float32: 1e-4}


def triple(value) -> tuple[int, int, int]:
    """An int or three ints as a tuple of three (kernel_size, stride, dilation arguments)."""
    return (value,) * 3 if isinstance(value, int) else tuple(value)


def relative_error(actual: Tensor, expected: Tensor) -> float:
    """max |actual - expected| / max |expected| over all elements (absolute error when expected is 0)."""
    if actual.shape != expected.shape:
        raise AssertionError(f"shapes differ: {list(actual.shape)} vs reference {list(expected.shape)}")
    if expected.numel() == 0:
        return 0.0
    diff = (actual.double() - expected.double()).abs().max().item()
    scale = expected.double().abs().max().item()
    return diff / scale if scale > 0 else diff


def random_sites(n: int, batches: int, extent: int, generator: torch.Generator, low: int = -4) -> Tensor:
    """Up to n distinct int32 (batch, x, y, z) rows with x, y, z in [low, low + extent), in random order."""
    rows = torch.stack(
        [
            torch.randint(0, batches, (n,), generator=generator),
            *(torch.randint(low, low + extent, (n,), generator=generator) for _ in range(3)),
        ],
        1,
    )
    unique = torch.unique(rows, dim=0)
    return unique[torch.randperm(len(unique), generator=generator)].int()


def random_input(
    generator: torch.Generator,
    n: int,
    channels: int,
    dtype=torch.float64,
    batches: int = 3,
    extent: int = 9,
    low: int = -4,
) -> tuple[Tensor, Tensor]:
    """(feats [N, channels] standard normal, coords int32 [N, 4]) on up to n random distinct sites."""
    coords = random_sites(n, batches, extent, generator, low)
    return torch.randn(len(coords), channels, generator=generator, dtype=torch.float64).to(dtype), coords


def random_points(
    n: int, batches: int, extent: float, generator: torch.Generator, low: float = -4.0, dtype=torch.float32
) -> Tensor:
    """float [n, 4] (batch, x, y, z) points: integral batches in [0, batches), x, y, z uniform in
    [low, low + extent)."""
    batch = torch.randint(0, batches, (n, 1), generator=generator).double()
    xyz = torch.rand(n, 3, generator=generator, dtype=torch.float64) * extent + low
    return torch.cat([batch, xyz], 1).to(dtype)


def randomize_batchnorm(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Running statistics of every BatchNorm1d (sparse BatchNorm included) drawn at random, mean in
    [-0.1, 0.1) and variance in [0.5, 1.5), so that eval-mode outputs depend on them."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.running_mean.copy_(torch.rand(module.num_features, generator=gen) * 0.2 - 0.1)
                module.running_var.copy_(torch.rand(module.num_features, generator=gen) + 0.5)
    return model


def all_offsets(kernel_size, dilation) -> list[tuple[int, int, int]]:
    """Dilated kernel offsets, x slowest: odd sizes centred, even sizes from 0."""
    axes = [[(i - (k // 2 if k % 2 else 0)) * d for i in range(k)] for k, d in zip(kernel_size, dilation)]
    return list(itertools.product(*axes))


def _offset_bounds(kernel_size, dilation) -> tuple[Tensor, Tensor]:
    """Smallest and largest offset per axis (int64 [3] each)."""
    lo = torch.tensor([-(k // 2) * d if k % 2 else 0 for k, d in zip(kernel_size, dilation)])
    return lo, lo + torch.tensor([(k - 1) * d for k, d in zip(kernel_size, dilation)])


def dense_weight(weight: Tensor, kernel_size) -> Tensor:
    """[K, C_in, C_out] in offset order (x slowest) -> conv3d layout [C_out, C_in, kx, ky, kz]."""
    return weight.reshape(*kernel_size, weight.shape[1], weight.shape[2]).permute(4, 3, 0, 1, 2)


def dense_transpose_weight(weight: Tensor, kernel_size) -> Tensor:
    """[K, C_in, C_out] in offset order -> conv_transpose3d layout [C_in, C_out, kx, ky, kz]."""
    return weight.reshape(*kernel_size, weight.shape[1], weight.shape[2]).permute(3, 4, 0, 1, 2)


def to_grid(feats: Tensor, coords: Tensor, origin: Tensor, shape: list[int], batches: int) -> Tensor:
    """Dense [B, C, X, Y, Z] grid whose voxel (0, 0, 0) is the site `origin`."""
    grid = feats.new_zeros(batches, feats.shape[1], *shape)
    local = coords[:, 1:].long() - origin
    grid[coords[:, 0].long(), :, local[:, 0], local[:, 1], local[:, 2]] = feats
    return grid


def _read_support(values: Tensor, support: Tensor, origin: Tensor) -> tuple[Tensor, Tensor]:
    """(int32 site coords sorted by (batch, x, y, z), float64 values) of the grid voxels with support."""
    b, x, y, z = (support[:, 0] > 0).nonzero(as_tuple=True)
    coords = torch.stack([b, x + origin[0], y + origin[1], z + origin[2]], 1).int()
    return coords, values[b, :, x, y, z]


def _no_sites(weight: Tensor) -> tuple[Tensor, Tensor]:
    """The reference of a conv on an empty site set (a strided conv may leave no site)."""
    return torch.empty(0, 4, dtype=torch.int32), torch.empty(0, weight.shape[2], dtype=torch.float64)


def dense_conv_reference(feats, coords, weight, kernel_size, stride=(1, 1, 1), dilation=(1, 1, 1)):
    """Float64 dense cross-correlation out[o] = sum_k x[o * s + off_k] @ W[k].

    Returns (out_coords, out_feats) over the dense-support output set (sites whose receptive field
    holds an input), sorted by (batch, x, y, z). For a submanifold conv read it at the input sites.
    """
    if len(coords) == 0:
        return _no_sites(weight)
    ks, st, dil = kernel_size, stride, dilation
    lo_off, hi_off = _offset_bounds(ks, dil)
    spatial = coords[:, 1:].long()
    s = torch.tensor(st)
    # Outputs from the first whose field reaches the smallest input to the last whose field reaches
    # the largest; the grid then covers every input, and outputs without support are dropped.
    o_lo = torch.div(spatial.amin(0) - hi_off, s, rounding_mode="floor")
    o_hi = torch.div(spatial.amax(0) - lo_off + s - 1, s, rounding_mode="floor")
    origin = o_lo * s + lo_off
    shape = ((o_hi - o_lo) * s + hi_off - lo_off + 1).tolist()
    batches = int(coords[:, 0].max()) + 1
    grid = to_grid(feats.double(), coords, origin, shape, batches)
    occupancy = to_grid(torch.ones(len(coords), 1, dtype=torch.float64), coords, origin, shape, batches)
    out = F.conv3d(grid, dense_weight(weight.double(), ks), stride=st, dilation=dil)
    support = F.conv3d(occupancy, torch.ones(1, 1, *ks, dtype=torch.float64), stride=st, dilation=dil)
    return _read_support(out, support, o_lo)


def dense_conv_transpose_reference(feats, coords, weight, kernel_size, stride=(1, 1, 1), dilation=(1, 1, 1)):
    """Float64 dense transposed conv out[o * s + off_k] += x[o] @ W[k] (conv_transpose3d).

    Returns (out_coords, out_feats) over every site some input reaches, sorted by (batch, x, y, z).
    """
    if len(coords) == 0:
        return _no_sites(weight)
    ks, st, dil = kernel_size, stride, dilation
    lo_off, _ = _offset_bounds(ks, dil)
    spatial = coords[:, 1:].long()
    origin = spatial.amin(0)
    shape = (spatial.amax(0) - origin + 1).tolist()
    batches = int(coords[:, 0].max()) + 1
    grid = to_grid(feats.double(), coords, origin, shape, batches)
    occupancy = to_grid(torch.ones(len(coords), 1, dtype=torch.float64), coords, origin, shape, batches)
    out = F.conv_transpose3d(grid, dense_transpose_weight(weight.double(), ks), stride=st, dilation=dil)
    ones = torch.ones(1, 1, *ks, dtype=torch.float64)
    support = F.conv_transpose3d(occupancy, ones, stride=st, dilation=dil)
    # Output voxel j of conv_transpose3d is the site origin * s + lo_off + j.
    return _read_support(out, support, origin * torch.tensor(st) + lo_off)


def site_set(coords: Tensor) -> set[tuple[int, int, int, int]]:
    """The rows of int32 [N, 4] coords as a set of tuples; raises if a row repeats."""
    rows = [tuple(c) for c in coords.tolist()]
    sites = set(rows)
    if len(sites) != len(rows):
        raise AssertionError(f"{len(rows) - len(sites)} repeated sites")
    return sites


def read_sites(ref_coords: Tensor, ref_feats: Tensor, coords: Tensor, missing_zero: bool = False) -> Tensor:
    """Rows of ref_feats at `coords`, matched with a dict; a site absent from the reference raises,
    or reads zeros when missing_zero."""
    index = {tuple(c): i for i, c in enumerate(ref_coords.tolist())}
    zero_row = len(index)
    rows = [index.get(tuple(c), zero_row) for c in coords.tolist()]
    if not missing_zero and zero_row in rows:
        raise AssertionError(f"site {coords[rows.index(zero_row)].tolist()} is not in the reference")
    padded = torch.cat([ref_feats, ref_feats.new_zeros(1, ref_feats.shape[1])])
    return padded[torch.tensor(rows, dtype=torch.long)]


def compare_to_reference(out_coords: Tensor, out_feats: Tensor, ref_coords: Tensor, ref_feats: Tensor) -> float:
    """Asserts that the output site set equals the reference set exactly and returns the relative
    error of the output features read against the reference at the same sites."""
    got, want = site_set(out_coords), site_set(ref_coords)
    if got != want:
        extra, missing = sorted(got - want)[:5], sorted(want - got)[:5]
        raise AssertionError(
            f"site sets differ: {len(got - want)} extra (e.g. {extra}), {len(want - got)} missing (e.g. {missing})"
        )
    return relative_error(out_feats, read_sites(ref_coords, ref_feats, out_coords))


def brute_force_pairs(in_coords: Tensor, out_coords: Tensor, offsets, stride, transposed=False) -> set:
    """{(k, in_row, out_row)} by Python sets: regular o * s + off = i; transposed i * s + off = o."""
    index = {tuple(c): i for i, c in enumerate(in_coords.tolist())}
    offsets = offsets.tolist() if isinstance(offsets, Tensor) else offsets
    pairs = set()
    for o, (b, *xyz) in enumerate(out_coords.tolist()):
        for k, off in enumerate(offsets):
            if transposed:
                diff = [a - d for a, d in zip(xyz, off)]
                if any(v % s for v, s in zip(diff, stride)):
                    continue
                site = (b, *(v // s for v, s in zip(diff, stride)))
            else:
                site = (b, *(a * s + d for a, s, d in zip(xyz, stride, off)))
            if site in index:
                pairs.add((k, index[site], o))
    return pairs


def brute_force_strided_sites(coords: Tensor, kernel_size, stride, dilation, sites: str) -> set:
    """Output sites of a strided conv: "dense" = {o : o * s + off_k is an input for some k},
    "floor" = {floor(c / s)}."""
    rows = coords.tolist()
    if sites == "floor":
        return {(b, *(a // s for a, s in zip(xyz, stride))) for b, *xyz in rows}
    out = set()
    for b, *xyz in rows:
        for off in all_offsets(kernel_size, dilation):
            diff = [a - d for a, d in zip(xyz, off)]
            if not any(v % s for v, s in zip(diff, stride)):
                out.add((b, *(v // s for v, s in zip(diff, stride))))
    return out


def brute_force_generative_sites(coords: Tensor, kernel_size, stride, dilation) -> set:
    """Output sites of a generative transposed conv: {i * s + off_k}."""
    offsets = all_offsets(kernel_size, dilation)
    return {(b, *(a * s + d for a, s, d in zip(xyz, stride, off))) for b, *xyz in coords.tolist() for off in offsets}


# --- point-voxel references: Python floats (double), dicts and explicit loops, one point at a time ---


def point_site(point: list[float], stride) -> tuple[int, int, int, int]:
    """The site (batch, floor(x / s), floor(y / s), floor(z / s)) of a point row (b, x, y, z)."""
    return (int(point[0]), *(math.floor(point[1 + d] / stride[d]) for d in range(3)))


def brute_force_scatter_mean(points: Tensor, point_feats: Tensor, sites: Tensor, stride) -> Tensor:
    """float64 [len(sites), C]: each site's mean of the features of the points in it (0 where none)."""
    rows = {tuple(c): r for r, c in enumerate(sites.tolist())}
    members: dict[int, list[list[float]]] = {}
    for point, feats in zip(points.tolist(), point_feats.tolist()):
        row = rows.get(point_site(point, stride))
        if row is not None:
            members.setdefault(row, []).append(feats)
    out = [[0.0] * point_feats.shape[1] for _ in range(len(rows))]
    for row, group in members.items():
        out[row] = [math.fsum(column) / len(group) for column in zip(*group)]
    return torch.tensor(out, dtype=torch.float64).reshape(len(rows), point_feats.shape[1])


def brute_force_trilinear(points: Tensor, sites: Tensor, stride, nearest: bool = False) -> tuple[list, list]:
    """Per point, the 8 corners floor(q) + (dx, dy, dz) of q = p / s, dx slowest: (rows, weights)
    with row -1 for a missing site or a corner of zero weight; weights trilinear in the fractional
    part, renormalised over the present corners (all 0 when none is). nearest: corner (0, 0, 0)
    alone with weight 1."""
    index = {tuple(c): r for r, c in enumerate(sites.tolist())}
    all_rows, all_weights = [], []
    for point in points.tolist():
        q = [point[1 + d] / stride[d] for d in range(3)]
        base = [math.floor(v) for v in q]
        frac = [v - f for v, f in zip(q, base)]
        rows, weights = [], []
        for j, step in enumerate(itertools.product((0, 1), repeat=3)):
            weight = 1.0 if nearest else math.prod(f if d else 1 - f for f, d in zip(frac, step))
            row = index.get((int(point[0]), *(f + d for f, d in zip(base, step))), -1) if weight else -1
            rows.append(row if (j == 0 or not nearest) else -1)
            weights.append(weight if row >= 0 and (j == 0 or not nearest) else 0.0)
        total = sum(weights)
        all_rows.append(rows)
        all_weights.append([w / total if total > 0 else 0.0 for w in weights])
    return all_rows, all_weights


def brute_force_corners(sites: Tensor) -> Tensor:
    """int32 [M, 8]: the row of site r + (dx, dy, dz), dx slowest, or -1 (a dict of the sites)."""
    index = {tuple(c): r for r, c in enumerate(sites.tolist())}
    steps = list(itertools.product((0, 1), repeat=3))
    rows = [[index.get((b, x + dx, y + dy, z + dz), -1) for dx, dy, dz in steps] for b, x, y, z in sites.tolist()]
    return torch.tensor(rows, dtype=torch.int32).reshape(len(rows), 8)


def brute_force_devoxelize(points: Tensor, sites: Tensor, site_feats: Tensor, stride, nearest: bool = False) -> Tensor:
    """float64 [N, C]: each point's weighted sum of its corner sites' features (brute_force_trilinear)."""
    all_rows, all_weights = brute_force_trilinear(points, sites, stride, nearest)
    feats = site_feats.double().tolist()
    out = []
    for rows, weights in zip(all_rows, all_weights):
        acc = [0.0] * site_feats.shape[1]
        for row, weight in zip(rows, weights):
            if row >= 0:
                acc = [a + weight * v for a, v in zip(acc, feats[row])]
        out.append(acc)
    return torch.tensor(out, dtype=torch.float64).reshape(len(out), site_feats.shape[1])


def gather_matmul_weight_grad(feats: Tensor, grad_out: Tensor, nbr: Tensor) -> Tensor:
    """The convolution's weight gradient [K, C_in, C_out] as gathers and one matmul per offset (the
    Python formula conv_weight_grad replaced): a reference for tests and the baseline of its benchmark."""
    grads = []
    for k in range(nbr.shape[1]):
        out_rows = (nbr[:, k] >= 0).nonzero()[:, 0]
        grads.append(feats.index_select(0, nbr[out_rows, k].long()).t() @ grad_out.index_select(0, out_rows))
    return torch.stack(grads)
