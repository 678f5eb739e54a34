"""Files written from predictions and checkpoints, each written whole or not at all (a temporary file
renamed into place)."""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from pathlib import Path

import numpy as np

LABEL_FORMATS = ("label", "npy")


@contextmanager
def atomic_path(path: Path):
    """A hidden temporary path beside `path` for the block to write; renamed over `path` when the block
    succeeds (atomic on one file system), removed when it fails. The caller creates the file, so it
    gets the user's umask."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        yield temporary
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_bytes_atomically(path: Path, data: bytes) -> None:
    """`data` as the file at `path`, synced to disk before it replaces what was there."""
    with atomic_path(path) as temporary, open(temporary, "xb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())


def write_labels(path: Path, raw_ids: np.ndarray, fmt: str) -> None:
    """Raw label ids of every point: "label" = SemanticKITTI .label (uint32, semantic id in the low 16
    bits, instance 0); "npy" = the same uint32 ids as a numpy array."""
    if fmt not in LABEL_FORMATS:
        raise ValueError(f"format must be one of {LABEL_FORMATS}, got {fmt!r}")
    ids = np.asarray(raw_ids)
    if ids.size and (ids.min() < 0 or ids.max() > 0xFFFF):
        raise ValueError(f"raw label ids must fit 16 bits, got [{ids.min()}, {ids.max()}]")
    with atomic_path(path) as temporary:
        if fmt == "label":
            ids.astype("<u4").tofile(temporary)
        else:
            with open(temporary, "wb") as f:
                np.save(f, ids.astype(np.uint32))
