"""Per-layer profile of a forward pass on real sparse data: what each leaf module is (kind, tensor
stride, sites, kernel-map pairs, multiply-accumulates, an estimate of its memory traffic), the time of
its kernel map and of its compute, and how the compute rate compares with this machine's GEMMs.

Hooks on every leaf module split the forward into: the time between layers (glue code outside any
leaf module: residual adds, concatenation; and the hooks' own bookkeeping), a conv's kernel map (built
in its pre-hook, with the form its dataflow reads, before the layer runs: the layer's own time is its
compute alone), and the layer. Their sum is the instrumented forward's time. A kernel map shared by
several layers is built by the first and found in the cache by the others: its time counts once, at
the first user (`map_owner` names it for the others; their look-up counts as time between layers).

MACs of a sparse conv = pairs x C_in x C_out, with pairs the (input, output) hits of its kernel map;
of a 1x1 conv or a linear layer = rows x in x out. Memory traffic is the compulsory estimate: input
and output features, the module's parameters and buffers, and the neighbour table (int32 [N_out, K])
of the map it reads, each moved once; gathers that miss the caches move more.
"""

import statistics
from dataclasses import dataclass

import torch

from .functional import conv as F
from .nn import Conv3d
from .peaks import GemmRates
from .tensor import PointTensor, SparseTensor
from .timing import Clock

Triple = tuple[int, int, int]
MAP_KINDS = ("submanifold", "strided", "transposed", "generative")  # convs that read a kernel map
CONV_KINDS = (*MAP_KINDS, "1x1")
KINDS = (*CONV_KINDS, "linear", "other")


@dataclass(frozen=True)
class LayerProfile:
    name: str
    kind: str  # one of KINDS; "other" is any other leaf module (BatchNorm, ReLU, Identity, ...)
    stride: Triple | None  # tensor stride of the input (None when it is not a SparseTensor)
    out_stride: Triple | None  # of the output
    channels: tuple[int, int]  # (in, out); (0, 0) for "other"
    sites_in: int  # input rows
    sites_out: int  # output rows
    pairs: int  # kernel-map hits; rows for a 1x1 conv or a linear layer, 0 for "other"
    macs: int
    traffic_bytes: int
    dataflow: str | None  # the dataflow a sparse conv ran (None for the others)
    map_owner: str | None  # the layer that built the kernel map this one found cached (None: built here, or no map)
    gap_s: float  # since the previous layer (or the start of the forward): code between layers
    map_s: float
    compute_s: float
    gemm_flops_per_s: float | None  # torch.mm of the layer's shape [pairs, C_in] @ [C_in, C_out]

    @property
    def is_conv(self) -> bool:
        return self.kind in CONV_KINDS

    @property
    def flops_per_s(self) -> float:
        """Achieved rate of useful work, 2 x MACs / compute time."""
        return 2 * self.macs / self.compute_s if self.compute_s > 0 else 0.0


@dataclass(frozen=True)
class Profile:
    """Rows in call order; each time is the median over `repeats` instrumented forwards."""

    layers: tuple[LayerProfile, ...]
    tail_s: float  # from the end of the last layer to the return of the forward
    device: str
    dtype: str
    threads: int
    repeats: int
    peak_flops_per_s: float | None  # the machine's peak (peaks.py); None: not measured
    peak_source: str | None  # what the peak is: the FMA loop (CPU float32) or the best torch.mm rate
    end_to_end_s: float | None  # median uninstrumented forward, alternated with the profiled ones

    @property
    def macs(self) -> int:
        return sum(row.macs for row in self.layers)

    @property
    def map_s(self) -> float:
        return sum(row.map_s for row in self.layers)

    @property
    def compute_s(self) -> float:
        return sum(row.compute_s for row in self.layers)

    @property
    def outside_s(self) -> float:
        """Time between layers, before the first and after the last."""
        return sum(row.gap_s for row in self.layers) + self.tail_s

    @property
    def total_s(self) -> float:
        return self.map_s + self.compute_s + self.outside_s


