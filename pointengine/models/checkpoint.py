"""Checkpoints. `save_checkpoint` writes safetensors (weights, no pickle) with the config in the
metadata; `load_checkpoint` reads those, and the state dicts of TorchSparse 1.x/2.x (the SPVNAS model
zoo), MinkowskiEngine and spconv, converting each conv weight to our layout (peer_layouts.py).

A peer's parameters are matched to ours module by module, in order: the checkpoint's modules as its
state dict lists them (the order its model registered them: for SPVNAS's networks, the order their
forward uses them), ours in our registration order. The one place the two orders differ is the
decoder: SPVNAS registers stage i as up{i} = [deconvolution block, residual blocks], MinkUNet all its
up convs (up[i]) before all its block pairs (up_blocks[i]); the checkpoint's decoder is moved into our
order first. Each pair must have the same parameter names (after the weight rename) and shapes; any
leftover, missing or misshapen parameter raises a ValueError listing them. Our own checkpoints match
by name.

Order needs the peer's own key order: a peer state dict saved as safetensors (sorted keys) will not
match; save it with torch.save or pass it as a dict.
"""

import copy
import json
import os
import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import safetensors
import safetensors.torch
import torch
from torch import Tensor

from ..nn import Conv3d
from ..outputs import write_bytes_atomically
from .channels import channel_widths, narrow_to
from .peer_layouts import LAYOUTS, WEIGHT_KEY, convert_bias, convert_weight, detect_layout, expected_weight_shape

FORMAT_KEY = "pointengine_checkpoint"
FORMAT_VERSION = "1"
EXTRA_STATE = "_extra_state"
CHANNELS_KEY = "channels"
PRECISION_KEY = "precision"
# Keys under which training scripts nest the state dict (SPVNAS's zoo files use "model").
WRAPPER_KEYS = ("model", "state_dict", "model_state_dict", "net", "network")
# Mismatches listed in full in an error message before it summarises the rest.
LISTED = 40
_SPVNAS_DECODER = re.compile(r"up(\d+)\.(\d+)\.")


@dataclass(frozen=True)
class Converted:
    """One parameter loaded: its checkpoint name, ours, and what the conversion changed ("" if nothing)."""

    source: str
    target: str
    change: str


@dataclass(frozen=True)
class Dropped:
    """A checkpoint parameter deliberately not loaded, and why."""

    source: str
    shape: tuple[int, ...]
    reason: str


@dataclass(frozen=True)
class LoadReport:
    """What load_checkpoint did: the layout it read, every parameter it loaded, what it dropped, the
    config stored in the file (our own checkpoints; None otherwise), whether it narrowed the model to
    the file's channel widths (a pruned model's checkpoint), and the precision it turned the model to
    (a quantized model's checkpoint: "int8" or "bf16"; None otherwise)."""

    layout: str
    converted: tuple[Converted, ...]
    dropped: tuple[Dropped, ...]
    config: dict | None
    narrowed: bool = False
    precision: str | None = None

    def __str__(self) -> str:
        changed = sum(1 for c in self.converted if c.change)
        lines = [f"{self.layout} layout: {len(self.converted)} parameters loaded, {changed} of them converted"]
        if self.narrowed:
            lines[0] += "; the model narrowed to the checkpoint's channel widths (pruned)"
        if self.precision:
            lines[0] += f"; the model turned into its {self.precision} form (quantized)"
        lines += [f"dropped {d.source} {list(d.shape)}: {d.reason}" for d in self.dropped]
        return "\n".join(lines)


def save_checkpoint(
    model: torch.nn.Module, path, config: dict, training_form: torch.nn.Module | None = None, precision: str | None = None
) -> Path:
    """Writes `model`'s parameters and buffers to a safetensors file at `path`, with `config` (a
    JSON-serialisable dict) and the modules' extra state (e.g. Conv3d's dataflow choice) in its
    metadata. For a MinkUNet or SPVCNN the metadata also holds the width of each channel group
    (models/channels.py), so that a pruned one loads into a model built from its config. A quantized
    model (pointengine.compress.quantize) names its `precision` and the float `training_form` it was
    made from (for the widths): loading turns a model built from the config into that form. The file
    appears complete or not at all (written beside it, then renamed)."""
    if not isinstance(config, dict):
        raise ValueError(f"config must be a dict, got {type(config).__name__}")
    tensors, extra = {}, {}
    for name, value in model.state_dict().items():
        if name.endswith(EXTRA_STATE):
            extra[name] = value
        else:
            tensors[name] = value.detach().cpu().contiguous()
    metadata = {
        FORMAT_KEY: FORMAT_VERSION,
        "config": _to_json(config, "config"),
        "extra_state": _to_json(extra, "extra state"),
    }
    widths = channel_widths(model if training_form is None else training_form)
    if widths is not None:
        metadata[CHANNELS_KEY] = json.dumps(widths)
    if precision is not None:
        metadata[PRECISION_KEY] = precision
    path = Path(path)
    write_bytes_atomically(path, safetensors.torch.save(tensors, metadata))
    return path


