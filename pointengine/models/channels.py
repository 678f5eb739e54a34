"""Channel groups of the sparse U-Nets (MinkUNet, SPVCNN) in training form: the layer outputs that
must keep the same channels because a sum or a join lines them up, and the layers reading them.

An identity shortcut ties a residual block's output to its input (a chain of such blocks and the conv
feeding it are one group); a projection shortcut is a second producer of its block's output; the
decoder's concatenation reads two groups side by side (the transposed conv's, then the skip's); in
SPVCNN each point MLP's output is added to the voxel features of a stage, so it joins that stage's
group. The network's input channels and the classifier's outputs belong to no group.

Structured pruning (pointengine.compress.prune) keeps chosen channels per group with
`select_channels`; a checkpoint records the groups' widths and loading narrows a model to them
(`narrow_to`), which rebuilds a pruned model from its config.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .. import nn
from .blocks import ConvBlock, FusedResidualBlock, PointMLP, ResidualBlock
from .minkunet import MinkUNet


@dataclass(frozen=True)
class Layer:
    """A conv or linear layer: `inputs` the (group, width) of each block of its input channels in
    order (group None: the network's input), `output` its output's group (None: the class logits),
    `norm` the BatchNorm after it (None for the classifier)."""

    name: str
    module: nn.Conv3d | torch.nn.Linear
    norm: torch.nn.BatchNorm1d | None
    inputs: tuple[tuple[str | None, int], ...]
    output: str | None


@dataclass(frozen=True)
class ChannelGraph:
    """`groups`: each group's name (that of the first layer writing it) -> the layers writing it, in
    model order; `stage_outputs`: the groups of MinkUNet.widths (stem, down 1-4, up 1-4)."""

    layers: tuple[Layer, ...]
    groups: dict[str, tuple[Layer, ...]]
    stage_outputs: tuple[str, ...]

    def widths(self) -> dict[str, int]:
        return {name: _out_width(producers[0].module) for name, producers in self.groups.items()}


def channel_graph(model: torch.nn.Module) -> ChannelGraph | None:
    """The channel groups of a MinkUNet or SPVCNN in training form; None for any other model (one
    that pointengine.optimize has fused included)."""
    if not isinstance(model, MinkUNet) or any(
        isinstance(m, (nn.FusedConv3d, FusedResidualBlock)) for m in model.modules()
    ):
        return None
    trace = _Trace()
    x = trace.fixed()
    for i, block in enumerate(model.stem):
        x = trace.conv_block(f"stem.{i}", block, [x])
    stages, skips = [x], [x]
    for i, stage in enumerate(model.down):
        x = trace.conv_block(f"down.{i}.0", stage[0], [x])
        for j in range(1, len(stage)):
            x = trace.residual(f"down.{i}.{j}", stage[j], [x])
        stages.append(x)
        skips.append(x)
    skips.pop()
    for i, (up, blocks) in enumerate(zip(model.up, model.up_blocks)):
        x = trace.conv_block(f"up.{i}", up, [x])
        x = trace.residual(f"up_blocks.{i}.0", blocks[0], [x, skips.pop()])
        for j in range(1, len(blocks)):
            x = trace.residual(f"up_blocks.{i}.{j}", blocks[j], [x])
        stages.append(x)
    # SPVCNN's joins (spvcnn.py, forward_points): points read stage 0 (stem), then stage 4 + MLP 0 of
    # those, stage 6 + MLP 1 of that, stage 8 + MLP 2 of that.
    for i, mlp in enumerate(getattr(model, "point_transforms", ())):
        source, target = stages[(0, 4, 6)[i]], stages[(4, 6, 8)[i]]
        trace.point_mlp(f"point_transforms.{i}", mlp, source, target)
    trace.layer("classifier", model.classifier, None, [x], trace.fixed())
    return trace.graph(stages)


def select_channels(model: torch.nn.Module, keep: dict[str, Tensor]) -> None:
    """Keeps, in place, the channels `keep[group]` (int64 indices, ascending) of every group of
    `model` (a MinkUNet or SPVCNN in training form): every conv, linear layer and BatchNorm that
    writes or reads them is sliced, and `model.widths` follows."""
    graph = _graph_of(model)
    if set(keep) != set(graph.groups):
        raise ValueError(f"keep must name every channel group {sorted(graph.groups)}, got {sorted(keep)}")
    widths = graph.widths()
    for name, index in keep.items():
        if index.dim() != 1 or not 1 <= len(index) <= widths[name]:
            raise ValueError(
                f"group {name}: keep 1 to {widths[name]} channels, got indices of shape {list(index.shape)}"
            )
    with torch.no_grad():
        for layer in graph.layers:
            rows = _input_rows(layer.inputs, keep)
            out = keep[layer.output] if layer.output is not None else None
            _slice_layer(layer.module, rows, out)
            if layer.norm is not None and out is not None:
                _slice_norm(layer.norm, out)
    model.widths = tuple(len(keep[name]) for name in graph.stage_outputs)


def channel_widths(model: torch.nn.Module) -> dict[str, int] | None:
    """Width of each channel group (None for a model with no channel graph)."""
    graph = channel_graph(model)
    return None if graph is None else graph.widths()


def narrow_to(model: torch.nn.Module, widths: dict[str, int]) -> bool:
    """Keeps the first widths[group] channels of each group (the values do not matter: a checkpoint's
    weights are loaded next). False, the model unchanged, when its groups are other ones or narrower."""
    current = channel_widths(model)
    if current is None or not isinstance(widths, dict) or set(current) != set(widths):
        return False
    if any(not isinstance(widths[g], int) or not 1 <= widths[g] <= current[g] for g in current):
        return False
    if widths != current:
        select_channels(model, {name: torch.arange(width) for name, width in widths.items()})
    return True


def _graph_of(model: torch.nn.Module) -> ChannelGraph:
    graph = channel_graph(model)
    if graph is None:
        raise TypeError(
            f"channel groups are known for MinkUNet and SPVCNN in training form (before pointengine.optimize), "
            f"got {type(model).__name__}"
        )
    return graph


def _in_width(module: torch.nn.Module) -> int:
    return module.in_features if isinstance(module, torch.nn.Linear) else module.in_channels


def _out_width(module: torch.nn.Module) -> int:
    return module.out_features if isinstance(module, torch.nn.Linear) else module.out_channels


def _input_rows(inputs: tuple[tuple[str | None, int], ...], keep: dict[str, Tensor]) -> Tensor | None:
    """Kept input channels of a layer reading `inputs` side by side; None: all of them."""
    if all(group is None for group, _ in inputs):
        return None
    rows, offset = [], 0
    for group, width in inputs:
        rows.append(offset + (keep[group] if group is not None else torch.arange(width)))
        offset += width
    return torch.cat(rows)


def _parameter(old: torch.nn.Parameter, value: Tensor) -> torch.nn.Parameter:
    return torch.nn.Parameter(value.contiguous(), requires_grad=old.requires_grad)


def _slice_layer(module: torch.nn.Module, rows: Tensor | None, out: Tensor | None) -> None:
    """Conv3d weight [K, C_in, C_out] and Linear weight [out, in] on the kept channels; bias on out."""
    conv = isinstance(module, nn.Conv3d)
    in_dim, out_dim = (1, 2) if conv else (1, 0)
    weight = module.weight
    if rows is not None:
        weight = weight.index_select(in_dim, rows.to(weight.device))
    if out is not None:
        weight = weight.index_select(out_dim, out.to(weight.device))
        if module.bias is not None:
            module.bias = _parameter(module.bias, module.bias.index_select(0, out.to(weight.device)))
    module.weight = _parameter(module.weight, weight)
    if conv:
        module.in_channels, module.out_channels = weight.shape[1], weight.shape[2]
    else:
        module.out_features, module.in_features = weight.shape


def _slice_norm(norm: torch.nn.BatchNorm1d, out: Tensor) -> None:
    for name in ("weight", "bias", "running_mean", "running_var"):
        value = getattr(norm, name)
        if value is None:
            continue
        sliced = value.index_select(0, out.to(value.device))
        setattr(norm, name, _parameter(value, sliced) if isinstance(value, torch.nn.Parameter) else sliced)
    norm.num_features = len(out)


class _Trace:
    """Layers recorded in model order on channel spaces joined by a union-find; fixed spaces (the
    network's input, the class logits) are never pruned."""

    def __init__(self):
        self.parent: list[int] = []
        self.fixed_spaces: set[int] = set()
        self.layers: list[tuple[str, torch.nn.Module, torch.nn.Module | None, list[int], int]] = []

    def space(self) -> int:
        self.parent.append(len(self.parent))
        return self.parent[-1]

    def fixed(self) -> int:
        space = self.space()
        self.fixed_spaces.add(space)
        return space

    def find(self, space: int) -> int:
        while self.parent[space] != space:
            self.parent[space] = self.parent[self.parent[space]]
            space = self.parent[space]
        return space

    def tie(self, a: int, b: int) -> None:
        a, b = self.find(a), self.find(b)
        self.parent[max(a, b)] = min(a, b)

    def layer(self, name, module, norm, inputs: list[int], output: int | None = None) -> int:
        output = self.space() if output is None else output
        self.layers.append((name, module, norm, inputs, output))
        return output

    def conv_block(self, name: str, block: ConvBlock, inputs: list[int]) -> int:
        return self.layer(f"{name}.0", block[0], block[1], inputs)

    def residual(self, name: str, block: ResidualBlock, inputs: list[int]) -> int:
        middle = self.layer(f"{name}.main.0", block.main[0], block.main[1], inputs)
        out = self.layer(f"{name}.main.3", block.main[3], block.main[4], [middle])
        if isinstance(block.shortcut, torch.nn.Identity):
            (source,) = inputs
            self.tie(out, source)
        else:
            self.layer(f"{name}.shortcut.0", block.shortcut[0], block.shortcut[1], inputs, out)
        return out

    def point_mlp(self, name: str, mlp: PointMLP, source: int, target: int) -> None:
        self.layer(f"{name}.0", mlp[0], mlp[1], [source], target)

    def graph(self, stages: list[int]) -> ChannelGraph:
        names: dict[int, str] = {}  # group root -> its first producer
        widths: dict[int, int] = {}
        for name, module, _, _, output in self.layers:
            root = self.find(output)
            if root not in self.fixed_spaces:
                names.setdefault(root, name)
                widths[root] = _out_width(module)

        def block(space: int, module: torch.nn.Module) -> tuple[str | None, int]:
            # A space no layer writes is the network's input, which its one reader reads whole.
            root = self.find(space)
            return names.get(root), widths.get(root, _in_width(module))

        layers = tuple(
            Layer(name, module, norm, tuple(block(s, module) for s in inputs), names.get(self.find(output)))
            for name, module, norm, inputs, output in self.layers
        )
        groups: dict[str, list[Layer]] = {}
        for layer in layers:
            if layer.output is not None:
                groups.setdefault(layer.output, []).append(layer)
        return ChannelGraph(layers, {name: tuple(g) for name, g in groups.items()},
                            tuple(names[self.find(s)] for s in stages))
