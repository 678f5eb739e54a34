"""The autotuner: per group of sparse convs that share kernel maps, the dataflow that runs them
fastest on sample scans, written onto the layers (`Conv3d.dataflow`, saved with the model as its
extra state). Never a global setting: the choice is each module's own.

How it times: one forward per sample, on fresh copies of its inputs (so every map is built as for a
new scan). A hook before each sparse conv takes the layer's input and kernel map and runs the conv
with each candidate dataflow, round-robin, `repeats` times after a warm-up (medians); the first time a
map is seen, the form each dataflow reads besides the neighbour table (pair lists, row order) is built
and timed, once per map, since the layers sharing the map share it too. A group is the layers linked
by shared maps (over all samples); its cost for a dataflow is the sum of its layers' medians and of
its maps' form builds, and the cheapest dataflow wins (ties: the first candidate). 1x1 convs read no
map and run no dataflow; they are left as they are.
"""

from collections import defaultdict
from dataclasses import dataclass

import torch

from .functional import conv as F
from .nn import Conv3d
from .profiler import conv_kind, fresh_inputs, input_feats
from .timing import Clock, median_seconds


@dataclass(frozen=True)
class TunedGroup:
    layers: tuple[str, ...]  # module names, in the order the model first calls them
    seconds: dict[str, float]  # per candidate dataflow: summed over the samples
    dataflow: str  # the fastest, now set on every layer of the group


@dataclass(frozen=True)
class TuneResult:
    groups: tuple[TunedGroup, ...]

    @property
    def dataflows(self) -> dict[str, str]:
        """Module name -> chosen dataflow: the plain per-module setting tune wrote onto the model."""
        return {name: group.dataflow for group in self.groups for name in group.layers}


class _Timings:
    """What the hooks measured, over every sample."""

    def __init__(self, candidates: tuple[str, ...], repeats: int, clock: Clock):
        self.candidates, self.repeats, self.clock = candidates, repeats, clock
        self.layer_seconds = defaultdict(lambda: dict.fromkeys(candidates, 0.0))  # name -> dataflow -> s
        self.map_users: list[tuple[str, ...]] = []  # names of the layers reading each map
        self.map_seconds: list[dict[str, float]] = []  # each map's form builds
        self.sample_maps: dict[int, tuple] = {}  # id(map) -> (map, its index), during one sample

    def hook(self, name: str):
        def before(module: Conv3d, args) -> None:
            input = args[0]
            kmap, _ = module.kernel_map(input)
            if id(kmap) not in self.sample_maps:
                self.sample_maps[id(kmap)] = (kmap, len(self.map_users))
                self.map_users.append(())
                self.map_seconds.append({d: self._form_seconds(kmap, d, input.feats.device) for d in self.candidates})
            index = self.sample_maps[id(kmap)][1]
            self.map_users[index] += (name,)
            feats = input.feats.contiguous()
            runs = {d: lambda d=d: F.apply_kernel_map(feats, module.weight, kmap, d) for d in self.candidates}
            for dataflow, seconds in median_seconds(runs, feats.device, self.repeats).items():
                self.layer_seconds[name][dataflow] += seconds

        return before

    def _form_seconds(self, kmap, dataflow: str, device: torch.device) -> float:
        start = self.clock.mark()
        F.prepare_kernel_map(kmap, dataflow, device)
        return self.clock.seconds(start, self.clock.mark())


def _groups(map_users: list[tuple[str, ...]]) -> list[tuple[list[str], list[int]]]:
    """(layer names, map indices) of each set of layers linked by shared maps, by first appearance."""
    parent: dict[str, str] = {}

    def root(name: str) -> str:
        while parent[name] != name:
            parent[name] = parent[parent[name]]
            name = parent[name]
        return name

    for users in map_users:
        for name in users:
            parent.setdefault(name, name)
        for name in users[1:]:
            parent[root(name)] = root(users[0])
    members: dict[str, tuple[list[str], list[int]]] = {}
    for index, users in enumerate(map_users):
        group = members.setdefault(root(users[0]), ([], []))
        group[0].extend(name for name in users if name not in group[0])
        group[1].append(index)
    return list(members.values())


def tune(model: torch.nn.Module, sample_inputs, repeats: int = 3, dataflows: tuple[str, ...] | None = None) -> TuneResult:
    """Times every candidate dataflow (default: those that run different code on the inputs' device,
    `functional.conv.distinct_dataflows`) for each group of sparse convs sharing kernel maps, on each
    sample (a model input, or a tuple of them), under torch.no_grad; sets each layer's `dataflow` to
    its group's fastest and returns what it measured."""
    samples = [sample if isinstance(sample, tuple) else (sample,) for sample in sample_inputs]
    if not samples:
        raise ValueError("tune needs at least one sample input")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    device = input_feats(samples[0]).device
    candidates = tuple(dataflows) if dataflows is not None else F.distinct_dataflows(device)
    unknown = [d for d in candidates if d not in F.DATAFLOWS]
    if not candidates or unknown:
        raise ValueError(f"dataflows must be a non-empty selection of {F.DATAFLOWS}, got {dataflows!r}")
    timings = _Timings(candidates, repeats, Clock(device))
    modules = {name: module for name, module in model.named_modules()
               if isinstance(module, Conv3d) and conv_kind(module) != "1x1"}
    handles = [module.register_forward_pre_hook(timings.hook(name)) for name, module in modules.items()]
    try:
        with torch.no_grad():
            for sample in samples:
                timings.sample_maps = {}
                model(*fresh_inputs(sample))
    finally:
        for handle in handles:
            handle.remove()
    groups = []
    for names, maps in _groups(timings.map_users):
        seconds = {d: sum(timings.layer_seconds[n][d] for n in names) + sum(timings.map_seconds[m][d] for m in maps)
                   for d in candidates}
        choice = min(candidates, key=lambda d: seconds[d])
        for name in names:
            modules[name].dataflow = choice
        groups.append(TunedGroup(tuple(names), seconds, choice))
    return TuneResult(tuple(groups))