def fresh_inputs(inputs: tuple) -> tuple:
    """The inputs with new coordinate maps: SparseTensor and PointTensor copies (same feats and
    coordinates, a new hash table) with no kernel map or point table cached yet, so that a forward
    builds every map as it does for a new scan. Other inputs as they are."""
    copies = []
    for value in inputs:
        if isinstance(value, SparseTensor):
            value = SparseTensor(value.feats, value.coords, value.stride)
        elif isinstance(value, PointTensor):
            value = PointTensor(value.feats, value.coords)
        copies.append(value)
    return tuple(copies)


def input_feats(inputs: tuple) -> torch.Tensor:
    """The features of the first tensor input: they say the device and dtype of the run."""
    for value in inputs:
        if isinstance(value, (SparseTensor, PointTensor)):
            return value.feats
        if isinstance(value, torch.Tensor):
            return value
    raise ValueError("the model inputs hold no SparseTensor, PointTensor or Tensor")


def conv_kind(module: Conv3d) -> str:
    if F.is_pointwise(module.weight.shape[0], module.stride, module.generative):
        return "1x1"
    if module.generative:
        return "generative"
    if module.transposed:
        return "transposed"
    return "submanifold" if module.stride == (1, 1, 1) else "strided"


def _feats(value) -> torch.Tensor | None:
    if isinstance(value, (SparseTensor, PointTensor)):
        return value.feats
    return value if isinstance(value, torch.Tensor) else None


def _rows(feats: torch.Tensor | None) -> int:
    if feats is None:
        return 0
    return feats.shape[0] if feats.dim() > 1 else 1


def _bytes(tensor: torch.Tensor | None) -> int:
    return 0 if tensor is None else tensor.numel() * tensor.element_size()


@dataclass
class _Call:
    """One leaf-module call of one forward: clock marks, and what is known without waiting on a device."""

    name: str
    start: object
    kmap: object = None  # the kernel map a sparse conv read; its pairs are counted after the forward
    dataflow: str | None = None
    map_owner: str | None = None  # who built the map, when an earlier call did
    map_end: object = None
    end: object = None
    static: dict | None = None  # the row's fields other than times, pairs and MACs


class _Recorder:
    """Hooks on every leaf module for one forward at a time."""

    def __init__(self, model: torch.nn.Module, clock: Clock):
        self.clock, self.calls, self.map_users = clock, [], {}
        self.begin = None
        self.handles = []
        for name, module in model.named_modules():
            if next(module.children(), None) is None:
                self.handles.append(module.register_forward_pre_hook(self._before_hook(name)))
                self.handles.append(module.register_forward_hook(self._after))

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()

    def start(self) -> None:
        self.calls, self.map_users = [], {}
        self.begin = self.clock.mark()

    def _before_hook(self, name: str):
        def before(module, args):
            call = _Call(name, self.clock.mark())
            if isinstance(module, Conv3d) and conv_kind(module) != "1x1":
                kmap, _ = module.kernel_map(args[0])
                call.dataflow = F.resolve_dataflow(module.dataflow, args[0].feats, module.weight)
                F.prepare_kernel_map(kmap, call.dataflow, args[0].feats.device)
                # Keyed by identity, the map held in the value so that no other map can take its id.
                first = self.map_users.setdefault(id(kmap), (kmap, name, len(self.calls)))
                call.kmap, call.map_owner = kmap, first[1] if first[2] != len(self.calls) else None
            call.map_end = self.clock.mark()
            self.calls.append(call)

        return before

    def _after(self, module, args, output) -> None:
        call = self.calls[-1]
        call.end = self.clock.mark()
        source, result = _feats(args[0]) if args else None, _feats(output)
        if isinstance(module, Conv3d):
            kind, channels = conv_kind(module), (module.in_channels, module.out_channels)
        elif isinstance(module, torch.nn.Linear):
            kind, channels = "linear", (module.in_features, module.out_features)
        else:
            kind, channels = "other", (0, 0)
        state = [*module.parameters(recurse=False), *module.buffers(recurse=False)]
        call.static = {
            "kind": kind,
            "stride": args[0].stride if args and isinstance(args[0], SparseTensor) else None,
            "out_stride": output.stride if isinstance(output, SparseTensor) else None,
            "channels": channels,
            "sites_in": _rows(source),
            "sites_out": _rows(result),
            "traffic_bytes": _bytes(source) + _bytes(result) + sum(_bytes(t) for t in state)
            + (_bytes(call.kmap.nbr) if call.kmap is not None else 0),
        }
        if kind in ("1x1", "linear"):
            call.static["rows"] = source.numel() // channels[0]

    def times(self, end) -> tuple[list[tuple[float, float, float]], float]:
        """([(gap, map, compute)] per call, tail) of the forward that ended at `end`."""
        seconds, previous = [], self.begin
        for call in self.calls:
            gap, map_s = self.clock.seconds(previous, call.start), self.clock.seconds(call.start, call.map_end)
            if call.kmap is None or call.map_owner is not None:
                # No map, or a cached one (counted at its first user): the hook's own moment is glue.
                gap, map_s = gap + map_s, 0.0
            seconds.append((gap, map_s, self.clock.seconds(call.map_end, call.end)))
            previous = call.end
        return seconds, self.clock.seconds(previous, end)