def load_checkpoint(model: torch.nn.Module, source, layout: str | None = None) -> LoadReport:
    """Loads `source` into `model` (parameters, BatchNorm statistics and num_batches_tracked).

    `source`: a path (our .safetensors, or a torch.save file such as .pt/.pth/.tar, read with
    weights_only=True so no pickled code runs) or a state dict. Wrappers such as {"model": ...} and
    DataParallel's `module.` prefix are removed. `layout` ("pointengine", "torchsparse", "minkowski",
    "spconv") overrides the detected one. Raises ValueError, listing every mismatched parameter, when
    the checkpoint does not fit the model's architecture or widths; the model is unchanged then.

    A checkpoint of ours recording channel-group widths narrower than the model's (a pruned MinkUNet or
    SPVCNN, pointengine.compress.prune) first narrows the model's layers to them, in place: a model
    built from the config at its channel ratio becomes the pruned architecture. One naming a precision
    (a quantized model) then turns the model, in place, into that inference form.
    """
    if layout is not None and layout not in LAYOUTS:
        raise ValueError(f"layout must be None or one of {LAYOUTS}, got {layout!r}")
    state, metadata = _read_source(source)
    ours = model.state_dict()
    if metadata is not None:
        layout = layout or "pointengine"
    layout = layout or detect_layout(state)
    narrowed, precision = None, (metadata or {}).get(PRECISION_KEY)
    if layout == "pointengine":
        extra = json.loads(metadata["extra_state"]) if metadata is not None else {}
        narrowed = _narrowed_copy(model, metadata)
        if narrowed is not None:
            ours = narrowed.state_dict()
        if precision is not None:
            ours = _precision_form(copy.deepcopy(model if narrowed is None else narrowed), precision, state).state_dict()
        loaded, converted, dropped, problems = _match_by_name(ours, state, extra)
    else:
        loaded, converted, dropped, problems = _match_in_order(model, ours, state, layout)
    if problems:
        shown = "\n  ".join(problems[:LISTED])
        more = f"\n  ... and {len(problems) - LISTED} more" if len(problems) > LISTED else ""
        raise ValueError(
            f"checkpoint does not fit {type(model).__name__} ({layout} layout). Mismatched parameters, "
            f"ours <- checkpoint ({len(problems)}):\n  {shown}{more}"
        )
    if narrowed is not None:
        narrow_to(model, channel_widths(narrowed))
    if precision is not None:
        _precision_form(model, precision, state)
    model.load_state_dict(loaded)
    config = json.loads(metadata["config"]) if metadata is not None else None
    return LoadReport(layout, tuple(converted), tuple(dropped), config, narrowed is not None, precision)


def _precision_form(model: torch.nn.Module, precision: str, state: dict) -> torch.nn.Module:
    """`model` in the quantized form a checkpoint's state holds: its convs with int8 or bfloat16
    weights in that precision, the others (those reading the raw input) float32."""
    from ..compress.quantize import precision_form  # compress builds on models: imported when needed

    low = {name[: -len(".weight")] for name, value in state.items()
           if name.endswith(".weight") and isinstance(value, Tensor) and value.dtype in (torch.int8, torch.bfloat16)}
    return precision_form(model, precision, low)


def checkpoint_config(path) -> dict | None:
    """The config stored in one of our checkpoint files; None for a peer's file or a missing one."""
    path = Path(path)
    if not path.is_file() or not _is_safetensors(path):
        return None
    with safetensors.safe_open(path, framework="pt") as file:
        metadata = file.metadata() or {}
    return json.loads(metadata["config"]) if FORMAT_KEY in metadata else None


