"""nuScenes-lidarseg: lidar sweeps (`samples/LIDAR_TOP/*.pcd.bin`, float32 x, y, z, intensity, ring),
their labels (`lidarseg/<version>/<token>_lidarseg.bin`, one uint8 raw id of the 32 classes per point),
and which key frames make up a split.

Two layouts are read:
- the devkit's: JSON tables in ROOT/<version>/ (scene, sample, sample_data, lidarseg) link each lidar key
  frame (its sample_data token) to its scan file, its scene and its label file. The scenes of the named
  splits (train, val, test, mini_train, mini_val) are listed by nuscenes-devkit (`pip install
  nuscenes-devkit`, imported only for them); `all` or scene names need no devkit.
- a plain folder of scans, ROOT/samples/LIDAR_TOP/*.pcd.bin (or ROOT/*.pcd.bin): each scan's token is its
  file name without `.pcd.bin`, its labels ROOT/lidarseg/**/<token>_lidarseg.bin when ROOT/lidarseg exists.

Predictions go to the challenge's layout, `lidarseg/<split>/<token>_lidarseg.bin` with the 16-class
training ids (1-16, uint8) and `<split>/submission.json`, as nuscenes-devkit's lidarseg evaluation reads.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..outputs import write_bytes_atomically
from .frames import FoundFrames, Frame, ScanFormat
from .scan import read_float32_rows

# The devkit version whose tables hold each named split.
SPLIT_VERSIONS = {"train": "v1.0-trainval", "val": "v1.0-trainval", "test": "v1.0-test",
                  "mini_train": "v1.0-mini", "mini_val": "v1.0-mini"}
LIDAR_FOLDER = "samples/LIDAR_TOP/"
SUBMISSION_META = {"use_camera": False, "use_lidar": True, "use_radar": False, "use_map": False, "use_external": False}


def read_nuscenes_points(path: str | Path) -> Tensor:
    """float32 [N, 5]: x, y, z, intensity (0-255) and ring index (0-31 on the HDL-32E)."""
    return read_float32_rows(path, 5)


def read_lidarseg(path: str | Path) -> Tensor:
    """The raw lidarseg ids (int64 [N]) of a *_lidarseg.bin file."""
    return torch.from_numpy(np.fromfile(path, dtype=np.uint8).astype(np.int64))


FORMAT = ScanFormat(columns=5, label_bytes=1, read_raw_labels=read_lidarseg)


def split_name(split: list[str]) -> str:
    """The folder name of a split in the submission layout: its name, `all`, or `custom` for scene names."""
    return split[0] if len(split) == 1 and (split[0] in SPLIT_VERSIONS or split[0] == "all") else "custom"


def find_frames(root: str | Path, split: list[str], version: str | None = None, skip_bad: bool = False) -> FoundFrames:
    """The lidar key frames of `split` under `root`: [NAME] of a named split, ["all"], or scene names;
    in scene then time order. `version` picks the tables (default: the split's, or the only one there).
    A version with a lidarseg table needs a label file for every key frame; one without (v1.0-test) is
    unlabelled. Bad frames raise a ValueError naming the file, or with skip_bad are listed in `skipped`."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root}: no such folder")
    versions = sorted(p.name for p in root.iterdir() if (p / "sample_data.json").is_file())
    if not versions:
        if version is not None:
            raise ValueError(f"{root}: no nuScenes tables ({version}/sample_data.json)")
        return _plain_frames(root, split, skip_bad)
    if version is None:
        named = SPLIT_VERSIONS.get(split[0]) if len(split) == 1 else None
        if named is None and len(versions) > 1:
            raise ValueError(f"{root}: tables of several nuScenes versions {versions}; choose one with --version")
        version = named or versions[0]
    if version not in versions:
        raise ValueError(f"{root}: no tables of nuScenes version {version!r} ({version}/sample_data.json); found {versions}")
    try:
        return _devkit_frames(root, version, split, skip_bad)
    except KeyError as error:
        raise ValueError(f"{root / version}: the nuScenes tables lack a field or a linked token: {error}") from None


def _devkit_frames(root: Path, version: str, split: list[str], skip_bad: bool) -> FoundFrames:
    folder = root / version
    scene_names = {r["token"]: r["name"] for r in _table(folder, "scene")}
    sample_scene = {r["token"]: scene_names[r["scene_token"]] for r in _table(folder, "sample")}
    labels = None
    if (folder / "lidarseg.json").is_file():
        labels = {r["sample_data_token"]: r["filename"] for r in _table(folder, "lidarseg")}
    wanted = _split_scenes(split, set(scene_names.values()), folder)
    keyframes = sorted(
        (sample_scene[r["sample_token"]], r["timestamp"], r["token"], r["filename"])
        for r in _table(folder, "sample_data")
        if r["is_key_frame"] and r["filename"].startswith(LIDAR_FOLDER) and sample_scene[r["sample_token"]] in wanted
    )
    found = FoundFrames()
    for _, _, token, filename in keyframes:
        label = None
        if labels is not None:
            label = root / labels.get(token, f"lidarseg/{version}/{token}_lidarseg.bin")
        found.add(Frame(token, root / filename, label), FORMAT, skip_bad)
    if not keyframes:
        found.skip(str(folder), ValueError(f"{folder}: no lidar key frames in the scenes of split {' '.join(split)}"),
                   skip_bad)
    return found


