"""Pictures and coloured point clouds of segmented scans: a bird's-eye view (matplotlib) and a PLY file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .outputs import atomic_path


def class_colors(labels: np.ndarray, colors) -> np.ndarray:
    """uint8 [N, 3]: the RGB colour of each point's training id."""
    return np.asarray(colors, dtype=np.uint8)[np.asarray(labels)]


def bird_eye_png(path: Path, xyz: np.ndarray, labels: np.ndarray, class_names, colors, title: str = "",
                 extent: float = 50.0, truth: np.ndarray | None = None) -> None:
    """A top view (x right, y up, metres) of the points within `extent` of the sensor, coloured by
    class, with a legend of the classes present; with `truth`, the true labels on the left and
    `labels` (the prediction) on the right."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.patches import Patch
    except ImportError:
        raise ValueError("--png needs matplotlib: pip install 'pointengine[viz]'") from None
    near = (np.abs(xyz[:, 0]) <= extent) & (np.abs(xyz[:, 1]) <= extent)
    panels = [("predicted", np.asarray(labels))]
    if truth is not None:
        panels.insert(0, ("labels", np.asarray(truth)))
    figure = Figure(figsize=(2 + 7 * len(panels), 7.5), dpi=120)
    FigureCanvasAgg(figure)
    for i, (name, panel_labels) in enumerate(panels):
        axes = figure.add_subplot(1, len(panels), i + 1)
        rgb = class_colors(panel_labels[near], colors) / 255.0
        axes.scatter(xyz[near, 0], xyz[near, 1], c=rgb, s=0.3, linewidths=0, rasterized=True)
        axes.set(xlim=(-extent, extent), ylim=(-extent, extent), xlabel="x (m)", ylabel="y (m)",
                 title=name if truth is not None else "")
        axes.set_aspect("equal")
        axes.set_facecolor("white")
    # Every class of either panel, with its count in the last (predicted) one.
    counts = np.bincount(panels[-1][1], minlength=len(class_names))
    present = np.unique(np.concatenate([panel_labels for _, panel_labels in panels]))
    handles = [
        Patch(color=np.asarray(colors[c]) / 255.0, label=f"{class_names[c]} ({counts[c]:,})")
        for c in sorted(present.tolist(), key=lambda c: -counts[c])
    ]
    axes.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    figure.suptitle(title)
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png")


def write_ply(path: Path, xyz: np.ndarray, labels: np.ndarray, colors) -> None:
    """Binary little-endian PLY: x, y, z (float32), red, green, blue (uint8) and the training id (label, uint8)."""
    rgb = class_colors(labels, colors)
    rows = np.empty(len(xyz), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"),
                                     ("blue", "u1"), ("label", "u1")])
    rows["x"], rows["y"], rows["z"] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    rows["red"], rows["green"], rows["blue"] = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    rows["label"] = labels
    header = (
        "ply\nformat binary_little_endian 1.0\n"
        f"element vertex {len(rows)}\n"
        "property float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\nproperty uchar label\nend_header\n"
    )
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as f:
            f.write(header.encode("ascii"))
            f.write(rows.tobytes())