# --- reading ---------------------------------------------------------------------------------------


def _to_json(value, what: str) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{what} must be JSON-serialisable: {err}") from None


def _is_safetensors(path: Path) -> bool:
    """A safetensors file starts with its JSON header's length (8 bytes, little endian), then '{'."""
    with open(path, "rb") as file:
        head = file.read(9)
    return len(head) == 9 and head[8:] == b"{" and int.from_bytes(head[:8], "little") < path.stat().st_size


def _read_source(source) -> tuple[dict[str, object], dict[str, str] | None]:
    """(state dict, our metadata or None) of a path or a state dict."""
    if isinstance(source, Mapping):
        return _unwrap(source, "state dict"), None
    if not isinstance(source, (str, os.PathLike)):
        raise ValueError(f"source must be a path or a state dict, got {type(source).__name__}")
    path = Path(source)
    if not path.is_file():
        raise ValueError(f"checkpoint {str(path)!r} does not exist")
    if _is_safetensors(path):
        with safetensors.safe_open(path, framework="pt") as file:
            metadata = file.metadata() or {}
            state = {name: file.get_tensor(name) for name in file.keys()}
        return _unwrap(state, str(path)), (metadata if FORMAT_KEY in metadata else None)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
        raise ValueError(
            f"checkpoint {str(path)!r} is neither safetensors nor a torch.save file that loads with "
            f"weights_only=True (nothing pickled is executed): {err}"
        ) from None
    if not isinstance(payload, Mapping):
        raise ValueError(f"checkpoint {str(path)!r} holds a {type(payload).__name__}, not a state dict")
    return _unwrap(payload, str(path)), None


def _is_state_dict(mapping: Mapping) -> bool:
    return bool(mapping) and all(
        isinstance(value, Tensor) or str(name).endswith(EXTRA_STATE) for name, value in mapping.items()
    )


def _unwrap(mapping: Mapping, where: str) -> dict[str, object]:
    """The state dict inside training wrappers, without a `module.` prefix shared by every key."""
    while not _is_state_dict(mapping):
        inner = next((mapping[k] for k in WRAPPER_KEYS if isinstance(mapping.get(k), Mapping)), None)
        if inner is None:
            raise ValueError(
                f"{where}: expected a state dict (names -> tensors), possibly under one of {WRAPPER_KEYS}; "
                f"got keys {sorted(map(str, mapping))[:10]}"
            )
        mapping = inner
    state = dict(mapping)
    if all(name.startswith("module.") for name in state):
        state = {name.removeprefix("module."): value for name, value in state.items()}
    return state


def _narrowed_copy(model: torch.nn.Module, metadata: dict[str, str] | None) -> torch.nn.Module | None:
    """A copy of `model` narrowed to the channel widths the checkpoint records, when they differ from
    the model's and it can be narrowed to them; else None (the names and shapes then tell what differs)."""
    if metadata is None or CHANNELS_KEY not in metadata:
        return None
    widths = json.loads(metadata[CHANNELS_KEY])
    if widths == channel_widths(model):
        return None
    narrowed = copy.deepcopy(model)
    return narrowed if narrow_to(narrowed, widths) else None


# --- matching ----------------------------------------------------------------------------------------


def _shape(value) -> list[int]:
    return list(value.shape) if isinstance(value, Tensor) else []


def _entries(prefix: str, tensors: dict) -> str:
    return ", ".join(f"{_join(prefix, name)} {_shape(t)}" for name, t in tensors.items())


def _match_by_name(ours: dict, state: dict, extra: dict) -> tuple[dict, list, list, list[str]]:
    """Our own layout: the same names and shapes. Extra state comes from the file's metadata, or
    stays the model's own when the checkpoint has none."""
    loaded, converted, problems = {}, [], []
    for name, mine in ours.items():
        if name.endswith(EXTRA_STATE):
            loaded[name] = state.get(name, extra.get(name, mine))
        elif name not in state:
            problems.append(f"missing {name} {_shape(mine)}")
        elif _shape(state[name]) != _shape(mine):
            problems.append(f"{name} {_shape(mine)} <- {name} {_shape(state[name])}")
        else:
            loaded[name] = state[name]
            converted.append(Converted(name, name, ""))
    problems += [f"leftover {name} {_shape(value)}" for name, value in state.items() if name not in ours]
    return loaded, converted, [], problems