def _pairs(call: _Call, counted: dict) -> int:
    if call.kmap is not None:
        if id(call.kmap) not in counted:
            counted[id(call.kmap)] = call.kmap.n_pairs  # read after the forward: on a GPU, a wait
        return counted[id(call.kmap)]
    return call.static.get("rows", 0)


def profile(model: torch.nn.Module, *inputs, repeats: int = 3, warmup: int = 1, end_to_end: bool = True,
            peaks: bool = True) -> Profile:
    """Profiles model(*inputs) under torch.no_grad: `warmup` plain forwards, then `repeats`
    instrumented ones, each (with `end_to_end`) after an uninstrumented one timed alike; per-row
    medians. Every forward runs on fresh copies of the inputs (`fresh_inputs`), so each builds its
    kernel maps as for a new scan. With `peaks`, the GEMM of each layer's shape and the machine's
    peak are measured afterwards (median of `repeats`). Times use CUDA events when the inputs are on
    a GPU. A model whose sequence of leaf calls changes from one forward to the next is refused."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    feats = input_feats(inputs)
    clock = Clock(feats.device)
    calls, runs, plain = None, [], []  # calls of the first profiled forward (their maps kept for the pairs)
    with torch.no_grad():
        for _ in range(warmup):
            model(*fresh_inputs(inputs))
        for _ in range(repeats):
            if end_to_end:
                copies = fresh_inputs(inputs)
                start = clock.mark()
                model(*copies)
                plain.append(clock.seconds(start, clock.mark()))
            copies = fresh_inputs(inputs)
            recorder = _Recorder(model, clock)
            try:
                recorder.start()
                model(*copies)
                end = clock.mark()
            finally:
                recorder.remove()
            runs.append(recorder.times(end))
            calls = calls or recorder.calls
            if [c.name for c in recorder.calls] != [c.name for c in calls]:
                raise RuntimeError("the model called its layers in a different order from one forward to the next")
    rates = GemmRates(feats.dtype, feats.device, repeats) if peaks else None
    counted, layers = {}, []
    for i, call in enumerate(calls):
        gap, map_s, compute_s = (statistics.median(run[0][i][j] for run in runs) for j in range(3))
        pairs = _pairs(call, counted)
        channels = call.static["channels"]
        macs = pairs * channels[0] * channels[1]
        static = {key: value for key, value in call.static.items() if key != "rows"}
        layers.append(LayerProfile(
            name=call.name, **static, pairs=pairs, macs=macs, dataflow=call.dataflow,
            map_owner=call.map_owner,
            gap_s=gap, map_s=map_s, compute_s=compute_s,
            gemm_flops_per_s=rates(pairs, *channels) if rates is not None and macs > 0 else None,
        ))
    peak = rates.peak() if rates is not None else None
    return Profile(
        layers=tuple(layers),
        tail_s=statistics.median(run[1] for run in runs),
        device=str(feats.device),
        dtype=str(feats.dtype).removeprefix("torch."),
        threads=torch.get_num_threads(),
        repeats=repeats,
        peak_flops_per_s=peak[0] if peak else None,
        peak_source=peak[1] if peak else None,
        end_to_end_s=statistics.median(plain) if plain else None,
    )


def count_macs(model: torch.nn.Module, *inputs) -> int:
    """Multiply-accumulates of one forward pass: sparse convs (pairs x C_in x C_out), 1x1 convs and
    linear layers (rows x in x out)."""
    return profile(model, *inputs, repeats=1, warmup=0, end_to_end=False, peaks=False).macs
