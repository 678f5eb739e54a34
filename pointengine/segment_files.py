"""`pointengine segment`: files, folders and globs of scans through a Segmenter, written as label files
(and optionally pictures and coloured point clouds), with progress and a latency summary."""

from __future__ import annotations

import glob
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .datasets.files import is_point_file, read_point_file
from .outputs import LABEL_FORMATS, write_labels
from .segment import Segmenter
from .visualize import bird_eye_png, write_ply

# A file that names the column a model reads under the other dataset's word for it.
COLUMN_ALIASES = {"remission": "intensity", "intensity": "remission"}


@dataclass(frozen=True)
class Job:
    """One scan and where its outputs go: `out` without a suffix (label, png and ply add theirs)."""

    scan: Path
    out: Path

    def output(self, suffix: str) -> Path:
        return self.out.with_name(self.out.name + suffix)


@dataclass(frozen=True)
class Summary:
    scans: int
    points: int
    seconds: float
    latencies: tuple[float, ...]

    @property
    def p50(self) -> float:
        return float(np.median(self.latencies))

    def line(self) -> str:
        return (f"segmented {self.scans} scan{'s' if self.scans != 1 else ''} ({self.points:,} points) in "
                f"{self.seconds:.1f} s: {self.scans / self.seconds:.2f} scans/s, p50 latency {1e3 * self.p50:.0f} ms")


def scan_stem(path: Path) -> str:
    name = path.name
    return name[: -len(".pcd.bin")] if name.lower().endswith(".pcd.bin") else path.stem


def _literal_prefix(parts: tuple[str, ...]) -> list[str]:
    """The leading parts of a glob pattern that hold no wildcard (the folder its matches share)."""
    literal = []
    for part in parts[:-1]:
        if any(ch in part for ch in "*?["):
            break
        literal.append(part)
    return literal or ["."]


def plan_jobs(paths: list[str], out: str | None, fmt: str | None) -> tuple[list[Job], str]:
    """The scans that PATH arguments name (files, folders searched recursively, globs) and their outputs.
    `out`: a folder (default ./predictions), or the output file of a single scan (.label or .npy)."""
    found: list[tuple[Path, Path]] = []  # (scan, its path relative to the output folder, without suffix)
    for arg in paths:
        path = Path(arg)
        if any(ch in arg for ch in "*?["):
            matches = sorted(Path(m) for m in glob.glob(arg, recursive=True) if is_point_file(Path(m)))
            if not matches:
                raise ValueError(f"{arg}: the pattern matches no point-cloud file")
            base = Path(*_literal_prefix(path.parts))
            found += [(m, m.relative_to(base).parent / scan_stem(m)) for m in matches]
        elif path.is_dir():
            matches = sorted(p for p in path.rglob("*") if p.is_file() and is_point_file(p))
            if not matches:
                raise ValueError(f"{arg}: the folder holds no point-cloud file")
            found += [(m, m.relative_to(path).parent / scan_stem(m)) for m in matches]
        elif not path.exists():
            raise ValueError(f"{arg}: no such file or folder")
        elif not is_point_file(path):
            raise ValueError(f"{arg}: unknown point-cloud format {path.suffix!r}")
        else:
            found.append((path, Path(scan_stem(path))))
    target = Path(out) if out else Path("predictions")
    if target.suffix.lower() in (".label", ".npy"):
        if len(found) != 1:
            raise ValueError(f"--out {out} names one file but {len(found)} scans were given; give a folder")
        fmt = fmt or target.suffix.lower()[1:]
        return [Job(found[0][0], target.with_suffix(""))], fmt
    fmt = fmt or "label"
    if fmt not in LABEL_FORMATS:
        raise ValueError(f"--format must be one of {LABEL_FORMATS}, got {fmt!r}")
    outputs = [target / relative for _, relative in found]
    if len(set(outputs)) != len(outputs):
        raise ValueError("two scans would write the same output file; give them in separate folders")
    return [Job(scan, output) for (scan, _), output in zip(found, outputs)], fmt


def read_scan(seg: Segmenter, path: Path) -> np.ndarray:
    """The file's points with the columns the model's dataset names, in that order."""
    file = read_point_file(path)
    if file.columns is None:
        return file.points
    dataset_columns = seg.config.dataset.point_columns
    needed = max(seg.config.feature_columns) + 1
    picked = []
    for name in dataset_columns[:needed]:
        source = name if name in file.columns else COLUMN_ALIASES.get(name)
        if source not in file.columns:
            raise ValueError(f"{path}: model {seg.config.name!r} reads the column {name!r}; the file has {list(file.columns)}")
        picked.append(file.columns.index(source))
    return file.points[:, picked]


def segment_files(seg: Segmenter, jobs: list[Job], fmt: str, png: bool = False, ply: bool = False) -> Summary:
    dataset = seg.config.dataset
    start, points, latencies = time.perf_counter(), 0, []
    for job in tqdm(jobs, desc="segment", unit="scan", disable=None):
        scan = read_scan(seg, job.scan)
        begin = time.perf_counter()
        try:
            labels = seg(scan)
        except ValueError as error:
            raise ValueError(f"{job.scan}: {error}") from None
        latencies.append(time.perf_counter() - begin)
        points += len(labels)
        write_labels(job.output(f".{fmt}"), dataset.raw_labels(labels).numpy(), fmt)
        xyz = np.asarray(scan[:, :3])
        if png:
            bird_eye_png(job.output(".png"), xyz, labels.numpy(), dataset.classes, dataset.colors,
                         title=f"{job.scan.name}: {seg.config.name}" + ("" if seg.trained else " (untrained weights)"))
        if ply:
            write_ply(job.output(".ply"), xyz, labels.numpy(), dataset.colors)
    return Summary(len(jobs), points, time.perf_counter() - start, tuple(latencies))