def _join(prefix: str, local: str) -> str:
    return f"{prefix}.{local}" if prefix else local


def _units(state: dict) -> list[tuple[str, dict]]:
    """(module prefix, {local name: value}) per module, in first-appearance order."""
    units: dict[str, dict] = {}
    for name, value in state.items():
        prefix, _, local = name.rpartition(".")
        units.setdefault(prefix, {})[local] = value
    return list(units.items())


def _decoder_in_our_order(units: list) -> list:
    """SPVNAS's decoder units (up{i}.0 = deconvolution block, up{i}.1 = residual blocks) regrouped in
    our registration order: every up{i}.0, then every up{i}.1. Other units keep their places."""
    positions = [i for i, (prefix, _) in enumerate(units) if _SPVNAS_DECODER.match(prefix + ".")]
    keys = [tuple(int(g) for g in _SPVNAS_DECODER.match(units[i][0] + ".").groups()) for i in positions]
    if any(part not in (0, 1) for _, part in keys):
        return units
    order = sorted(range(len(positions)), key=lambda j: (keys[j][1], keys[j][0]))
    regrouped = list(units)
    for position, j in zip(positions, order):
        regrouped[position] = units[positions[j]]
    return regrouped


def _unused_by(model: torch.nn.Module, prefix: str) -> str | None:
    """Why a checkpoint module is dropped, or None to match it."""
    if prefix.split(".")[0] == "point_transforms" and not hasattr(model, "point_transforms"):
        return "SPVNAS's MinkUNet defines point_transforms, but its forward never uses them"
    return None


def _match_in_order(model, ours: dict, state: dict, layout: str) -> tuple[dict, list, list, list[str]]:
    """Peer layouts: module i of the checkpoint (after dropping unused ones) feeds our module i."""
    loaded = {name: value for name, value in ours.items() if name.endswith(EXTRA_STATE)}
    converted, dropped, problems, theirs = [], [], [], []
    for prefix, tensors in _decoder_in_our_order(_units(state)):
        reason = _unused_by(model, prefix)
        if reason is None:
            theirs.append((prefix, tensors))
        else:
            dropped += [Dropped(_join(prefix, n), tuple(_shape(t)), reason) for n, t in tensors.items()]
    mine = _units({name: value for name, value in ours.items() if not name.endswith(EXTRA_STATE)})
    for index in range(max(len(mine), len(theirs))):
        if index >= len(theirs):
            problems.append(f"missing {_entries(*mine[index])}")
        elif index >= len(mine):
            problems.append(f"leftover {_entries(*theirs[index])}")
        else:
            (prefix, tensors), (their_prefix, their_tensors) = mine[index], theirs[index]
            module = model.get_submodule(prefix)
            pairs = _pair_module(module, tensors, their_tensors, layout)
            if pairs is None:
                problems.append(f"{_entries(prefix, tensors)} <- {_entries(their_prefix, their_tensors)}")
                if isinstance(module, Conv3d):
                    expected = expected_weight_shape(layout, module)
                    problems[-1] += f" (a {layout} {WEIGHT_KEY[layout]} of this layer is {list(expected)})"
                continue
            for local, (their_local, value, change) in pairs.items():
                loaded[_join(prefix, local)] = value
                converted.append(Converted(_join(their_prefix, their_local), _join(prefix, local), change))
    return loaded, converted, dropped, problems


def _pair_module(module: torch.nn.Module, mine: dict, theirs: dict, layout: str) -> dict | None:
    """{our local name: (their local name, converted tensor, change)} for one module, or None when
    the checkpoint's module does not fit it (other names or shapes, or a kernel that cannot convert)."""
    if not isinstance(module, Conv3d):
        if set(theirs) != set(mine) or any(_shape(theirs[n]) != _shape(mine[n]) for n in mine):
            return None
        return {name: (name, theirs[name], "") for name in mine}
    weight_key = WEIGHT_KEY[layout]
    if set(theirs) != {weight_key, *(["bias"] if "bias" in mine else [])}:
        return None
    weight = convert_weight(layout, theirs[weight_key], module)
    if weight is None:
        return None
    pairs = {"weight": (weight_key, *weight)}
    if "bias" in mine:
        bias = convert_bias(theirs["bias"], module.out_channels)
        if bias is None:
            return None
        pairs["bias"] = ("bias", *bias)
    return pairs