def _split_scenes(split: list[str], present: set[str], folder: Path) -> set[str]:
    if split == ["all"]:
        return present
    if len(split) == 1 and split[0] in SPLIT_VERSIONS:
        try:
            from nuscenes.utils.splits import create_splits_scenes
        except ImportError:
            raise ValueError(
                f"the scenes of the nuScenes split {split[0]!r} are listed by nuscenes-devkit: pip install "
                "nuscenes-devkit, or give --split all or scene names (scene-0001 ...)"
            ) from None
        return set(create_splits_scenes(verbose=False)[split[0]]) & present
    missing = sorted(set(split) - present)
    if missing:
        raise ValueError(f"{folder / 'scene.json'}: no scenes named {missing[:10]}")
    return set(split)


def _table(folder: Path, name: str) -> list[dict]:
    path = folder / f"{name}.json"
    if not path.is_file():
        raise ValueError(f"{path}: missing nuScenes table (sample_data.json is there)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None


def _plain_frames(root: Path, split: list[str], skip_bad: bool) -> FoundFrames:
    if split != ["all"]:
        raise ValueError(
            f"{root}: no nuScenes tables (<version>/sample_data.json), so no split {' '.join(split)!r}: a plain "
            "folder of scans is benchmarked whole with --split all"
        )
    folder = root / LIDAR_FOLDER if (root / LIDAR_FOLDER).is_dir() else root
    scans = sorted(folder.glob("*.pcd.bin"))
    found = FoundFrames()
    if not scans:
        found.skip(str(folder), ValueError(f"{folder}: no scans (*.pcd.bin)"), skip_bad)
    labels = None
    if (root / "lidarseg").is_dir():
        labels = {p.name.removesuffix("_lidarseg.bin"): p for p in (root / "lidarseg").rglob("*_lidarseg.bin")}
    for scan in scans:
        token = scan.name.removesuffix(".pcd.bin")
        label = None if labels is None else labels.get(token, root / "lidarseg" / f"{token}_lidarseg.bin")
        found.add(Frame(token, scan, label), FORMAT, skip_bad)
    return found


def prediction_path(out: str | Path, frame: Frame, split: list[str]) -> Path:
    return Path(out) / "lidarseg" / split_name(split) / f"{frame.name}_lidarseg.bin"


def write_prediction(out: str | Path, frame: Frame, labels: Tensor, split: list[str]) -> None:
    """Training ids (1-16) of every point of `frame` as the challenge's uint8 .bin file."""
    write_bytes_atomically(prediction_path(out, frame, split), labels.numpy().astype(np.uint8).tobytes())


def write_submission_meta(out: str | Path, split: list[str]) -> None:
    """`<split>/submission.json`: the inputs the predictions used (lidar only)."""
    text = json.dumps({"meta": SUBMISSION_META}, indent=2) + "\n"
    write_bytes_atomically(Path(out) / split_name(split) / "submission.json", text.encode())


@dataclass(frozen=True)
class Keyframe:
    """A lidar key frame for write_tables: its scene's name, sample_data token, time (microseconds),
    scan file and label file (relative to the dataset root; label None: unlabelled)."""

    scene: str
    token: str
    timestamp: int
    scan: str
    label: str | None


def write_tables(root: str | Path, version: str, keyframes: list[Keyframe]) -> None:
    """The devkit tables find_frames reads (scene, sample, sample_data and, when any frame has labels,
    lidarseg), with the fields that link them; other tables and fields of the devkit are not written."""
    def token(*parts) -> str:
        return hashlib.sha1("/".join(map(str, parts)).encode()).hexdigest()[:32]

    scenes, samples, sample_data, lidarseg = {}, [], [], []
    for frame in sorted(keyframes, key=lambda k: (k.scene, k.timestamp)):
        scene = scenes.setdefault(frame.scene, {"token": token("scene", frame.scene), "name": frame.scene,
                                                "samples": []})
        sample = token("sample", frame.token)
        scene["samples"].append(sample)
        samples.append({"token": sample, "timestamp": frame.timestamp, "scene_token": scene["token"]})
        sample_data.append({"token": frame.token, "sample_token": sample, "timestamp": frame.timestamp,
                            "fileformat": "pcd", "is_key_frame": True, "filename": frame.scan})
        if frame.label is not None:
            lidarseg.append({"token": frame.token, "sample_data_token": frame.token, "filename": frame.label})
    scene_table = [{"token": s["token"], "name": s["name"], "nbr_samples": len(s["samples"]),
                    "first_sample_token": s["samples"][0], "last_sample_token": s["samples"][-1]}
                   for s in scenes.values()]
    folder = Path(root) / version
    tables = {"scene": scene_table, "sample": samples, "sample_data": sample_data}
    if lidarseg:
        tables["lidarseg"] = lidarseg
    for name, records in tables.items():
        write_bytes_atomically(folder / f"{name}.json", json.dumps(records, indent=1).encode())
