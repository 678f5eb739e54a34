"""Independent references for tests: dense conv3d on a grid, and brute-force pair enumeration.

Nothing here uses the hash tables or kernel maps under test.
"""

import itertools

import torch
import torch.nn.functional as F
from torch import Tensor


def random_sites(n: int, batches: int, extent: int, generator: torch.Generator, low: int = -4) -> Tensor:
    """Up to n distinct int32 (batch, x, y, z) rows with x, y, z in [low, low + extent)."""
    rows = torch.stack(
        [
            torch.randint(0, batches, (n,), generator=generator),
            *(torch.randint(low, low + extent, (n,), generator=generator) for _ in range(3)),
        ],
        1,
    )
    return torch.unique(rows, dim=0).int()


def dense_weight(weight: Tensor, kernel_size: tuple[int, int, int]) -> Tensor:
    """[K, C_in, C_out] in kernel_offsets order (x slowest) -> conv3d layout [C_out, C_in, kx, ky, kz]."""
    return weight.reshape(*kernel_size, weight.shape[1], weight.shape[2]).permute(4, 3, 0, 1, 2)


def to_grid(feats: Tensor, coords: Tensor, origin: Tensor, shape: list[int], batches: int) -> Tensor:
    grid = feats.new_zeros(batches, feats.shape[1], *shape)
    local = coords[:, 1:].long() - origin
    grid[coords[:, 0].long(), :, local[:, 0], local[:, 1], local[:, 2]] = feats
    return grid


def dense_conv_reference(feats, coords, weight, kernel_size, stride=(1, 1, 1), dilation=(1, 1, 1)):
    """Float64 dense cross-correlation read at every output site o (o * s + off_k convention).

    Returns (out_coords, out_feats) of the dense-support output set (sites where the receptive field
    holds an input), sorted by (batch, x, y, z); for stride 1 with odd kernels read it at the inputs.
    """
    ks, st, dil = kernel_size, stride, dilation
    lo_off = torch.tensor([-(k // 2) * d if k % 2 else 0 for k, d in zip(ks, dil)])
    hi_off = torch.tensor([(k - 1) * d for k, d in zip(ks, dil)]) + lo_off
    spatial = coords[:, 1:].long()
    s = torch.tensor(st)
    # A range of outputs wide enough that the grid covers every input; outputs without support
    # are dropped below.
    o_lo = torch.div(spatial.amin(0) - hi_off, s, rounding_mode="floor")
    o_hi = torch.div(spatial.amax(0) - lo_off + s - 1, s, rounding_mode="floor")
    origin = o_lo * s + lo_off
    shape = ((o_hi - o_lo) * s + hi_off - lo_off + 1).tolist()
    batches = int(coords[:, 0].max()) + 1
    grid = to_grid(feats.double(), coords, origin, shape, batches)
    occupancy = to_grid(torch.ones(len(coords), 1, dtype=torch.float64), coords, origin, shape, batches)
    w = dense_weight(weight.double(), ks)
    out = F.conv3d(grid, w, stride=st, dilation=dil)
    support = F.conv3d(occupancy, torch.ones(1, 1, *ks, dtype=torch.float64), stride=st, dilation=dil)
    b, x, y, z = (support[:, 0] > 0).nonzero(as_tuple=True)
    out_coords = torch.stack([b, x + o_lo[0], y + o_lo[1], z + o_lo[2]], 1).int()
    return out_coords, out[b, :, x, y, z]


def read_sites(ref_coords: Tensor, ref_feats: Tensor, coords: Tensor) -> Tensor:
    """Rows of ref_feats at `coords` (each must be a reference site), matched with Python dicts."""
    index = {tuple(c): i for i, c in enumerate(ref_coords.tolist())}
    return ref_feats[[index[tuple(c)] for c in coords.tolist()]]


def brute_force_pairs(in_coords: Tensor, out_coords: Tensor, offsets: Tensor, stride, transposed=False) -> set:
    """{(k, in_row, out_row)} by Python sets: regular o * s + off = i; transposed i * s + off = o."""
    index = {tuple(c): i for i, c in enumerate(in_coords.tolist())}
    pairs = set()
    for o, (b, *xyz) in enumerate(out_coords.tolist()):
        for k, off in enumerate(offsets.tolist()):
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


def all_offsets(kernel_size, dilation) -> list[tuple[int, int, int]]:
    axes = [[(i - (k // 2 if k % 2 else 0)) * d for i in range(k)] for k, d in zip(kernel_size, dilation)]
    return list(itertools.product(*axes))
