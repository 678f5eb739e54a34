"""The training state beside the weights: optimizer state as tensors in a safetensors file, and the
epoch, step, settings and the optimizer's hyperparameters as JSON in its metadata. Nothing is pickled,
so loading runs no code from the file.

A run's folder holds `model.safetensors` (the weights, `save_checkpoint`'s file, which `segment` and
`--init` read) and `train_state.safetensors` (this), both rewritten atomically after every epoch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import safetensors
import safetensors.torch
import torch

from ..outputs import write_bytes_atomically

WEIGHTS_FILE = "model.safetensors"
STATE_FILE = "train_state.safetensors"
FORMAT_KEY = "pointengine_train_state"
FORMAT_VERSION = "1"


@dataclass(frozen=True)
class TrainState:
    """What a resumed run needs beyond the weights: `epochs_done` epochs and `step` optimizer steps
    are behind it; `settings` are the run's (JSON types); `optimizer` is the optimizer's state dict."""

    epochs_done: int
    step: int
    settings: dict
    optimizer: dict


def save_train_state(folder: Path, state: TrainState) -> Path:
    tensors, scalars = {}, {}
    for index, entries in state.optimizer["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{index}.{key}"] = value
    metadata = {
        FORMAT_KEY: FORMAT_VERSION,
        "epochs_done": str(state.epochs_done),
        "step": str(state.step),
        "settings": json.dumps(state.settings),
        "param_groups": json.dumps(state.optimizer["param_groups"]),
        "scalars": json.dumps(scalars),
    }
    path = Path(folder) / STATE_FILE
    write_bytes_atomically(path, safetensors.torch.save(tensors, metadata))
    return path


def load_train_state(path: str | Path) -> TrainState:
    """The state in `path`: a run folder or its train_state.safetensors."""
    path = Path(path)
    if path.is_dir():
        path = path / STATE_FILE
    if not path.is_file():
        raise ValueError(f"{path}: no training state to resume from (expected a run folder or its {STATE_FILE})")
    try:
        with safetensors.safe_open(str(path), "pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except safetensors.SafetensorError as error:
        raise ValueError(f"{path}: not a safetensors file ({error})") from None
    if metadata.get(FORMAT_KEY) != FORMAT_VERSION:
        raise ValueError(f"{path}: not a pointengine training state (metadata {FORMAT_KEY!r} missing or unknown)")
    optimizer_state: dict[int, dict] = {}
    for key, value in tensors.items():
        _, index, name = key.split(".", 2)
        optimizer_state.setdefault(int(index), {})[name] = value
    for key, value in json.loads(metadata["scalars"]).items():
        index, name = key.split(".", 1)
        optimizer_state.setdefault(int(index), {})[name] = value
    return TrainState(
        epochs_done=int(metadata["epochs_done"]),
        step=int(metadata["step"]),
        settings=json.loads(metadata["settings"]),
        optimizer={"state": optimizer_state, "param_groups": [_tuples(g) for g in json.loads(metadata["param_groups"])]},
    )


def _tuples(group: dict) -> dict:
    """JSON made the optimizer's tuples (AdamW's betas) lists; `params` is a list in torch too."""
    return {key: tuple(v) if isinstance(v, list) and key != "params" else v for key, v in group.items()}


def weights_path(resume: str | Path) -> Path:
    """The weights file of the run whose state `resume` (a folder or its state file) names."""
    resume = Path(resume)
    return (resume if resume.is_dir() else resume.parent) / WEIGHTS_FILE
