"""Per-layer profile of a forward pass on real sparse data: kernel-map time, compute time, kernel
pairs and multiply-accumulates.

A Conv3d's kernel map is built (or found in the cache) in a pre-hook before the layer runs, so the
layer's own time is its compute alone. MACs of a sparse conv = pairs x C_in x C_out, with pairs the
(input, output) hits of its kernel map; of a linear layer = rows x in x out.
"""

import time
from dataclasses import dataclass

import torch

from .nn import Conv3d
from .tensor import SparseTensor


@dataclass
class LayerProfile:
    name: str
    kind: str  # "conv", "linear" or "other" (BatchNorm, ReLU, ... : any other leaf module)
    channels: tuple[int, int]  # (in, out); (0, 0) for "other"
    sites: int  # output rows
    pairs: int  # kernel-map hits; rows for a linear layer, 0 for "other"
    macs: int
    map_s: float
    compute_s: float


class _Recorder:
    def __init__(self, name: str, rows: list[LayerProfile]):
        self.name, self.rows = name, rows
        self.kmap, self.map_s, self.start = None, 0.0, 0.0

    def before(self, module, args):
        if isinstance(module, Conv3d):
            start = time.perf_counter()
            self.kmap, _ = module.kernel_map(args[0])
            self.map_s = time.perf_counter() - start
        self.start = time.perf_counter()

    def after(self, module, args, output):
        compute_s = time.perf_counter() - self.start
        feats = output.feats if isinstance(output, SparseTensor) else output
        sites = feats.shape[0] if feats.dim() > 1 else 1
        if isinstance(module, Conv3d):
            kind, channels, pairs = "conv", (module.in_channels, module.out_channels), self.kmap.n_pairs
        elif isinstance(module, torch.nn.Linear):
            kind, channels = "linear", (module.in_features, module.out_features)
            pairs = args[0].numel() // module.in_features
        else:
            kind, channels, pairs = "other", (0, 0), 0
        macs = pairs * channels[0] * channels[1]
        self.rows.append(LayerProfile(self.name, kind, channels, sites, pairs, macs, self.map_s, compute_s))
        self.kmap, self.map_s = None, 0.0


def profile(model: torch.nn.Module, *inputs) -> list[LayerProfile]:
    """Runs model(*inputs) once under torch.no_grad and returns one row per leaf-module call, in
    call order. Build the SparseTensor right before so no kernel map is cached yet, or the map
    times are only cache look-ups."""
    rows: list[LayerProfile] = []
    handles = []
    for name, module in model.named_modules():
        if next(module.children(), None) is not None:
            continue
        rec = _Recorder(name, rows)
        handles += [module.register_forward_pre_hook(rec.before), module.register_forward_hook(rec.after)]
    try:
        with torch.no_grad():
            model(*inputs)
    finally:
        for handle in handles:
            handle.remove()
    return rows


def count_macs(model: torch.nn.Module, *inputs) -> int:
    """Multiply-accumulates of one forward pass: sparse convs (pairs x C_in x C_out) and linear layers."""
    return sum(row.macs for row in profile(model, *inputs))
